import type { Db } from './db.js';

/*
 * Whether the full-text index of messages is kept (AGENT_RELAY_SEARCH_INDEX). Since migration 0009
 * the index is kept when relay_meta has `search_indexed_through` (the newest message id indexed;
 * search-indexer.ts moves it); the triggers that take pruned messages out of the index fire only
 * below it, so with the key gone they do nothing. Off empties the index and removes the key; on
 * again rebuilds the index from the messages, in one transaction, before the relay listens.
 */

export const INDEXED_THROUGH = 'search_indexed_through';

/** True while the index is kept. */
export function searchIndexKept(db: Db): boolean {
  return db.prepare(`SELECT 1 FROM relay_meta WHERE key = ?`).get(INDEXED_THROUGH) !== undefined;
}

/** Keep or drop the index as configured; nothing to do when it already is so. */
export function setSearchIndex(db: Db, keep: boolean): void {
  if (searchIndexKept(db) === keep) return;
  db.transaction(() => {
    if (keep) {
      db.exec(`INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')`);
      db.prepare(`INSERT INTO relay_meta (key, value) VALUES (?, (SELECT coalesce(max(id), 0) FROM messages))`).run(INDEXED_THROUGH);
    } else {
      db.exec(`INSERT INTO messages_fts (messages_fts) VALUES ('delete-all')`);
      db.prepare(`DELETE FROM relay_meta WHERE key = ?`).run(INDEXED_THROUGH);
    }
  }).immediate();
}
