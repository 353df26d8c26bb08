/**
 * The leading records of a list result that fit a JSON size budget, so one answer stays well under
 * the send buffer however large its records are. The first record always goes (a client must be
 * able to page past it); `cut` says the page stopped at the budget, not at its end. `toWire` runs
 * only on the records looked at, so a page cut early reads no more than it returns (plus one).
 */
export function withinBudget<T, U = T>(records: readonly T[], maxBytes: number, toWire: (record: T) => U = (r) => r as unknown as U): { records: U[]; cut: boolean } {
  const budget = new Budget<U>(maxBytes);
  for (const record of records) if (!budget.take(toWire(record))) break;
  return budget.page();
}

/** withinBudget for records completed by a read each (agents' meta): one read at a time, none past the cut. */
export async function withinBudgetRead<T, U>(records: readonly T[], maxBytes: number, toWire: (record: T) => Promise<U>): Promise<{ records: U[]; cut: boolean }> {
  const budget = new Budget<U>(maxBytes);
  for (const record of records) if (!budget.take(await toWire(record))) break;
  return budget.page();
}

class Budget<U> {
  private readonly out: U[] = [];
  private used = 0;
  private cut = false;

  constructor(private readonly maxBytes: number) {}

  /** False (and the page is cut) when the record does not fit beside those taken. */
  take(wire: U): boolean {
    this.used += Buffer.byteLength(JSON.stringify(wire)) + 1;
    if (this.used > this.maxBytes && this.out.length > 0) {
      this.cut = true;
      return false;
    }
    this.out.push(wire);
    return true;
  }

  page(): { records: U[]; cut: boolean } {
    return { records: this.out, cut: this.cut };
  }
}
