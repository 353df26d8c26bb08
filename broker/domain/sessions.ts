import { CLOSE_CODES, type StreamTopic } from '../../protocol/index.js';
import type { Session } from './ports.js';

/** Live connections: which session speaks for which agent, and who follows which stream topic. */
export class SessionRegistry {
  private readonly byAgent = new Map<string, Session>();
  private readonly byTopic = new Map<StreamTopic, Set<Session>>();
  private readonly all = new Set<Session>();

  add(session: Session): void {
    this.all.add(session);
  }

  /**
   * Bind a session to an agent; an older live session of the same agent is closed as replaced.
   * A session already closed is refused (false): a registration may commit after its socket went,
   * and binding it would leave the agent `connected` to nothing, every push to it lost.
   */
  attach(session: Session, agentId: string): boolean {
    if (session.closed) return false;
    if (session.agentId && session.agentId !== agentId && this.byAgent.get(session.agentId) === session) {
      this.byAgent.delete(session.agentId);
    }
    if (this.byAgent.get(agentId) !== session) this.evict(agentId, 'replaced by a newer connection of the same agent');
    session.agentId = agentId;
    this.byAgent.set(agentId, session);
    return true;
  }

  /** Close the agent's session here as replaced (4502): a newer connection of it, on this node or another, speaks for it. */
  evict(agentId: string, reason: string): void {
    const session = this.byAgent.get(agentId);
    if (!session) return;
    this.byAgent.delete(agentId);
    session.agentId = null;
    session.close(CLOSE_CODES.replaced, reason);
  }

  subscribe(session: Session, topics: readonly StreamTopic[]): void {
    for (const t of topics) {
      session.topics.add(t);
      let set = this.byTopic.get(t);
      if (!set) this.byTopic.set(t, (set = new Set()));
      set.add(session);
    }
  }

  /** Forget a closed session; returns the agent it spoke for, if it still did. */
  remove(session: Session): string | null {
    this.all.delete(session);
    for (const t of session.topics) this.byTopic.get(t)?.delete(session);
    const agentId = session.agentId;
    if (agentId && this.byAgent.get(agentId) === session) {
      this.byAgent.delete(agentId);
      return agentId;
    }
    return null;
  }

  forAgent(agentId: string): Session | undefined {
    return this.byAgent.get(agentId);
  }

  isConnected(agentId: string): boolean {
    return this.byAgent.has(agentId);
  }

  subscribers(topic: StreamTopic): ReadonlySet<Session> {
    return this.byTopic.get(topic) ?? EMPTY;
  }

  connectedAgentIds(): IterableIterator<string> {
    return this.byAgent.keys();
  }

  sessions(): ReadonlySet<Session> {
    return this.all;
  }

  get size(): number {
    return this.all.size;
  }
}

const EMPTY: ReadonlySet<Session> = new Set();
