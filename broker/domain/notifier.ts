import { CLOSE_CODES, type AgentSummary, type Lease, type Message, type RelayEvent, type Task } from '../../protocol/index.js';
import type { Logger } from '../logger.js';
import type { CommitQueue } from './commit-queue.js';
import type { FrameMeta, Session } from './ports.js';
import type { RelayStore } from './store-port.js';
import { PushRecorder } from './push-spans.js';
import type { SessionRegistry } from './sessions.js';

function frame(method: string, params: unknown): string {
  return JSON.stringify({ jsonrpc: '2.0', method, params });
}

/**
 * Pushes notifications to live sessions. Called only from post-commit hooks, so everything pushed
 * is already durable. Each notification is serialized once, whatever the number of recipients,
 * and no database read happens here: the pushed state is recorded as ranges (PushRecorder).
 */
export type MessageListener = (message: Message, recipients: readonly string[]) => void;

/** A live frame waiting for a session to finish its backlog; `asAgent`: a message to that agent, recorded as pushed once written. */
interface HeldFrame {
  text: string;
  meta: FrameMeta;
  asAgent: string | null;
}

interface Hold {
  frames: HeldFrame[];
  bytes: number;
}

/** Where the live feed stands: everything up to these ids was published (so is committed and readable). */
export interface PublishedThrough {
  messageId: number;
  eventId: number;
}

export class Notifier {
  readonly pushes: PushRecorder;
  private readonly messageListeners: MessageListener[] = [];
  /** Sessions replaying a backlog: their live frames wait here, in order, until it is done. */
  private readonly held = new Map<Session, Hold>();
  private readonly published: PublishedThrough;

  constructor(
    private readonly sessions: SessionRegistry,
    store: RelayStore,
    queue: CommitQueue,
    private readonly log: Logger,
    now: () => number,
    /** The newest message and event when the relay started: the live feed goes on from there. */
    start: PublishedThrough,
    /** How much may wait for a session replaying its backlog before it is cut (it resumes by cursor). */
    private readonly maxHeldBytes: number,
  ) {
    this.pushes = new PushRecorder(store.deliveries, queue, now);
    this.published = { ...start };
  }

  /** The newest message and event published so far: a backlog read up to here meets the live feed exactly. */
  publishedThrough(): PublishedThrough {
    return { ...this.published };
  }

  /**
   * From now until `release`, live frames for the session wait (its backlog is being read, and
   * it must get the backlog first). Frames written with `backlog` and `sendTo` do not wait.
   */
  hold(session: Session): void {
    if (!this.held.has(session)) this.held.set(session, { frames: [], bytes: 0 });
  }

  /** The backlog is written: write what waited, in order, then go live. */
  release(session: Session): void {
    const hold = this.held.get(session);
    if (!hold) return;
    this.held.delete(session);
    for (const f of hold.frames) this.deliver(session, f.text, f.meta, f.asAgent);
  }

  /** Adapters without a Session (long-polls) hear of committed messages here. */
  onMessage(listener: MessageListener): void {
    this.messageListeners.push(listener);
  }

  messageNew(message: Message, recipients: readonly string[]): void {
    this.published.messageId = Math.max(this.published.messageId, message.id);
    // Serialized once, and only if a session is there to hear it (most sends to an offline agent have none).
    let text: string | undefined;
    const textOf = () => (text ??= frame('message/new', { message }));
    const meta: FrameMeta = { method: 'message/new', cursor: message.id };
    const sentTo = new Set<Session>();
    for (const agentId of recipients) {
      const s = this.sessions.forAgent(agentId);
      if (!s) continue;
      sentTo.add(s);
      this.write(s, textOf(), meta, agentId);
    }
    for (const s of this.sessions.subscribers('messages')) {
      if (!sentTo.has(s)) this.write(s, textOf(), meta);
    }
    for (const listener of this.messageListeners) listener(message, recipients);
  }

  /** Push already-committed messages to one session (resume backlog); records them as pushed. */
  backlog(session: Session, messages: readonly Message[], asAgent: string | null): void {
    for (const message of messages) {
      if (!this.deliver(session, frame('message/new', { message }), { method: 'message/new', cursor: message.id }, asAgent)) return;
    }
  }

