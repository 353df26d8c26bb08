import type { Db } from './db.js';
import { INDEXED_THROUGH } from './search-index.js';

/**
 * Puts the words of new messages into the full-text index, on the writer's connection, in
 * transactions of their own after the sends' commits: indexing inside every send's commit nearly
 * doubled the mean commit, and the acknowledgement waited for it (bench/RESULTS.md). FTS5 writes a
 * segment per transaction, so a pass over many messages costs less per message than one per
 * commit. Message ids only grow and one thread writes, so "indexed through id N" says exactly
 * what the index holds; the mark moves in the transaction that indexes, so a crash loses neither.
 */
export class SearchIndexer {
  private readonly readMark;
  private readonly upTo;
  private readonly insert;
  private readonly setMark;
  private readonly pass;

  constructor(db: Db) {
    this.readMark = db.prepare<[string], number>(`SELECT CAST(value AS INTEGER) FROM relay_meta WHERE key = ?`).pluck();
    this.upTo = db.prepare<[number, number], { through: number | null; n: number }>(`SELECT max(id) AS through, count(*) AS n FROM (SELECT id FROM messages WHERE id > ? ORDER BY id LIMIT ?)`);
    this.insert = db.prepare(`INSERT INTO messages_fts (rowid, subject, body) SELECT id, subject, body FROM messages WHERE id > ? AND id <= ?`);
    this.setMark = db.prepare(`UPDATE relay_meta SET value = ? WHERE key = ?`);
    this.pass = db.transaction((limit: number): number => {
      const from = this.readMark.get(INDEXED_THROUGH);
      if (from === undefined) return 0; // the index is off
      const { through, n } = this.upTo.get(from, limit)!;
      if (through === null) return 0;
      this.insert.run(from, through);
      this.setMark.run(String(through), INDEXED_THROUGH);
      return n;
    });
  }

  /** Index at most `limit` messages past the mark in one transaction; how many were indexed (0: caught up, or the index is off). */
  indexSome(limit: number): number {
    return this.pass.immediate(limit);
  }

  /** Index everything committed so far, `chunk` messages per transaction. */
  catchUp(chunk: number): void {
    while (this.indexSome(chunk) === chunk);
  }
}
