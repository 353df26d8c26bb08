import { CLOSE_CODES, type Agent, type Message, type RelayEvent, type Task } from '../../protocol/index.js';
import type { Logger } from '../logger.js';
import type { WriteQueue } from '../store/write-queue.js';
import type { SqliteStore } from '../store/store.js';
import type { Session } from './ports.js';
import type { SessionRegistry } from './sessions.js';

function frame(method: string, params: unknown): string {
  return JSON.stringify({ jsonrpc: '2.0', method, params });
}

/**
 * Pushes notifications to live sessions. Called only from post-commit hooks, so everything pushed
 * is already durable. Each notification is serialized once, whatever the number of recipients,
 * and no database read happens here: delivery states are recorded with the next group commit.
 */
export class Notifier {
  private pushed: Array<[string, number, number]> = [];

  constructor(
    private readonly sessions: SessionRegistry,
    private readonly store: SqliteStore,
    private readonly queue: WriteQueue,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {}

  messageNew(message: Message, recipients: readonly string[]): void {
    const text = frame('message/new', { message });
    const sentTo = new Set<Session>();
    for (const agentId of recipients) {
      const s = this.sessions.forAgent(agentId);
      if (!s) continue;
      sentTo.add(s);
      if (this.write(s, text)) this.recordPushed(agentId, message.id);
    }
    for (const s of this.sessions.subscribers('messages')) {
      if (!sentTo.has(s)) this.write(s, text);
    }
  }

  /** Push already-committed messages to one session (resume backlog); records them as pushed. */
  backlog(session: Session, messages: readonly Message[], asAgent: string | null): void {
    for (const message of messages) {
      if (!this.write(session, frame('message/new', { message }))) return;
      if (asAgent) this.recordPushed(asAgent, message.id);
    }
  }

  taskUpdated(task: Task, event: RelayEvent, alsoAgents: readonly (string | null)[] = []): void {
    const text = frame('task/updated', { task, event });
    const sentTo = new Set<Session>();
    for (const agentId of [task.claimedBy, ...alsoAgents]) {
      if (!agentId) continue;
      const s = this.sessions.forAgent(agentId);
      if (s && !sentTo.has(s)) {
        sentTo.add(s);
        this.write(s, text);
      }
    }
    for (const s of this.sessions.subscribers('tasks')) if (!sentTo.has(s)) this.write(s, text);
    this.eventNew(event);
  }

  eventNew(event: RelayEvent): void {
    const subs = this.sessions.subscribers('events');
    if (subs.size === 0) return;
    const text = frame('event/new', { event });
    for (const s of subs) this.write(s, text);
  }

  agentUpdated(agent: Agent): void {
    const subs = this.sessions.subscribers('agents');
    if (subs.size === 0) return;
    const text = frame('agent/updated', { agent });
    for (const s of subs) this.write(s, text);
  }

  sendTo(session: Session, method: string, params: unknown): boolean {
    return this.write(session, frame(method, params));
  }

  /** Write a frame; a consumer past its backpressure limit is cut (it resumes by cursor). */
  private write(session: Session, text: string): boolean {
    const result = session.send(text);
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
