/**
 * The leading records of a list result that fit a JSON size budget, so one answer stays well under
 * the send buffer however large its records are. The first record always goes (a client must be
 * able to page past it); `cut` says the page stopped at the budget, not at its end.
 */
export function withinBudget<T>(records: readonly T[], maxChars: number): { records: T[]; cut: boolean } {
  let used = 0;
  for (let i = 0; i < records.length; i++) {
    used += JSON.stringify(records[i]).length + 1;
    if (used > maxChars && i > 0) return { records: records.slice(0, i), cut: true };
  }
  return { records: records as T[], cut: false };
}
