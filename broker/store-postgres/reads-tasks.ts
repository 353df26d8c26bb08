import type { EventKind, RelayEvent, Task } from '../../protocol/index.js';
import type { EventReads, OutboxEntry, OutboxReads, OutboxState, ReceiptReads, TaskFilter, TaskReads } from '../domain/store-port.js';
import type { Query } from './connection.js';
import { eventFromRow, outboxFromRow, taskFromRow } from './rows.js';
import { Where } from './where.js';

const TASK = `SELECT * FROM tasks WHERE id = $1`;
const LIVE_CLAIMED_BY = `SELECT * FROM tasks WHERE claimed_by = $1 AND NOT relay_is_terminal(status) ORDER BY id`;
const COUNT_BY_STATUS = `SELECT status, count(*) AS n FROM tasks GROUP BY status`;

export class PgTaskReads implements TaskReads {
  constructor(private readonly q: Query) {}

  async get(id: number): Promise<Task | undefined> {
    const [row] = await this.q(TASK, [id]);
    return row ? taskFromRow(row) : undefined;
  }

  async list(f: TaskFilter): Promise<Task[]> {
    const w = new Where().add((p) => `id > ${p}`, f.since);
    if (f.status !== null) w.add((p) => `status = ${p}`, f.status);
    if (f.target !== null) w.add((p) => `target = ${p}`, f.target);
    if (f.channel !== null) w.add((p) => `channel = ${p}`, f.channel);
    if (f.claimedBy !== null) w.add((p) => `claimed_by = ${p}`, f.claimedBy);
    return (await this.q(`SELECT * FROM tasks WHERE ${w.sql(f.limit)}`, w.params)).map(taskFromRow);
  }

  async liveClaimedBy(agentId: string): Promise<Task[]> {
    return (await this.q(LIVE_CLAIMED_BY, [agentId])).map(taskFromRow);
  }

  async countByStatus(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const r of await this.q<{ status: string; n: number }>(COUNT_BY_STATUS)) out[r.status] = r.n;
    return out;
  }
}

const EVENTS_OF_TASK = `SELECT * FROM events WHERE task_id = $1 AND id > $2 ORDER BY id LIMIT $3`;
const EVENTS_MAX_ID = `SELECT coalesce(max(id), 0) AS id FROM events`;

export class PgEventReads implements EventReads {
  constructor(private readonly q: Query) {}

  async list(f: { since: number; kind: EventKind | null; taskId: number | null; limit: number }): Promise<RelayEvent[]> {
    const w = new Where().add((p) => `id > ${p}`, f.since);
    if (f.kind !== null) w.add((p) => `kind = ${p}`, f.kind);
    if (f.taskId !== null) w.add((p) => `task_id = ${p}`, f.taskId);
    return (await this.q(`SELECT * FROM events WHERE ${w.sql(f.limit)}`, w.params)).map(eventFromRow);
  }

  /** The task's events after `since`, oldest first, at most `limit`. */
  async ofTask(taskId: number, since = 0, limit = Number.MAX_SAFE_INTEGER): Promise<RelayEvent[]> {
    return (await this.q(EVENTS_OF_TASK, [taskId, since, limit])).map(eventFromRow);
  }

  async maxId(): Promise<number> {
    return (await this.q<{ id: number }>(EVENTS_MAX_ID))[0]!.id;
  }
}

// Oldest pending entry per task only: callbacks of one task arrive in event order.
const DUE = `
  SELECT o.* FROM outbox o
  WHERE o.state = 'pending' AND o.next_at <= $1
    AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.task_id = o.task_id AND p.state = 'pending' AND p.id < o.id)
  ORDER BY o.next_at, o.id LIMIT $2`;
const NEXT_DUE_AT = `SELECT min(next_at) AS at FROM outbox WHERE state = 'pending'`;
const OUTBOX_OF_TASK = `SELECT * FROM outbox WHERE task_id = $1 AND event_id BETWEEN $2 AND $3 ORDER BY id`;
const DEPTH = `SELECT state, count(*) AS n FROM outbox GROUP BY state`;

export class PgOutboxReads implements OutboxReads {
  constructor(private readonly q: Query) {}

  async due(now: number, limit: number): Promise<OutboxEntry[]> {
    return (await this.q(DUE, [now, limit])).map(outboxFromRow);
  }

  async nextDueAt(): Promise<number | null> {
    return (await this.q<{ at: number | null }>(NEXT_DUE_AT))[0]?.at ?? null;
  }

  async ofTask(taskId: number, firstEventId = 0, lastEventId = Number.MAX_SAFE_INTEGER): Promise<OutboxEntry[]> {
    return (await this.q(OUTBOX_OF_TASK, [taskId, firstEventId, lastEventId])).map(outboxFromRow);
  }

  async depthByState(): Promise<Record<OutboxState, number>> {
    const out: Record<OutboxState, number> = { pending: 0, delivered: 0, dead: 0 };
    for (const r of await this.q<{ state: string; n: number }>(DEPTH)) out[r.state as OutboxState] = r.n;
    return out;
  }
}

const SEEN = `SELECT task_id FROM webhook_receipts WHERE integration = $1 AND delivery_id = $2`;

export class PgReceiptReads implements ReceiptReads {
  constructor(private readonly q: Query) {}

  async seen(integration: string, deliveryId: string): Promise<{ taskId: number | null } | undefined> {
    const [row] = await this.q<{ task_id: number | null }>(SEEN, [integration, deliveryId]);
    return row ? { taskId: row.task_id } : undefined;
  }
}
