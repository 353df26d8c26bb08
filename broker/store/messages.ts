import type { Delivery, DeliveryState, Message } from '../../protocol/index.js';
import type { Db } from './db.js';
import { parseObject, toJson } from './json.js';

interface MessageRow {
  id: number;
  from_id: string;
  to_target: string;
  channel: string | null;
  subject: string | null;
  body: string;
  reply_to: number | null;
  thread_id: number;
  claimable: number;
  task_id: number | null;
  created_at: number;
  meta: string;
}

interface DeliveryRow {
  agent_id: string;
  message_id: number;
  state: string;
  at: number;
}

export type NewMessage = Omit<Message, 'id' | 'threadId'> & { threadId: number | null };

export interface ListFilter {
  since: number;
  limit: number;
  channel: string | null;
  threadId: number | null;
}

const INSERT = `
  INSERT INTO messages (from_id, to_target, channel, subject, body, reply_to, thread_id, claimable, task_id, created_at, meta)
  VALUES (?, ?, ?, ?, ?, ?, COALESCE(?, 0), ?, ?, ?, ?) RETURNING id`;
const SET_THREAD_ROOT = `UPDATE messages SET thread_id = id WHERE id = ?`;
const GET = `SELECT * FROM messages WHERE id = ?`;
const MAX_ID = `SELECT COALESCE(MAX(id), 0) AS id FROM messages`;
const INSERT_DELIVERY = `INSERT OR IGNORE INTO deliveries (agent_id, message_id, state, at) VALUES (?, ?, 'queued', ?)`;
const DELIVERIES_OF = `SELECT * FROM deliveries WHERE message_id = ? ORDER BY agent_id`;
const GET_DELIVERY = `SELECT * FROM deliveries WHERE agent_id = ? AND message_id = ?`;
// State only moves forward: queued < pushed < injected < read.
const ADVANCE = `
  UPDATE deliveries SET state = @state, at = @at
  WHERE agent_id = @agent AND message_id = @id
    AND (CASE state WHEN 'queued' THEN 0 WHEN 'pushed' THEN 1 WHEN 'injected' THEN 2 ELSE 3 END)
      < (CASE @state WHEN 'queued' THEN 0 WHEN 'pushed' THEN 1 WHEN 'injected' THEN 2 ELSE 3 END)`;
const READ_IDS = `
  UPDATE deliveries SET state = 'read', at = ?
  WHERE agent_id = ? AND state != 'read' AND message_id IN (SELECT value FROM json_each(?))`;
const READ_UP_TO = `UPDATE deliveries SET state = 'read', at = ? WHERE agent_id = ? AND state != 'read' AND message_id <= ?`;
const INBOX = `
  SELECT m.* FROM deliveries d JOIN messages m ON m.id = d.message_id
  WHERE d.agent_id = @agent AND d.message_id > @since
    AND (@unread = 0 OR d.state != 'read')
    AND (@channel IS NULL OR m.channel = @channel)
    AND (@thread IS NULL OR m.thread_id = @thread)
  ORDER BY d.message_id LIMIT @limit`;
const ALL = `
  SELECT * FROM messages
  WHERE id > @since AND (@channel IS NULL OR channel = @channel) AND (@thread IS NULL OR thread_id = @thread)
  ORDER BY id LIMIT @limit`;
const THREAD = `SELECT * FROM messages WHERE thread_id = ? ORDER BY id`;
const PRUNE = `DELETE FROM messages WHERE created_at < ? RETURNING id`;
const PRUNE_DELIVERIES = `DELETE FROM deliveries WHERE message_id <= ?`;

export function messageFromRow(r: MessageRow): Message {
  return {
    id: r.id,
    from: r.from_id,
    to: r.to_target,
    channel: r.channel,
    subject: r.subject,
    body: r.body,
    replyTo: r.reply_to,
    threadId: r.thread_id,
    claimable: r.claimable === 1,
    taskId: r.task_id,
    createdAt: r.created_at,
    meta: parseObject(r.meta),
  };
}

