import { CLOSE_CODES, type Agent, type Message, type RelayEvent, type Task } from '../../protocol/index.js';
import type { Logger } from '../logger.js';
import type { WriteQueue } from '../store/write-queue.js';
import type { SqliteStore } from '../store/store.js';
import type { FrameMeta, Session } from './ports.js';
import type { SessionRegistry } from './sessions.js';

function frame(method: string, params: unknown): string {
  return JSON.stringify({ jsonrpc: '2.0', method, params });
}

/**
 * Pushes notifications to live sessions. Called only from post-commit hooks, so everything pushed
 * is already durable. Each notification is serialized once, whatever the number of recipients,
 * and no database read happens here: delivery states are recorded with the next group commit.
 */
export type MessageListener = (message: Message, recipients: readonly string[]) => void;

export class Notifier {
  private pushed: Array<[string, number, number]> = [];
  private readonly messageListeners: MessageListener[] = [];

  constructor(
    private readonly sessions: SessionRegistry,
    private readonly store: SqliteStore,
    private readonly queue: WriteQueue,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {}

  /** Adapters without a Session (long-polls) hear of committed messages here. */
  onMessage(listener: MessageListener): void {
    this.messageListeners.push(listener);
  }

  messageNew(message: Message, recipients: readonly string[]): void {
    const text = frame('message/new', { message });
    const meta: FrameMeta = { method: 'message/new', cursor: message.id };
    const sentTo = new Set<Session>();
    for (const agentId of recipients) {
      const s = this.sessions.forAgent(agentId);
      if (!s) continue;
      sentTo.add(s);
      if (this.write(s, text, meta)) this.recordPushed(agentId, message.id);
    }
    for (const s of this.sessions.subscribers('messages')) {
      if (!sentTo.has(s)) this.write(s, text, meta);
    }
    for (const listener of this.messageListeners) listener(message, recipients);
  }

  /** Push already-committed messages to one session (resume backlog); records them as pushed. */
  backlog(session: Session, messages: readonly Message[], asAgent: string | null): void {
    for (const message of messages) {
      if (!this.write(session, frame('message/new', { message }), { method: 'message/new', cursor: message.id })) return;
      if (asAgent) this.recordPushed(asAgent, message.id);
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

  eventNew(event: RelayEvent): void {
    const subs = this.sessions.subscribers('events');
    if (subs.size === 0) return;
    const text = frame('event/new', { event });
    for (const s of subs) this.write(s, text, { method: 'event/new' });
  }

  agentUpdated(agent: Agent): void {
    const subs = this.sessions.subscribers('agents');
    if (subs.size === 0) return;
    const text = frame('agent/updated', { agent });
    for (const s of subs) this.write(s, text, { method: 'agent/updated' });
  }

  sendTo(session: Session, method: string, params: unknown, cursor?: number): boolean {
    return this.write(session, frame(method, params), cursor === undefined ? { method } : { method, cursor });
  }

  /** Write a frame; a consumer past its backpressure limit is cut (it resumes by cursor). */
  private write(session: Session, text: string, meta: FrameMeta): boolean {
    const result = session.send(text, meta);
    if (result === 'dropped') {
      this.log.warn({ session: session.id, agentId: session.agentId }, 'slow consumer disconnected');
      session.close(CLOSE_CODES.slowConsumer, 'slow consumer: send buffer over limit, resume by cursor');
      return false;
    }
    return true;
  }

  private recordPushed(agentId: string, messageId: number): void {
    if (this.pushed.length === 0) this.queue.defer(() => this.flushPushed());
    this.pushed.push([agentId, messageId, this.now()]);
  }

  private flushPushed(): void {
    const batch = this.pushed;
    this.pushed = [];
    for (const [agentId, messageId, at] of batch) this.store.messages.advance(agentId, messageId, 'pushed', at);
  }
}
