import type { CommitQueue } from './commit-queue.js';
import type { Session } from './ports.js';
import type { DeliveryReads } from './store-port.js';

/** How long the pushed state may lag the pushes (it reads `queued` meanwhile). */
const FLUSH_EVERY_MS = 50;

interface OpenSpan {
  agentId: string;
  /** The session whose pushes extend this span; null once it may have missed one (closed, a write refused). */
  session: Session | null;
  /** The stored row, once the span holds a message. */
  rowId: number | null;
  /** True while the row's insert is being committed (its id is not known yet). */
  inserting: boolean;
  first: number;
  last: number;
  at: number;
}

/**
 * Records the `pushed` state as ranges, one row per attached session rather than one per message
 * and recipient. The rule that makes a range exact: from the moment a session attaches as an agent
 * with a cursor, every message to that agent after the cursor is written to that session in id
 * order (the backlog, then live pushes in commit order), until a write is refused or the session
 * goes. So [cursor + 1, last id written] covers every message to the agent in it. Anything this
 * cannot vouch for is left out and reads `queued`: the record may lag the truth, never lead it.
 * Rows are written with a group commit at most every FLUSH_EVERY_MS, like other bookkeeping.
 */
export class PushRecorder {
  /** The latest span per agent; kept while it may still grow or has not been written. */
  private readonly latest = new Map<string, OpenSpan>();
  private dirty = new Set<OpenSpan>();

  constructor(
    private readonly deliveries: DeliveryReads,
    private readonly queue: CommitQueue,
    private readonly now: () => number,
  ) {}

  /**
   * `session` now speaks for the agent and will be written every message to it after `cursor`;
   * `recorded` is what recordedThrough answered just before (a new span never overlaps an older one).
   */
  attached(agentId: string, session: Session, cursor: number, recorded: number): void {
    const from = Math.max(cursor, this.latest.get(agentId)?.last ?? recorded);
    this.latest.set(agentId, { agentId, session, rowId: null, inserting: false, first: from + 1, last: from, at: this.now() });
  }

  /** A message was written to the session speaking for the agent. */
  pushed(agentId: string, session: Session, messageId: number): void {
    const span = this.latest.get(agentId);
    if (!span || span.session !== session || messageId <= span.last) return;
    span.last = messageId;
    this.markDirty(span);
  }

  /** A write to the session was refused: it stops vouching for the agent. */
  ended(agentId: string, session: Session): void {
    const span = this.latest.get(agentId);
    if (span && span.session === session) this.close(span);
  }

  /** The session speaking for the agent went away. */
  disconnected(agentId: string): void {
    const span = this.latest.get(agentId);
    if (span?.session) this.close(span);
  }

  private close(span: OpenSpan): void {
    span.session = null;
    if (!this.dirty.has(span)) this.latest.delete(span.agentId);
  }

  /**
   * The agent fetched every message to it in (since, last] with an unfiltered poll: one span.
   * Returns false when it cannot be recorded as a range (a live session's span is still growing,
   * and ranges of one agent must not overlap); the caller records the messages one by one.
   */
  async polled(agentId: string, since: number, last: number): Promise<boolean> {
    if (this.latest.get(agentId)?.session) return false;
    const recorded = await this.recordedThrough(agentId);
    // A session may have attached while the store answered: its span is the one that grows.
    if (this.latest.get(agentId)?.session) return false;
    const from = Math.max(since, this.latest.get(agentId)?.last ?? recorded);
    if (last <= from) return true;
    const span: OpenSpan = { agentId, session: null, rowId: null, inserting: false, first: from + 1, last, at: this.now() };
    this.latest.set(agentId, span);
    this.markDirty(span);
    return true;
  }

  /** The last message id the agent's recorded (or still open) spans cover. */
  async recordedThrough(agentId: string): Promise<number> {
    const open = this.latest.get(agentId);
    if (open) return open.last;
    return (await this.deliveries.latestSpan(agentId, 'pushed'))?.last ?? 0;
  }

  private markDirty(span: OpenSpan): void {
    if (this.dirty.size === 0) {
      // One write per span per interval, not per commit: under a fan-out every commit moves every span.
      setTimeout(() => this.flush(), FLUSH_EVERY_MS).unref();
    }
    this.dirty.add(span);
  }

  private flush(): void {
    const spans = this.dirty;
    this.dirty = new Set();
    for (const span of spans) {
      const op = { op: 'delivery.span' as const, at: span.at, agentId: span.agentId, rowId: span.rowId, first: span.first, last: span.last };
      if (span.inserting) {
        this.markDirty(span); // its row id is on its way: extend the row next time
      } else if (span.rowId === null) {
        span.inserting = true;
        this.queue
          .apply(op, (outcome) => {
            if (outcome.ok) span.rowId = outcome.value.rowId;
            if (!outcome.ok || span.last > op.last) this.markDirty(span);
            else this.forgetIfDone(span);
          })
          // Refused (a storage fault): tried again with the next flush, unless the relay is stopping.
          .catch(() => this.queue.isClosed || this.markDirty(span))
          .finally(() => (span.inserting = false));
      } else {
        this.queue.defer(op);
        this.forgetIfDone(span);
      }
    }
  }

  /** A finished span is on disk: the next one starts after it, read back from the store. */
  private forgetIfDone(span: OpenSpan): void {
    if (span.session === null && this.latest.get(span.agentId) === span) this.latest.delete(span.agentId);
  }
}