  taskUpdated(task: Task, event: RelayEvent, alsoAgents: readonly (string | null)[] = []): void {
    const text = frame('task/updated', { task, event });
    const meta: FrameMeta = { method: 'task/updated' };
    const sentTo = new Set<Session>();
    for (const agentId of [task.claimedBy, ...alsoAgents]) {
      if (!agentId) continue;
      const s = this.sessions.forAgent(agentId);
      if (s && !sentTo.has(s)) {
        sentTo.add(s);
        this.write(s, text, meta);
      }
    }
    for (const s of this.sessions.subscribers('tasks')) if (!sentTo.has(s)) this.write(s, text, meta);
    this.eventNew(event);
  }

  /** To the lease's holder (it hears of an expiry or an offline release) and to `leases` subscribers. */
  leaseUpdated(lease: Lease, event: RelayEvent): void {
    const text = frame('lease/updated', { lease, event });
    const meta: FrameMeta = { method: 'lease/updated' };
    const holder = this.sessions.forAgent(lease.agentId);
    if (holder) this.write(holder, text, meta);
    for (const s of this.sessions.subscribers('leases')) if (s !== holder) this.write(s, text, meta);
    this.eventNew(event);
  }

  eventNew(event: RelayEvent): void {
    this.published.eventId = Math.max(this.published.eventId, event.id);
    const subs = this.sessions.subscribers('events');
    if (subs.size === 0) return;
    const text = frame('event/new', { event });
    for (const s of subs) this.write(s, text, { method: 'event/new' });
  }

  agentUpdated(agent: AgentSummary): void {
    const subs = this.sessions.subscribers('agents');
    if (subs.size === 0) return;
    const text = frame('agent/updated', { agent });
    for (const s of subs) this.write(s, text, { method: 'agent/updated' });
  }

  /** Write one frame to the session now (a backlog's own frames: they never wait). */
  sendTo(session: Session, method: string, params: unknown, cursor?: number): boolean {
    return this.writeNow(session, frame(method, params), cursor === undefined ? { method } : { method, cursor });
  }

  /**
   * A live frame: written now, or after the session's backlog if it is replaying one. `asAgent`:
   * the frame is a message to that agent (meta.cursor its id), recorded as pushed once written.
   */
  private write(session: Session, text: string, meta: FrameMeta, asAgent: string | null = null): void {
    const hold = this.held.get(session);
    if (!hold) {
      this.deliver(session, text, meta, asAgent);
      return;
    }
    hold.bytes += text.length;
    if (hold.bytes > this.maxHeldBytes) {
      // The live feed outran the backlog past what a send buffer may hold: cut it like a slow consumer.
      this.held.delete(session);
      if (session.agentId) this.pushes.ended(session.agentId, session);
      this.log.warn({ session: session.id, agentId: session.agentId }, 'slow consumer disconnected while replaying its backlog');
      session.close(CLOSE_CODES.slowConsumer, 'slow consumer: live messages outran the backlog, resume by cursor');
      return;
    }
    hold.frames.push({ text, meta, asAgent });
  }

  /** Write a frame now; a message to `asAgent` is recorded as pushed, or its span ends if the write was refused. */
  private deliver(session: Session, text: string, meta: FrameMeta, asAgent: string | null): boolean {
    const ok = !session.closed && this.writeNow(session, text, meta);
    if (asAgent !== null) {
      if (ok) this.pushes.pushed(asAgent, session, meta.cursor!);
      else this.pushes.ended(asAgent, session);
    }
    return ok;
  }

  /** Write a frame; a consumer past its backpressure limit is cut (it resumes by cursor). */
  private writeNow(session: Session, text: string, meta: FrameMeta): boolean {
    const result = session.send(text, meta);
    if (result === 'dropped') {
      this.log.warn({ session: session.id, agentId: session.agentId }, 'slow consumer disconnected');
      session.close(CLOSE_CODES.slowConsumer, 'slow consumer: send buffer over limit, resume by cursor');
      return false;
    }
    return true;
  }
}
