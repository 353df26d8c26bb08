import type { Delivery, DeliveryState, Message } from '../../protocol/index.js';
import type { DeliveryReads, DeliverySpan, ListFilter, MessageReads, SpanState } from '../domain/store-port.js';
import type { Query } from './connection.js';
import { Where } from './where.js';
import { MESSAGE_COLUMNS, messageFromRow, spanFromRow } from './rows.js';

const GET = `SELECT ${MESSAGE_COLUMNS} FROM messages WHERE id = $1`;
const MAX_ID = `SELECT coalesce(max(id), 0) AS id FROM messages`;
const THREAD = `SELECT ${MESSAGE_COLUMNS} FROM messages WHERE thread_id = $1 AND id > $2 ORDER BY id LIMIT $3`;
const notMarkedRead = (agent: string) => `NOT EXISTS (SELECT 1 FROM delivery_marks k WHERE k.agent_id = ${agent} AND k.message_id = m.id AND k.state = 'read')`;

export class PgMessageReads implements MessageReads {
  constructor(private readonly q: Query) {}

  async get(id: number): Promise<Message | undefined> {
    const [row] = await this.q(GET, [id]);
    return row ? messageFromRow(row) : undefined;
  }

  async maxId(): Promise<number> {
    return (await this.q<{ id: number }>(MAX_ID))[0]!.id;
  }

  /**
   * Messages addressed to the agent after `since`, from no lower than its inbox `floor`; with
   * `unread`, from past its read-through cursor, leaving out single messages it marked read.
   * (SQLite's store also bounds the scan by an in-memory "newest id addressed to it", which only a
   * single writer can keep; here the recipients index answers instead.)
   */
  async inbox(agentId: string, f: ListFilter & { floor: number } & ({ unread: false } | { unread: true; readThrough: number })): Promise<Message[]> {
    const since = Math.max(f.since, f.floor, f.unread ? f.readThrough : 0);
    const w = new Where().add((p) => `m.recipients @> ARRAY[${p}::text]`, agentId).add((p) => `m.id > ${p}`, since);
    if (f.unread) w.add(notMarkedRead, agentId);
    if (f.channel !== null) w.add((p) => `m.channel = ${p}`, f.channel);
    if (f.threadId !== null) w.add((p) => `m.thread_id = ${p}`, f.threadId);
    return (await this.q(`SELECT ${MESSAGE_COLUMNS} FROM messages m WHERE ${w.sql(f.limit)}`, w.params)).map(messageFromRow);
  }

  async all(f: ListFilter): Promise<Message[]> {
    const w = new Where().add((p) => `id > ${p}`, f.since);
    if (f.channel !== null) w.add((p) => `channel = ${p}`, f.channel);
    if (f.threadId !== null) w.add((p) => `thread_id = ${p}`, f.threadId);
    return (await this.q(`SELECT ${MESSAGE_COLUMNS} FROM messages WHERE ${w.sql(f.limit)}`, w.params)).map(messageFromRow);
  }

  async thread(threadId: number, since: number, limit: number): Promise<Message[]> {
    return (await this.q(THREAD, [threadId, since, limit])).map(messageFromRow);
  }
}

// relay_delivery (0002_apply.sql) decides a delivery's state, for the writes and the reads alike.
const FOR_MESSAGE = `
  SELECT r.agent, d.state, d.at FROM messages m, unnest(m.recipients) AS r(agent), LATERAL relay_delivery(r.agent, m.id) AS d
  WHERE m.id = $1`;
const ONE = `SELECT state, at FROM relay_delivery($1, $2)`;
const READ_THROUGH = `SELECT relay_read_through($1) AS n`;
const LATEST_SPAN = `SELECT id, first_id, last_id, at FROM delivery_spans WHERE agent_id = $1 AND state = $2 ORDER BY last_id DESC LIMIT 1`;

export class PgDeliveryReads implements DeliveryReads {
  constructor(private readonly q: Query) {}

  /** Every recipient's delivery of a message, by agent id; empty for an unknown message. */
  async forMessage(messageId: number): Promise<Delivery[]> {
    const rows = await this.q<{ agent: string; state: DeliveryState; at: number }>(FOR_MESSAGE, [messageId]);
    // Sorted here as JavaScript sorts (the database's collation may order differently).
    return rows.map((r) => ({ messageId, agentId: r.agent, state: r.state, at: r.at })).sort((a, b) => (a.agentId < b.agentId ? -1 : a.agentId > b.agentId ? 1 : 0));
  }

  async get(agentId: string, messageId: number): Promise<Delivery | undefined> {
    const [row] = await this.q<{ state: DeliveryState; at: number }>(ONE, [agentId, messageId]);
    return row ? { messageId, agentId, state: row.state, at: row.at } : undefined;
  }

  async readThrough(agentId: string): Promise<number> {
    return (await this.q<{ n: number }>(READ_THROUGH, [agentId]))[0]!.n;
  }

  async latestSpan(agentId: string, state: SpanState): Promise<DeliverySpan | undefined> {
    const [row] = await this.q(LATEST_SPAN, [agentId, state]);
    return row ? spanFromRow(row) : undefined;
  }
}
