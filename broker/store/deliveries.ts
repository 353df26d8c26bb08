import { DELIVERY_ORDER, type Delivery, type DeliveryState } from '../../protocol/index.js';
import type { DeliverySpan, SpanState } from '../domain/store-port.js';
import type { Db } from './db.js';

interface SpanRow {
  id: number;
  first_id: number;
  last_id: number;
  at: number;
}

/** Membership test on `messages.recipients` (' id1 id2 '): agent ids never contain a space. */
export function recipientNeedle(agentId: string): string {
  return ` ${agentId} `;
}

export function encodeRecipients(agentIds: readonly string[]): string {
  return agentIds.length === 0 ? ' ' : ` ${agentIds.join(' ')} `;
}

export function decodeRecipients(text: string): string[] {
  return text.split(' ').filter((s) => s.length > 0);
}

const RANK_SQL = (col: string) => `(CASE ${col} WHEN 'queued' THEN 0 WHEN 'pushed' THEN 1 WHEN 'injected' THEN 2 ELSE 3 END)`;

const RECIPIENT = `SELECT created_at FROM messages WHERE id = ? AND instr(recipients, ?) > 0`;
const MESSAGE = `SELECT created_at, recipients FROM messages WHERE id = ?`;
const MARK = `SELECT state, at FROM delivery_marks WHERE agent_id = ? AND message_id = ?`;
const MARKS_OF = `SELECT agent_id, state, at FROM delivery_marks WHERE message_id = ?`;
// A mark only moves forward.
const UPSERT_MARK = `
  INSERT INTO delivery_marks (agent_id, message_id, state, at) VALUES (@agent, @id, @state, @at)
  ON CONFLICT (agent_id, message_id) DO UPDATE SET state = excluded.state, at = excluded.at
  WHERE ${RANK_SQL('excluded.state')} > ${RANK_SQL('delivery_marks.state')}`;
// An agent's spans of one state do not overlap and grow in id order: the first one ending at or
// after an id is the only one that can hold it.
const SPAN_AT_OR_AFTER = `
  SELECT id, first_id, last_id, at FROM delivery_spans
  WHERE agent_id = ? AND state = ? AND last_id >= ? ORDER BY last_id LIMIT 1`;
const LATEST_SPAN = `
  SELECT id, first_id, last_id, at FROM delivery_spans
  WHERE agent_id = ? AND state = ? ORDER BY last_id DESC LIMIT 1`;
const INSERT_SPAN = `INSERT INTO delivery_spans (agent_id, state, first_id, last_id, at) VALUES (?, ?, ?, ?, ?) RETURNING id`;
// Keyed by more than the row id: a span whose insert was rolled back with its batch must not move
// another span that later took the same id.
const EXTEND_SPAN = `UPDATE delivery_spans SET last_id = @last WHERE id = @id AND agent_id = @agent AND first_id = @first AND last_id < @last`;
/** SQL: message `m` was not marked read on its own by agent `@agent`. */
export const NOT_MARKED_READ = `NOT EXISTS (
  SELECT 1 FROM delivery_marks k WHERE k.agent_id = @agent AND k.message_id = m.id AND k.state = 'read')`;
const COUNT_UNREAD_IN = `
  SELECT count(*) AS n FROM messages m
  WHERE m.id > @from AND m.id <= @to AND instr(m.recipients, @needle) > 0 AND ${NOT_MARKED_READ}`;
const FIRST_UNREAD_AFTER = `
  SELECT m.id FROM messages m
  WHERE m.id > @from AND instr(m.recipients, @needle) > 0 AND ${NOT_MARKED_READ}
  ORDER BY m.id LIMIT 1`;
const PRUNE_MARKS = `DELETE FROM delivery_marks WHERE message_id <= ?`;
const PRUNE_SPANS = `DELETE FROM delivery_spans WHERE last_id <= ?`;

const rank = (s: DeliveryState) => DELIVERY_ORDER.indexOf(s);

/**
 * Per-recipient delivery states (queued → pushed → injected → read), stored so that sending and
 * pushing a message write nothing per recipient: a state is the highest of the recipient's exact
 * mark for the message and the spans (ranges of its messages pushed or read together) covering it.
 */
export class DeliveryTable {
  private readonly stmts;

  constructor(
    db: Db,
    /** The newest message id (MessageTable.maxId). */
    private readonly maxMessageId: () => number,
  ) {
    this.stmts = {
      recipient: db.prepare<[number, string], { created_at: number }>(RECIPIENT),
      message: db.prepare<[number], { created_at: number; recipients: string }>(MESSAGE),
      mark: db.prepare<[string, number], { state: DeliveryState; at: number }>(MARK),
      marksOf: db.prepare<[number], { agent_id: string; state: DeliveryState; at: number }>(MARKS_OF),
      upsertMark: db.prepare(UPSERT_MARK),
      spanAtOrAfter: db.prepare<[string, SpanState, number], SpanRow>(SPAN_AT_OR_AFTER),
      latestSpan: db.prepare<[string, SpanState], SpanRow>(LATEST_SPAN),
      insertSpan: db.prepare<[string, SpanState, number, number, number], { id: number }>(INSERT_SPAN),
      extendSpan: db.prepare(EXTEND_SPAN),
      countUnreadIn: db.prepare(COUNT_UNREAD_IN),
      firstUnreadAfter: db.prepare(FIRST_UNREAD_AFTER),
      pruneMarks: db.prepare(PRUNE_MARKS),
      pruneSpans: db.prepare(PRUNE_SPANS),
    };
  }

