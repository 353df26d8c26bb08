-- Durable callback outbox: one row per task event for a task with a callback URL, written in the
-- same transaction as the event. The same webhook-id is sent on every retry.
CREATE TABLE outbox (
  id           INTEGER PRIMARY KEY AUTOINCREMENT,
  webhook_id   TEXT NOT NULL UNIQUE,
  task_id      INTEGER NOT NULL,
  event_id     INTEGER NOT NULL,
  url          TEXT NOT NULL,
  signer       TEXT NOT NULL,
  payload      TEXT NOT NULL,
  state        TEXT NOT NULL DEFAULT 'pending',
  attempts     INTEGER NOT NULL DEFAULT 0,
  next_at      INTEGER NOT NULL,
  last_status  INTEGER,
  last_error   TEXT,
  created_at   INTEGER NOT NULL,
  updated_at   INTEGER NOT NULL
);
CREATE INDEX outbox_due ON outbox (state, next_at);
CREATE INDEX outbox_task ON outbox (task_id, id);

-- Webhook deliveries already accepted, per integration: a replayed webhook-id (or
-- X-GitHub-Delivery) is answered as a duplicate and writes nothing.
CREATE TABLE webhook_receipts (
  integration  TEXT NOT NULL,
  delivery_id  TEXT NOT NULL,
  received_at  INTEGER NOT NULL,
  task_id      INTEGER,
  PRIMARY KEY (integration, delivery_id)
) WITHOUT ROWID;
CREATE INDEX webhook_receipts_at ON webhook_receipts (received_at);
