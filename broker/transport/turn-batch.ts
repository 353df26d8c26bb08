/**
 * Chunks written to one connection during the current event-loop turn, handed over together from
 * a microtask once the turn's synchronous work is done, so the connection pays one corked write
 * per turn, not one per chunk (one write per frame was a third of the relay's CPU in a
 * 100-subscriber fan-out). Order is kept: every chunk of the connection goes through its batch.
 */
export class TurnBatch {
  private chunks: string[] | null = null;
  /** Bytes waiting in the batch. */
  bytes = 0;

  constructor(private readonly deliver: (chunks: string[], bytes: number) => void) {}

  push(chunk: string, bytes: number): void {
    if (this.chunks === null) {
      this.chunks = [];
      queueMicrotask(this.flush);
    }
    this.chunks.push(chunk);
    this.bytes += bytes;
  }

  /** Hand over what waits now (before a close, or when the batch is large). */
  readonly flush = (): void => {
    const chunks = this.chunks;
    const bytes = this.bytes;
    this.chunks = null;
    this.bytes = 0;
    if (chunks) this.deliver(chunks, bytes);
  };
}
