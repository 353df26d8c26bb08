import type Database from 'better-sqlite3';

/**
 * FTS5's own check of the messages' full-text index: rank 0 checks its structure, rank 1 also
 * compares it with the messages table (true only once every message is indexed).
 */
export function ftsCheckPasses(db: Database.Database, rank: 0 | 1): boolean {
  try {
    db.exec(`INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', ${rank})`);
    return true;
  } catch {
    return false;
  }
}
