import type { Db } from './db.js';

/*
 * Whether the full-text index of messages is kept (AGENT_RELAY_SEARCH_INDEX). Migration 0005 made
 * it and its triggers; with the setting off the triggers are dropped and the index emptied, so a
 * send writes nothing more than before 0005 (the index costs the writer about 5× per message:
 * bench/search.ts). Turned on again, the triggers come back and the index is rebuilt from the
 * messages, in one transaction, before the relay listens.
 */

// The same triggers as migration 0005 (which stays as it was applied).
const TRIGGERS = `
CREATE TRIGGER IF NOT EXISTS messages_fts_insert AFTER INSERT ON messages BEGIN
  INSERT INTO messages_fts (rowid, subject, body) VALUES (new.id, new.subject, new.body);
END;
CREATE TRIGGER IF NOT EXISTS messages_fts_delete AFTER DELETE ON messages BEGIN
  INSERT INTO messages_fts (messages_fts, rowid, subject, body) VALUES ('delete', old.id, old.subject, old.body);
END;
CREATE TRIGGER IF NOT EXISTS messages_fts_update AFTER UPDATE OF subject, body ON messages BEGIN
  INSERT INTO messages_fts (messages_fts, rowid, subject, body) VALUES ('delete', old.id, old.subject, old.body);
  INSERT INTO messages_fts (rowid, subject, body) VALUES (new.id, new.subject, new.body);
END;`;
const DROP = `
DROP TRIGGER IF EXISTS messages_fts_insert;
DROP TRIGGER IF EXISTS messages_fts_delete;
DROP TRIGGER IF EXISTS messages_fts_update;
INSERT INTO messages_fts (messages_fts) VALUES ('delete-all');`;

/** True while the index is kept: its insert trigger exists. */
export function searchIndexKept(db: Db): boolean {
  return db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = 'messages_fts_insert'`).get() !== undefined;
}

/** Keep or drop the index as configured; nothing to do when it already is so. */
export function setSearchIndex(db: Db, keep: boolean): void {
  if (searchIndexKept(db) === keep) return;
  db.transaction(() => {
    if (keep) {
      db.exec(TRIGGERS);
      db.exec(`INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')`);
    } else {
      db.exec(DROP);
    }
  }).immediate();
}
