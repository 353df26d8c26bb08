-- Agent Relay schema v1. Times are epoch milliseconds; lists and meta are JSON text.
CREATE TABLE agents (
  id            TEXT PRIMARY KEY,
  label         TEXT NOT NULL,
  tags          TEXT NOT NULL DEFAULT '[]',
  capabilities  TEXT NOT NULL DEFAULT '[]',
  channels      TEXT NOT NULL DEFAULT '[]',
  client        TEXT,
  host          TEXT,
  cwd           TEXT,
  rig           TEXT,
  status        TEXT NOT NULL,
  ready         INTEGER NOT NULL DEFAULT 1,
  system        INTEGER NOT NULL DEFAULT 0,
  token_hash    TEXT NOT NULL,
  registered_at INTEGER NOT NULL,
  last_seen_at  INTEGER NOT NULL,
  offline_at    INTEGER,
  meta          TEXT NOT NULL DEFAULT '{}'
);

-- AUTOINCREMENT: ids are cursors, so they must never be reused after pruning.
CREATE TABLE messages (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  from_id     TEXT NOT NULL,
  to_target   TEXT NOT NULL,
  channel     TEXT,
  subject     TEXT,
  body        TEXT NOT NULL,
  reply_to    INTEGER,
  thread_id   INTEGER NOT NULL,
  claimable   INTEGER NOT NULL DEFAULT 0,
  task_id     INTEGER,
  created_at  INTEGER NOT NULL,
  meta        TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX messages_thread ON messages (thread_id, id);
CREATE INDEX messages_created ON messages (created_at);

-- One row per recipient: the inbox, its read marker and its delivery state.
CREATE TABLE deliveries (
  agent_id    TEXT NOT NULL,
  message_id  INTEGER NOT NULL,
  state       TEXT NOT NULL,
  at          INTEGER NOT NULL,
  PRIMARY KEY (agent_id, message_id)
) WITHOUT ROWID;
CREATE INDEX deliveries_message ON deliveries (message_id);

CREATE TABLE tasks (
  id            INTEGER PRIMARY KEY AUTOINCREMENT,
  title         TEXT NOT NULL,
  body          TEXT,
  target        TEXT NOT NULL,
  channel       TEXT,
  status        TEXT NOT NULL,
  progress      INTEGER NOT NULL DEFAULT 0,
  claimed_by    TEXT,
  claimed_at    INTEGER,
  attempts      INTEGER NOT NULL DEFAULT 0,
  dedupe_key    TEXT,
  source        TEXT NOT NULL,
  occurrences   INTEGER NOT NULL DEFAULT 1,
  message_id    INTEGER,
  callback_url  TEXT,
  created_at    INTEGER NOT NULL,
  updated_at    INTEGER NOT NULL,
  closed_at     INTEGER,
  meta          TEXT NOT NULL DEFAULT '{}'
);
-- At most one live task per (source, dedupe key): the database enforces dedupe, not just the code.
CREATE UNIQUE INDEX tasks_dedupe_live ON tasks (source, dedupe_key)
  WHERE dedupe_key IS NOT NULL AND status NOT IN ('done', 'failed', 'canceled');
CREATE INDEX tasks_status ON tasks (status, id);
CREATE INDEX tasks_claimed_by ON tasks (claimed_by) WHERE claimed_by IS NOT NULL;

CREATE TABLE events (
  id        INTEGER PRIMARY KEY AUTOINCREMENT,
  at        INTEGER NOT NULL,
  kind      TEXT NOT NULL,
  task_id   INTEGER,
  agent_id  TEXT,
  data      TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_task ON events (task_id, id);
CREATE INDEX events_at ON events (at);

-- Small key/value facts about the store itself (e.g. the pruning floor of the message cursor).
CREATE TABLE relay_meta (
  key    TEXT PRIMARY KEY,
  value  TEXT NOT NULL
);
