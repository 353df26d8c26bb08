-- Full-text search over message subjects and bodies (message/search). External content: the index
-- holds only the FTS5 postings, the text stays in `messages` (snippets read it from there).
-- unicode61 with diacritics removed: case- and accent-insensitive words of letters and digits.
CREATE VIRTUAL TABLE messages_fts USING fts5(
  subject, body,
  content = 'messages', content_rowid = 'id',
  tokenize = 'unicode61 remove_diacritics 2'
);

-- Kept by triggers, so every statement that writes `messages` keeps the index in its own
-- transaction: a send is searchable when it is acknowledged, a pruned message leaves the index
-- with its row. Messages are not edited today; the update trigger keeps that true if they ever are.
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
  INSERT INTO messages_fts (rowid, subject, body) VALUES (new.id, new.subject, new.body);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
  INSERT INTO messages_fts (messages_fts, rowid, subject, body) VALUES ('delete', old.id, old.subject, old.body);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF subject, body ON messages BEGIN
  INSERT INTO messages_fts (messages_fts, rowid, subject, body) VALUES ('delete', old.id, old.subject, old.body);
  INSERT INTO messages_fts (rowid, subject, body) VALUES (new.id, new.subject, new.body);
END;

-- The messages stored before this migration.
INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