  /** Every recipient's delivery of a message, by agent id; empty for an unknown message. */
  forMessage(messageId: number): Delivery[] {
    const row = this.stmts.message.get(messageId);
    if (!row) return [];
    const marks = new Map(this.stmts.marksOf.all(messageId).map((m) => [m.agent_id, m]));
    return decodeRecipients(row.recipients)
      .sort()
      .map((agentId) => this.resolve(agentId, messageId, row.created_at, marks.get(agentId)));
  }

  /** One recipient's delivery; undefined when the message was not addressed to it. */
  get(agentId: string, messageId: number): Delivery | undefined {
    const row = this.stmts.recipient.get(messageId, recipientNeedle(agentId));
    if (!row) return undefined;
    return this.resolve(agentId, messageId, row.created_at, this.stmts.mark.get(agentId, messageId));
  }

  /** Record that one recipient's delivery reached `state` (a lower or equal state is left alone). */
  advance(agentId: string, messageId: number, state: DeliveryState, at: number): void {
    this.stmts.upsertMark.run({ agent: agentId, id: messageId, state, at });
  }

  /** Mark single messages read; returns how many of them were addressed to the agent and unread. */
  markRead(agentId: string, ids: readonly number[], at: number): number {
    let n = 0;
    for (const id of new Set(ids)) {
      const d = this.get(agentId, id);
      if (!d || d.state === 'read') continue;
      this.advance(agentId, id, 'read', at);
      n++;
    }
    if (n > 0) this.raiseReadThrough(agentId, at);
    return n;
  }

  /**
   * Move the read-through cursor up to just before the agent's first unread message. An agent that
   * reads by ids (the Claude hooks do) would otherwise keep it at 0, and every `unread` query would
   * scan the whole store; this scan stops at the first unread message.
   */
  private raiseReadThrough(agentId: string, at: number): void {
    const from = this.readThrough(agentId);
    const first = this.stmts.firstUnreadAfter.get({ from, needle: recipientNeedle(agentId), agent: agentId }) as { id: number } | undefined;
    const through = first ? first.id - 1 : this.maxMessageId();
    // Every message to the agent in (from, through] carries a read mark: the span adds no state,
    // and their marks keep the exact times.
    if (through > from) this.insertSpan(agentId, 'read', from + 1, through, at);
  }

  /** Mark everything addressed to the agent up to `upTo` read; returns how many messages that changed. */
  markReadUpTo(agentId: string, upTo: number, at: number): number {
    const from = this.readThrough(agentId);
    // Never past the newest message: one sent later must arrive unread.
    const to = Math.min(upTo, this.maxMessageId());
    if (to <= from) return 0;
    const { n } = this.stmts.countUnreadIn.get({ from, to, needle: recipientNeedle(agentId), agent: agentId }) as { n: number };
    this.insertSpan(agentId, 'read', from + 1, to, at);
    return n;
  }

  /** Every message addressed to the agent with an id up to this is read (`message/read upTo`). */
  readThrough(agentId: string): number {
    return this.latestSpan(agentId, 'read')?.last ?? 0;
  }

  latestSpan(agentId: string, state: SpanState): DeliverySpan | undefined {
    const r = this.stmts.latestSpan.get(agentId, state);
    return r ? { id: r.id, first: r.first_id, last: r.last_id, at: r.at } : undefined;
  }

  insertSpan(agentId: string, state: SpanState, first: number, last: number, at: number): number {
    return this.stmts.insertSpan.get(agentId, state, first, last, at)!.id;
  }

  extendSpan(agentId: string, span: { id: number; first: number }, last: number): void {
    this.stmts.extendSpan.run({ id: span.id, agent: agentId, first: span.first, last });
  }

  /** Forget delivery states of messages up to `maxId` (they were pruned). */
  pruneThrough(maxId: number): void {
    this.stmts.pruneMarks.run(maxId);
    this.stmts.pruneSpans.run(maxId);
  }

  private resolve(agentId: string, messageId: number, createdAt: number, mark: { state: DeliveryState; at: number } | undefined): Delivery {
    let state: DeliveryState = 'queued';
    let at = createdAt;
    const consider = (s: DeliveryState, t: number) => {
      if (rank(s) > rank(state)) [state, at] = [s, t];
      else if (s === state && t < at) at = t;
    };
    if (mark) consider(mark.state, mark.at);
    for (const s of ['pushed', 'read'] as const) {
      const span = this.stmts.spanAtOrAfter.get(agentId, s, messageId);
      // A span opened before the message was sent reached it when it was sent, not before.
      if (span && span.first_id <= messageId) consider(s, Math.max(span.at, createdAt));
    }
    return { messageId, agentId, state, at };
  }
}
