-- Agent Relay on PostgreSQL, schema v1: the tables of the SQLite store (broker/store/migrations)
-- as they are after its migration 0006. Times are epoch milliseconds given by the relay (never the
-- database clock); lists, meta and event data are JSON text as the relay wrote it (so their key
-- order and numbers come back exactly as sent); bigint columns reach JavaScript as numbers.

-- The head of the log: the only source of message, event, task and lease ids and of fencing
-- tokens. Every batch locks this row FOR UPDATE first and holds it to COMMIT, so ids are assigned
-- in commit order, and a snapshot that sees id N sees every id below it (a sequence does not give
-- that: ids become visible out of order, and a reader polling `id > cursor` skips some for good).
-- An aborted batch rolls its counters back: no holes (test/postgres/cursor-order.test.ts).
CREATE TABLE relay_head (
  only_row        boolean PRIMARY KEY DEFAULT true CHECK (only_row),
  last_message    bigint NOT NULL DEFAULT 0,
  last_event      bigint NOT NULL DEFAULT 0,
  last_task       bigint NOT NULL DEFAULT 0,
  last_lease      bigint NOT NULL DEFAULT 0,
  -- Fencing tokens of leases: one counter that only rises (rows are pruned, tokens never reused).
  lease_token     bigint NOT NULL DEFAULT 0,
  -- Messages with ids up to this were pruned: a cursor below it cannot be resumed.
  pruned_through  bigint NOT NULL DEFAULT 0
);
INSERT INTO relay_head DEFAULT VALUES;

CREATE TABLE agents (
  id             text PRIMARY KEY,
  label          text NOT NULL,
  tags           text NOT NULL DEFAULT '[]',
  capabilities   text NOT NULL DEFAULT '[]',
  channels       text NOT NULL DEFAULT '[]',
  client         text,
  host           text,
  cwd            text,
  rig            text,
  status         text NOT NULL,
  ready          boolean NOT NULL DEFAULT true,
  system         boolean NOT NULL DEFAULT false,
  token_hash     text NOT NULL,
  registered_at  bigint NOT NULL,
  last_seen_at   bigint NOT NULL,
  offline_at     bigint,
  meta           text NOT NULL DEFAULT '{}',
  -- The newest message id when the agent was first registered (nothing older can be its).
  inbox_floor    bigint NOT NULL DEFAULT 0
);

