import type { Session } from './ports.js';
import type { NodeDirectory, StoredSession } from './store-port.js';

/** Why a session is closed (4502) when its agent registered again through another node. */
export const MOVED_ELSEWHERE = 'replaced by a newer connection of the same agent on another relay node';

/** A node not heard from for this long is taken as gone: 5 missed heartbeats (broker/store-postgres/nodes.ts). */
export const NODE_LIVE_MS = 10_000;

/**
 * Which node holds each agent's connection (agent_sessions, kept up to date by the 'session'
 * changes of every node's commits), and the epoch each local session was bound with. With one
 * node, every binding is this node's or a previous run's (a gone node).
 */
export class SessionBindings {
  private readonly byAgent = new Map<string, StoredSession>();
  private readonly epochs = new WeakMap<Session, number>();

  constructor(
    /** This node's id (new at every start). */
    readonly self: string,
    private readonly nodes: NodeDirectory | undefined,
    stored: readonly StoredSession[],
  ) {
    for (const s of stored) this.byAgent.set(s.agentId, s);
  }

  /** A commit bound or unbound the agent's connection; an older epoch arriving late changes nothing. */
  committed(s: StoredSession): void {
    const known = this.byAgent.get(s.agentId);
    if (!known || known.epoch <= s.epoch) this.byAgent.set(s.agentId, s);
  }

  get(agentId: string): StoredSession | undefined {
    return this.byAgent.get(agentId);
  }

  /** This node's session speaks for the agent under `epoch`. */
  bound(session: Session, epoch: number): void {
    this.epochs.set(session, epoch);
  }

  epochOf(session: Session): number | undefined {
    return this.epochs.get(session);
  }

  /** Connected through another node that is alive (heard from within NODE_LIVE_MS). */
  elsewhere(agentId: string, now: number): boolean {
    const node = this.otherNode(agentId);
    if (node === null) return false;
    const heard = this.nodes?.lastHeard(node);
    return heard !== undefined && now - heard <= NODE_LIVE_MS;
  }

  /**
   * Since when the agent has been without a live node, for its stale TTL: the last heartbeat of
   * the node that held it, or -Infinity when no other node held it (its own last-seen counts).
   */
  orphanedSince(agentId: string): number {
    const node = this.otherNode(agentId);
    return node === null ? -Infinity : (this.nodes?.lastHeard(node) ?? -Infinity);
  }

  /** The other node the agent's connection is bound to; null when bound here or nowhere. */
  private otherNode(agentId: string): string | null {
    const node = this.byAgent.get(agentId)?.node;
    return node && node !== this.self ? node : null;
  }
}
