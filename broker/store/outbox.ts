import type { OutboxEntry, OutboxState } from '../domain/store-port.js';
import type { Db } from './db.js';

interface OutboxRow {
  id: number;
  webhook_id: string;
  task_id: number;
  event_id: number;
  url: string;
  signer: string;
  payload: string;
  state: string;
  attempts: number;
  next_at: number;
  last_status: number | null;
  last_error: string | null;
  created_at: number;
  updated_at: number;
  lease_epoch: number;
}

const INSERT = `
  INSERT INTO outbox (webhook_id, task_id, event_id, url, signer, payload, next_at, created_at, updated_at)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`;
// Oldest pending entry per task only: callbacks of one task arrive in event order.
const DUE = `
  SELECT o.* FROM outbox o
  WHERE o.state = 'pending' AND o.next_at <= ?
    AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.task_id = o.task_id AND p.state = 'pending' AND p.id < o.id)
  ORDER BY o.next_at, o.id LIMIT ?`;
const NEXT_DUE_AT = `SELECT MIN(next_at) AS at FROM outbox WHERE state = 'pending'`;
const LEASE = `UPDATE outbox SET next_at = ?, lease_epoch = lease_epoch + 1 WHERE id = ? RETURNING *`;
const RECORD = `
  UPDATE outbox SET state = @state, attempts = attempts + 1, next_at = @next_at, last_status = @status,
    last_error = @error, updated_at = @now
  WHERE id = @id AND lease_epoch = @epoch`;
const OF_TASK = `SELECT * FROM outbox WHERE task_id = ? AND event_id BETWEEN ? AND ? ORDER BY id`;
const DEPTH = `SELECT state, COUNT(*) AS n FROM outbox GROUP BY state`;
const PRUNE = `DELETE FROM outbox WHERE state != 'pending' AND updated_at < ?`;

function fromRow(r: OutboxRow): OutboxEntry {
  return {
    id: r.id,
    webhookId: r.webhook_id,
    taskId: r.task_id,
    eventId: r.event_id,
    url: r.url,
    signer: r.signer,
    payload: r.payload,
    state: r.state as OutboxState,
    attempts: r.attempts,
    nextAt: r.next_at,
    lastStatus: r.last_status,
    lastError: r.last_error,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    leaseEpoch: r.lease_epoch,
  };
}

export class OutboxTable {
  private readonly s;

  constructor(db: Db) {
    this.s = {
      insert: db.prepare(INSERT),
      due: db.prepare<[number, number], OutboxRow>(DUE),
      nextDueAt: db.prepare<[], { at: number | null }>(NEXT_DUE_AT),
      lease: db.prepare<[number, number], OutboxRow>(LEASE),
      record: db.prepare(RECORD),
      ofTask: db.prepare<[number, number, number], OutboxRow>(OF_TASK),
      depth: db.prepare<[], { state: string; n: number }>(DEPTH),
      prune: db.prepare(PRUNE),
    };
  }

  enqueue(e: { webhookId: string; taskId: number; eventId: number; url: string; signer: string; payload: string; now: number }): void {
    this.s.insert.run(e.webhookId, e.taskId, e.eventId, e.url, e.signer, e.payload, e.now, e.now, e.now);
  }

  due(now: number, limit: number): OutboxEntry[] {
    return this.s.due.all(now, limit).map(fromRow);
  }

  nextDueAt(): number | null {
    return this.s.nextDueAt.get()?.at ?? null;
  }

  /** Lease the due entries (see the callback.lease op): each due again at `until`, its epoch raised. */
  lease(now: number, limit: number, until: number): OutboxEntry[] {
    return this.due(now, limit).map((e) => fromRow(this.s.lease.get(until, e.id)!));
  }

  /** Record one attempt (delivered, retry at `nextAt`, or dead) under the lease of `epoch`; false when that lease has passed on. */
  recordAttempt(id: number, r: { epoch: number; state: OutboxState; nextAt: number; status: number | null; error: string | null; now: number }): boolean {
    return this.s.record.run({ id, epoch: r.epoch, state: r.state, next_at: r.nextAt, status: r.status, error: r.error, now: r.now }).changes === 1;
  }

  /** The callbacks of the task's events with ids from `firstEventId` to `lastEventId`. */
  ofTask(taskId: number, firstEventId = 0, lastEventId = Number.MAX_SAFE_INTEGER): OutboxEntry[] {
    return this.s.ofTask.all(taskId, firstEventId, lastEventId).map(fromRow);
  }

  depthByState(): Record<OutboxState, number> {
    const out: Record<OutboxState, number> = { pending: 0, delivered: 0, dead: 0 };
    for (const r of this.s.depth.all()) out[r.state as OutboxState] = r.n;
    return out;
  }

  pruneFinishedBefore(cutoff: number): number {
    return this.s.prune.run(cutoff).changes;
  }
}
