/**
 * The leading records of a list result that fit a JSON size budget, so one answer stays well under
 * the send buffer however large its records are. The first record always goes (a client must be
 * able to page past it); `cut` says the page stopped at the budget, not at its end. `toWire` runs
 * only on the records looked at, so a page cut early reads no more than it returns (plus one).
 */
export function withinBudget<T, U = T>(records: readonly T[], maxBytes: number, toWire: (record: T) => U = (r) => r as unknown as U): { records: U[]; cut: boolean } {
  const out: U[] = [];
  let used = 0;
  for (const record of records) {
    const wire = toWire(record);
    used += Buffer.byteLength(JSON.stringify(wire)) + 1;
    if (used > maxBytes && out.length > 0) return { records: out, cut: true };
    out.push(wire);
  }
  return { records: out, cut: false };
}
