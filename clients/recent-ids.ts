/**
 * The last N ids seen, to drop a message delivered twice (a backlog overlapping live pushes
 * after a reconnect) without growing forever.
 */
export class RecentIds {
  private readonly ids = new Set<number>();

  constructor(private readonly capacity = 10_000) {}

  /** Remember `id`; false when it was already there. */
  add(id: number): boolean {
    if (this.ids.has(id)) return false;
    this.ids.add(id);
    if (this.ids.size > this.capacity) {
      // Sets iterate in insertion order: the first one is the oldest.
      this.ids.delete(this.ids.values().next().value!);
    }
    return true;
  }
}
