-- Leases: claims on named resources (paths or SCHEME:NAME) that are not tasks. A lease is in force
-- while released_at is NULL and expires_at is in the future (by the relay clock); a row whose TTL
-- passed is free for others at once, and the sweep records its end.
CREATE TABLE leases (
  id           INTEGER PRIMARY KEY AUTOINCREMENT,
  agent_id     TEXT NOT NULL,
  mode         TEXT NOT NULL,
  resources    TEXT NOT NULL,
  reason       TEXT,
  token        INTEGER NOT NULL,
  ttl_ms       INTEGER NOT NULL,
  acquired_at  INTEGER NOT NULL,
  renewed_at   INTEGER NOT NULL,
  expires_at   INTEGER NOT NULL,
  released_at  INTEGER,
  ended_by     TEXT
);
CREATE INDEX leases_live ON leases (expires_at) WHERE released_at IS NULL;
CREATE INDEX leases_agent ON leases (agent_id) WHERE released_at IS NULL;
CREATE INDEX leases_released ON leases (released_at) WHERE released_at IS NOT NULL;

-- Fencing tokens come from one counter that only rises (rows may be pruned, tokens never reused).
INSERT INTO relay_meta (key, value) VALUES ('lease_token', '0');