-- Text for full-text search: runs of letters and digits, as SQLite's unicode61 tokenizer splits
-- it (PostgreSQL's parser would otherwise keep `foo-bar`, `x@y.com` or `1.5` as tokens of their own).
CREATE FUNCTION relay_words(t text) RETURNS text IMMUTABLE STRICT PARALLEL SAFE LANGUAGE sql
  AS $$ SELECT regexp_replace(t, '[^[:alnum:]]+', ' ', 'g') $$;

CREATE TABLE messages (
  id          bigint PRIMARY KEY,
  from_id     text NOT NULL,
  to_target   text NOT NULL,
  channel     text,
  subject     text,
  body        text NOT NULL,
  reply_to    bigint,
  thread_id   bigint NOT NULL,
  claimable   boolean NOT NULL DEFAULT false,
  task_id     bigint,
  created_at  bigint NOT NULL,
  meta        text NOT NULL DEFAULT '{}',
  -- The agents it was addressed to, resolved when it was sent.
  recipients  text[] NOT NULL,
  -- A subject word weighs A, a body word B (ranked ×2 against ×1, as SQLite's bm25(2.0, 1.0)).
  search      tsvector NOT NULL GENERATED ALWAYS AS (
    setweight(to_tsvector('simple', relay_words(coalesce(subject, ''))), 'A') || setweight(to_tsvector('simple', relay_words(body)), 'B')
  ) STORED
);
CREATE INDEX messages_thread ON messages (thread_id, id);
CREATE INDEX messages_created ON messages (created_at);
-- Inbox scans: SQLite scans ids with a membership test bounded by an in-memory bound per agent,
-- which only a single writer can keep; with several nodes the index answers "addressed to X".
CREATE INDEX messages_recipients ON messages USING gin (recipients);
CREATE INDEX messages_search ON messages USING gin (search);

-- Delivery states as in SQLite's migration 0003: sparse exact marks and spans of ids.
CREATE TABLE delivery_marks (
  agent_id    text NOT NULL,
  message_id  bigint NOT NULL,
  state       text NOT NULL,
  at          bigint NOT NULL,
  PRIMARY KEY (agent_id, message_id)
);
CREATE INDEX delivery_marks_message ON delivery_marks (message_id);

CREATE TABLE delivery_spans (
  id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  agent_id  text NOT NULL,
  state     text NOT NULL,
  first_id  bigint NOT NULL,
  last_id   bigint NOT NULL,
  at        bigint NOT NULL
);
CREATE INDEX delivery_spans_agent ON delivery_spans (agent_id, state, last_id);

CREATE TABLE tasks (
  id            bigint PRIMARY KEY,
  title         text NOT NULL,
  body          text,
  target        text NOT NULL,
  channel       text,
  status        text NOT NULL,
  progress      integer NOT NULL DEFAULT 0,
  claimed_by    text,
  claimed_at    bigint,
  attempts      integer NOT NULL DEFAULT 0,
  dedupe_key    text,
  source        text NOT NULL,
  occurrences   integer NOT NULL DEFAULT 1,
  message_id    bigint,
  callback_url  text,
  created_at    bigint NOT NULL,
  updated_at    bigint NOT NULL,
  closed_at     bigint,
  meta          text NOT NULL DEFAULT '{}'
);
-- At most one live task per (source, dedupe key): the database enforces dedupe, not just the code.
CREATE UNIQUE INDEX tasks_dedupe_live ON tasks (source, dedupe_key)
  WHERE dedupe_key IS NOT NULL AND status NOT IN ('done', 'failed', 'canceled');
CREATE INDEX tasks_status ON tasks (status, id);
CREATE INDEX tasks_claimed_by ON tasks (claimed_by) WHERE claimed_by IS NOT NULL;

CREATE TABLE events (
  id        bigint PRIMARY KEY,
  at        bigint NOT NULL,
  kind      text NOT NULL,
  task_id   bigint,
  agent_id  text,
  data      text NOT NULL DEFAULT '{}'
);
CREATE INDEX events_task ON events (task_id, id);
CREATE INDEX events_at ON events (at);

-- Durable callback outbox, written in the transaction of the task event it carries.
CREATE TABLE outbox (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  webhook_id   text NOT NULL UNIQUE,
  task_id      bigint NOT NULL,
  event_id     bigint NOT NULL,
  url          text NOT NULL,
  signer       text NOT NULL,
  payload      text NOT NULL,
  state        text NOT NULL DEFAULT 'pending',
  attempts     integer NOT NULL DEFAULT 0,
  next_at      bigint NOT NULL,
  last_status  integer,
  last_error   text,
  created_at   bigint NOT NULL,
  updated_at   bigint NOT NULL
);
CREATE INDEX outbox_due ON outbox (state, next_at);
CREATE INDEX outbox_task ON outbox (task_id, id);

CREATE TABLE webhook_receipts (
  integration  text NOT NULL,
  delivery_id  text NOT NULL,
  received_at  bigint NOT NULL,
  task_id      bigint,
  PRIMARY KEY (integration, delivery_id)
);
CREATE INDEX webhook_receipts_at ON webhook_receipts (received_at);

CREATE TABLE leases (
  id           bigint PRIMARY KEY,
  agent_id     text NOT NULL,
  mode         text NOT NULL,
  resources    text NOT NULL,
  reason       text,
  token        bigint NOT NULL,
  ttl_ms       bigint NOT NULL,
  acquired_at  bigint NOT NULL,
  renewed_at   bigint NOT NULL,
  expires_at   bigint NOT NULL,
  released_at  bigint,
  ended_by     text
);
CREATE INDEX leases_live ON leases (expires_at) WHERE released_at IS NULL;
CREATE INDEX leases_agent ON leases (agent_id) WHERE released_at IS NULL;
CREATE INDEX leases_released ON leases (released_at) WHERE released_at IS NOT NULL;

-- One row per batch applied, written in the batch's own transaction, with the outcomes it
-- answered: when the reply to a batch is lost (the connection died after the call was sent), a
-- fresh connection looks its id up (broker/store-postgres/lost-reply.ts). A lookup that finds
-- nothing writes the id itself with no outcomes, so the batch, if it is still on its way, fails on
-- the primary key and can never commit after it was answered as not written. Kept 15 minutes.
CREATE TABLE relay_batches (
  id          text PRIMARY KEY,
  outcomes    jsonb,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX relay_batches_created ON relay_batches (created_at);
