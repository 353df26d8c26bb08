import type { Db } from './db.js';
import { INDEXED_THROUGH } from './search-index.js';

/** Messages per indexing transaction: a backlog is indexed in several, with other work between them. */
export const INDEX_CHUNK = 2000;

/**
 * Puts the words of new messages into the full-text index, on the writer's connection, in
 * transactions of their own after the sends' commits: indexing inside every send's commit nearly
 * doubled the mean commit, and the acknowledgement waited for it (bench/RESULTS.md). FTS5 writes a
 * segment per transaction, so a pass over many messages costs less per message than one per
 * commit. Message ids only grow and one thread writes, so "indexed through id N" says exactly
 * what the index holds; the mark moves in the transaction that indexes, so a crash loses neither.
 * The mark is read once: migrations and the on/off setting change it before the indexer exists,
 * and only the indexer moves it afterwards, so a caught-up pass reads one row and writes nothing.
 */
export class SearchIndexer {
  /** The newest message id in the index; null while the index is off. */
  private mark: number | null;
  private readonly pending;
  private readonly index;

  constructor(db: Db) {
    const stored = db.prepare<[string], string>(`SELECT value FROM relay_meta WHERE key = ?`).pluck().get(INDEXED_THROUGH);
    this.mark = stored === undefined ? null : Number(stored);
    this.pending = db.prepare<[number, number], { through: number | null; n: number }>(`SELECT max(id) AS through, count(*) AS n FROM (SELECT id FROM messages WHERE id > ? ORDER BY id LIMIT ?)`);
    const insert = db.prepare(`INSERT INTO messages_fts (rowid, subject, body) SELECT id, subject, body FROM messages WHERE id > ? AND id <= ?`);
    const setMark = db.prepare(`UPDATE relay_meta SET value = ? WHERE key = ?`);
    this.index = db.transaction((from: number, through: number) => {
      insert.run(from, through);
      setMark.run(String(through), INDEXED_THROUGH);
    });
  }

  /** Index at most `limit` messages past the mark in one transaction; how many were indexed (0: caught up, or the index is off). */
  indexSome(limit = INDEX_CHUNK): number {
    if (this.mark === null) return 0;
    // Read outside the transaction: this connection is the only one that writes messages.
    const { through, n } = this.pending.get(this.mark, limit)!;
    if (through === null) return 0;
    this.index.immediate(this.mark, through);
    this.mark = through;
    return n;
  }

  /** Index everything committed so far, `chunk` messages per transaction. */
  catchUp(chunk = INDEX_CHUNK): void {
    while (this.indexSome(chunk) === chunk);
  }
}
