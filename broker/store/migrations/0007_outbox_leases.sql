-- Dispatch leases on the callback outbox: a dispatcher leases due entries (their next_at moves to
-- the lease's end and their epoch rises) and records an attempt only under the epoch it took, so
-- with several dispatchers (relay nodes sharing a store) each callback is sent by one at a time,
-- and one that died mid-send is re-sent, same webhook-id, when its lease ends.
ALTER TABLE outbox ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0;
