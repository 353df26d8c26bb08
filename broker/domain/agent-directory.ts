import { RelayError, type Agent, type AgentSummary } from '../../protocol/index.js';
import { resolveTarget, UnknownAgentError, type Route } from './routing.js';
import type { SessionRegistry } from './sessions.js';
import { withoutMeta, type AgentReads, type CachedAgent, type StoredAgent } from './store-port.js';
import { verifyToken } from './tokens.js';

/**
 * The committed agents, in memory, without their meta: routing and listing read this, never the
 * database. The only owner of the cache: it changes when a commit that wrote an agent is
 * published (by the commit queue, or by the store's change feed: every node's commits), and when
 * the feed lost its place (reload), nowhere else.
 */
export class AgentDirectory {
  private readonly byId = new Map<string, CachedAgent>();

  constructor(
    private readonly reads: AgentReads,
    private readonly sessions: SessionRegistry,
    /** Every stored agent, read when the relay starts. */
    stored: readonly StoredAgent[],
    /** True when the agent is connected through another relay node (SessionBindings.elsewhere). */
    private readonly connectedElsewhere: (id: string) => boolean = () => false,
    /** With several nodes: resolves once every batch committed anywhere so far is in this cache (ChangeFeed.caughtUp). */
    private readonly caughtUp: (() => Promise<void>) | null = null,
  ) {
    this.reload(stored);
  }

  get(id: string): CachedAgent | undefined {
    return this.byId.get(id);
  }

  /**
   * The agent; when this node does not know it, after catching up with the change feed first (with
   * several nodes it may have registered on another node a moment ago). Unknown means unknown
   * everywhere as of the call.
   */
  async lookup(id: string): Promise<CachedAgent | undefined> {
    if (this.caughtUp && !this.byId.has(id)) await this.caughtUp();
    return this.byId.get(id);
  }

  has(id: string): boolean {
    return this.byId.has(id);
  }

  get size(): number {
    return this.byId.size;
  }

  values(): IterableIterator<CachedAgent> {
    return this.byId.values();
  }

  /** A commit wrote the agent. */
  committed(agent: StoredAgent): void {
    this.byId.set(agent.id, withoutMeta(agent));
  }

  /** Every stored agent read again (the change feed lost its place): replaces what the cache held. */
  reload(stored: readonly StoredAgent[]): void {
    this.byId.clear();
    for (const a of stored) this.byId.set(a.id, withoutMeta(a));
  }

  /** A commit pruned the agent. */
  removed(id: string): void {
    this.byId.delete(id);
  }

  /**
   * Last-seen is bookkeeping written with a later commit; the cache takes it at once, so the
   * presence sweep sees a heartbeat the moment it arrives.
   */
  seen(id: string, at: number): CachedAgent | undefined {
    const a = this.byId.get(id);
    if (a && a.lastSeenAt < at) a.lastSeenAt = at;
    return a;
  }

  /** The agent on the wire, meta included. */
  wire(a: StoredAgent): Agent {
    return { ...this.summary(a), meta: a.meta };
  }

  /** The agent on the wire without its meta (agent/updated). */
  summary(a: CachedAgent): AgentSummary {
    const { tokenHash: _t, offlineAt: _o, inboxFloor: _f, meta: _m, ...rest } = a as CachedAgent & Partial<StoredAgent>;
    return { ...rest, connected: this.sessions.isConnected(a.id) || this.connectedElsewhere(a.id) };
  }

  /** With its meta, read from the store (the cache does not hold it). */
  async withMeta(a: CachedAgent): Promise<StoredAgent> {
    return { ...a, meta: await this.reads.metaOf(a.id) };
  }

  /** No message below this id can be addressed to the agent: inbox scans start here. */
  inboxFloor(agentId: string): number {
    return this.byId.get(agentId)?.inboxFloor ?? 0;
  }

  /**
   * Recipients of a message to `target` from `senderId`. `asOffline` routes as if that agent had
   * gone offline already (work it drops is not offered back to it).
   */
  route(target: string, channel: string | null, senderId: string, asOffline?: string): Route {
    let agents: ReadonlyMap<string, CachedAgent> = this.byId;
    const dropping = asOffline === undefined ? undefined : this.byId.get(asOffline);
    if (dropping && dropping.status !== 'offline') agents = new Map(this.byId).set(dropping.id, { ...dropping, status: 'offline' });
    try {
      return resolveTarget(target, channel, senderId, agents);
    } catch (err) {
      if (err instanceof UnknownAgentError) throw new RelayError('notFound', err.message);
      throw err;
    }
  }

  /**
   * Verify an agent credential; resolves to the agent id or rejects with -32001. The agent is
   * looked up (lookup): with several nodes an unknown id is slower to refuse than a known one by a
   * read of the feed's head, which tells nothing agent/list does not (any caller past the relay
   * token may list the ids).
   */
  async authenticate(agentId: string | undefined, agentToken: string): Promise<string> {
    const agent = agentId ? await this.lookup(agentId) : undefined;
    // Compare even when the agent is unknown, so timing does not reveal which ids exist.
    const ok = verifyToken(agentToken, agent?.tokenHash ?? '0'.repeat(64));
    if (!agentId) throw new RelayError('invalidParams', 'agentId: required with agentToken');
    if (!agent || !ok) throw new RelayError('unauthorized', `unauthorized: agentToken does not match agent ${agentId}`);
    return agentId;
  }
}
