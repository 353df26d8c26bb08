import type { Message } from '../../protocol/index.js';
import type { ListFilter, NewMessage } from '../domain/store-port.js';
import type { Db } from './db.js';
import { encodeRecipients, NOT_MARKED_READ, recipientNeedle } from './deliveries.js';
import { toJson } from './json.js';
import { messageFromRow, type MessageRow } from './message-row.js';

// A message that starts a thread is its root: its thread id is its own id, which AUTOINCREMENT
// makes one above the table's sequence (the highest id ever used), so one statement writes it.
const INSERT = `
  INSERT INTO messages (from_id, to_target, channel, subject, body, reply_to, thread_id, claimable, task_id, created_at, meta, recipients)
  VALUES (?, ?, ?, ?, ?, ?, COALESCE(?, (SELECT seq FROM sqlite_sequence WHERE name = 'messages') + 1, 1), ?, ?, ?, ?, ?)
  RETURNING id, thread_id`;
const GET = `SELECT * FROM messages WHERE id = ?`;
const MAX_ID = `SELECT COALESCE(MAX(id), 0) AS id FROM messages`;
// An inbox is a scan of the messages after the cursor with a membership test, stopped at the
// newest message known to be the agent's (InboxBounds): an empty poll reads no row at all.
const INBOX = `
  SELECT m.* FROM messages m
  WHERE m.id > @since AND m.id <= @upTo AND instr(m.recipients, @needle) > 0
    AND (@unread = 0 OR ${NOT_MARKED_READ})
    AND (@channel IS NULL OR m.channel = @channel)
    AND (@thread IS NULL OR m.thread_id = @thread)
  ORDER BY m.id LIMIT @limit`;
const ALL = `
  SELECT * FROM messages
  WHERE id > @since AND (@channel IS NULL OR channel = @channel) AND (@thread IS NULL OR thread_id = @thread)
  ORDER BY id LIMIT @limit`;
const THREAD = `SELECT * FROM messages WHERE thread_id = ? AND id > ? ORDER BY id LIMIT ?`;
const PRUNE = `DELETE FROM messages WHERE created_at < ? RETURNING id`;

/**
 * Per agent, an id no message addressed to it lies above: raised by every insert naming it, and
 * learned from an inbox scan that reached the end. Unknown (after a start) means "scan to the end"
 * once. Too high is only slower, never wrong: a rolled-back insert or a pruned message leaves it so.
 */
class InboxBounds {
  private readonly newest = new Map<string, number>();

  /** Highest id an inbox scan of this agent needs to reach. */
  upTo(agentId: string): number {
    return this.newest.get(agentId) ?? Number.MAX_SAFE_INTEGER;
  }

  addressed(agentId: string, messageId: number): void {
    const known = this.newest.get(agentId);
    if (known !== undefined && known < messageId) this.newest.set(agentId, messageId);
  }

  /** A scan from `since` that found everything up to the end: its last row (or `since`) is the bound. */
  scannedToEnd(agentId: string, since: number, lastId: number | undefined): void {
    if (!this.newest.has(agentId)) this.newest.set(agentId, lastId ?? since);
  }

  forget(agentId: string): void {
    this.newest.delete(agentId);
  }
}

export class MessageTable {
  private readonly stmts;
  private readonly bounds = new InboxBounds();

  constructor(db: Db) {
    this.stmts = {
      insert: db.prepare(INSERT),
      get: db.prepare<[number], MessageRow>(GET),
      maxId: db.prepare<[], { id: number }>(MAX_ID),
      inbox: db.prepare(INBOX),
      all: db.prepare(ALL),
      thread: db.prepare<[number, number, number], MessageRow>(THREAD),
      prune: db.prepare<[number], { id: number }>(PRUNE),
    };
  }

  /** Insert a message with its recipients (each one's delivery starts queued); returns the stored message. */
  insert(m: NewMessage, recipients: readonly string[]): Message {
    const s = this.stmts;
    const { id, thread_id: threadId } = s.insert.get(
      m.from,
      m.to,
      m.channel,
      m.subject,
      m.body,
      m.replyTo,
      m.threadId,
      m.claimable ? 1 : 0,
      m.taskId,
      m.createdAt,
      toJson(m.meta),
      encodeRecipients(recipients),
    ) as {
      id: number;
      thread_id: number;
    };
    if (m.threadId === null && threadId !== id) throw new Error(`message ${id}: thread root written as ${threadId} (the messages sequence is out of step)`);
    for (const agentId of recipients) this.bounds.addressed(agentId, id);
    return { ...m, id, threadId };
  }

  /** A message the writer committed (on another connection) was addressed to these agents: raise their bounds. */
  noteAddressed(recipients: readonly string[], messageId: number): void {
    for (const agentId of recipients) this.bounds.addressed(agentId, messageId);
  }

  /** A pruned agent's inbox bound goes with it (its id may come back, with a new inbox floor). */
  forgetInbox(agentId: string): void {
    this.bounds.forget(agentId);
  }

  get(id: number): Message | undefined {
    const row = this.stmts.get.get(id);
    return row ? messageFromRow(row) : undefined;
  }

  maxId(): number {
    return this.stmts.maxId.get()!.id;
  }

  /**
   * Messages addressed to the agent after `since`, scanned from no lower than its inbox `floor`
   * (nothing older can be its). With `unread`, from past its read-through cursor (`readThrough`),
   * leaving out single messages it marked read.
   */
  inbox(agentId: string, f: ListFilter & { floor: number } & ({ unread: false } | { unread: true; readThrough: number })): Message[] {
    const since = Math.max(f.since, f.floor, f.unread ? f.readThrough : 0);
    const upTo = this.bounds.upTo(agentId);
    if (since >= upTo) return [];
    const rows = this.stmts.inbox.all({
      agent: agentId,
      needle: recipientNeedle(agentId),
      since,
      upTo,
      unread: f.unread ? 1 : 0,
      channel: f.channel,
      thread: f.threadId,
      limit: f.limit,
    }) as MessageRow[];
    // Only an unfiltered scan that stopped short of its limit saw every message of the agent after `since`.
    if (rows.length < f.limit && !f.unread && f.channel === null && f.threadId === null) this.bounds.scannedToEnd(agentId, since, rows.at(-1)?.id);
    return rows.map(messageFromRow);
  }

  all(f: ListFilter): Message[] {
    const rows = this.stmts.all.all({ since: f.since, channel: f.channel, thread: f.threadId, limit: f.limit }) as MessageRow[];
    return rows.map(messageFromRow);
  }

  /** The thread's messages after `since`, in id order, at most `limit`. */
  thread(threadId: number, since: number, limit: number): Message[] {
    return this.stmts.thread.all(threadId, since, limit).map(messageFromRow);
  }

  /** Delete messages created before `cutoff`; returns the highest id deleted (0 if none). */
  pruneBefore(cutoff: number): number {
    const ids = this.stmts.prune.all(cutoff);
    let max = 0;
    for (const r of ids) if (r.id > max) max = r.id;
    return max;
  }
}
