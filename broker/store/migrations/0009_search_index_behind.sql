-- The full-text index follows the commits a little behind instead of inside each send's commit
-- (broker/store/search-indexer.ts): `search_indexed_through` in relay_meta is the newest message id
-- whose words are in the index, and its absence means the index is off (AGENT_RELAY_SEARCH_INDEX).
-- A message above it is indexed by the writer's next pass; a search has the writer catch up first.

-- An index kept by 0005's triggers holds every message now; one turned off holds none.
INSERT INTO relay_meta (key, value)
  SELECT 'search_indexed_through', (SELECT coalesce(max(id), 0) FROM messages)
  WHERE EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = 'messages_fts_insert')
  ON CONFLICT (key) DO UPDATE SET value = excluded.value;

DROP TRIGGER IF EXISTS messages_fts_insert;
DROP TRIGGER IF EXISTS messages_fts_delete;
DROP TRIGGER IF EXISTS messages_fts_update;

-- A message leaves the index with its row only if it was in it: an external-content FTS5 'delete'
-- of words never indexed corrupts the index. With the index off (no key) neither trigger fires.
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
WHEN old.id <= (SELECT CAST(value AS INTEGER) FROM relay_meta WHERE key = 'search_indexed_through')
BEGIN
  INSERT INTO messages_fts (messages_fts, rowid, subject, body) VALUES ('delete', old.id, old.subject, old.body);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF subject, body ON messages
WHEN old.id <= (SELECT CAST(value AS INTEGER) FROM relay_meta WHERE key = 'search_indexed_through')
BEGIN
  INSERT INTO messages_fts (messages_fts, rowid, subject, body) VALUES ('delete', old.id, old.subject, old.body);
  INSERT INTO messages_fts (rowid, subject, body) VALUES (new.id, new.subject, new.body);
END;