function deliveryFromRow(r: DeliveryRow): Delivery {
  return { messageId: r.message_id, agentId: r.agent_id, state: r.state as DeliveryState, at: r.at };
}

export class MessageTable {
  private readonly stmts;

  constructor(db: Db) {
    this.stmts = {
      insert: db.prepare(INSERT),
      setThreadRoot: db.prepare(SET_THREAD_ROOT),
      get: db.prepare<[number], MessageRow>(GET),
      maxId: db.prepare<[], { id: number }>(MAX_ID),
      insertDelivery: db.prepare(INSERT_DELIVERY),
      deliveriesOf: db.prepare<[number], DeliveryRow>(DELIVERIES_OF),
      getDelivery: db.prepare<[string, number], DeliveryRow>(GET_DELIVERY),
      advance: db.prepare(ADVANCE),
      readIds: db.prepare(READ_IDS),
      readUpTo: db.prepare(READ_UP_TO),
      inbox: db.prepare(INBOX),
      all: db.prepare(ALL),
      thread: db.prepare<[number], MessageRow>(THREAD),
      prune: db.prepare<[number], { id: number }>(PRUNE),
      pruneDeliveries: db.prepare(PRUNE_DELIVERIES),
    };
  }

  /** Insert a message and a queued delivery per recipient; returns the stored message. */
  insert(m: NewMessage, recipients: readonly string[]): Message {
    const s = this.stmts;
    const { id } = s.insert.get(
      m.from, m.to, m.channel, m.subject, m.body, m.replyTo, m.threadId,
      m.claimable ? 1 : 0, m.taskId, m.createdAt, toJson(m.meta),
    ) as { id: number };
    const threadId = m.threadId ?? id;
    if (m.threadId === null) s.setThreadRoot.run(id);
    for (const agentId of recipients) s.insertDelivery.run(agentId, id, m.createdAt);
    return { ...m, id, threadId };
  }

  get(id: number): Message | undefined {
    const row = this.stmts.get.get(id);
    return row ? messageFromRow(row) : undefined;
  }

  maxId(): number {
    return this.stmts.maxId.get()!.id;
  }

  deliveries(messageId: number): Delivery[] {
    return this.stmts.deliveriesOf.all(messageId).map(deliveryFromRow);
  }

  delivery(agentId: string, messageId: number): Delivery | undefined {
    const row = this.stmts.getDelivery.get(agentId, messageId);
    return row ? deliveryFromRow(row) : undefined;
  }

  /** Move a recipient's delivery forward to `state`; a lower or equal state is left alone. */
  advance(agentId: string, messageId: number, state: DeliveryState, at: number): boolean {
    return this.stmts.advance.run({ agent: agentId, id: messageId, state, at }).changes > 0;
  }

  markRead(agentId: string, ids: readonly number[], at: number): number {
    return this.stmts.readIds.run(at, agentId, JSON.stringify(ids)).changes;
  }

  markReadUpTo(agentId: string, upTo: number, at: number): number {
    return this.stmts.readUpTo.run(at, agentId, upTo).changes;
  }

  inbox(agentId: string, f: ListFilter & { unread: boolean }): Message[] {
    const rows = this.stmts.inbox.all({
      agent: agentId, since: f.since, unread: f.unread ? 1 : 0, channel: f.channel, thread: f.threadId, limit: f.limit,
    }) as MessageRow[];
    return rows.map(messageFromRow);
  }

  all(f: ListFilter): Message[] {
    const rows = this.stmts.all.all({ since: f.since, channel: f.channel, thread: f.threadId, limit: f.limit }) as MessageRow[];
    return rows.map(messageFromRow);
  }

  thread(threadId: number): Message[] {
    return this.stmts.thread.all(threadId).map(messageFromRow);
  }

  /** Delete messages created before `cutoff`; returns the highest id deleted (0 if none). */
  pruneBefore(cutoff: number): number {
    const ids = this.stmts.prune.all(cutoff);
    let max = 0;
    for (const r of ids) if (r.id > max) max = r.id;
    if (max > 0) this.stmts.pruneDeliveries.run(max);
    return max;
  }
}
