import type { Domain } from './domain.js';
import { MOVED_ELSEWHERE } from './bindings.js';
import { takeOffline } from './offline.js';
import type { Session } from './ports.js';

/**
 * Find agents with neither a live socket (here or on another live relay node) nor a heartbeat
 * within STALE_TTL_MS and take them offline (their claimed work is released). Time the relay
 * itself was down does not count: staleness is measured from the later of last-seen, relay start
 * and `resumedAt` (the end of the latest stop of the relay's loop, see LoopWatch), so a restart or
 * a pause shorter than the TTL releases nothing; an agent whose node died counts from that node's
 * last heartbeat. Last-seen is read from the store before an agent is taken offline: a heartbeat
 * another node took is written there, not in this node's memory.
 */
export async function sweepStaleAgents(d: Domain, resumedAt = -Infinity): Promise<string[]> {
  const now = d.now();
  const ttl = d.config.staleTtlMs;
  const since = Math.max(d.startedAt, resumedAt);
  const isStale = (a: { id: string; lastSeenAt: number }) =>
    !d.sessions.isConnected(a.id) && !d.bindings.elsewhere(a.id, now) && now - Math.max(a.lastSeenAt, since, d.bindings.orphanedSince(a.id)) > ttl;
  const candidates: string[] = [];
  const connected: string[] = [];
  for (const a of d.agents.values()) {
    if (a.status === 'offline') continue;
    if (d.sessions.isConnected(a.id)) connected.push(a.id);
    else if (isStale(a)) candidates.push(a.id);
  }
  const stored = await Promise.all(candidates.map((id) => d.store.agents.get(id)));
  const stale = candidates.filter((id, i) => {
    const lastSeen = stored[i]?.lastSeenAt;
    if (lastSeen !== undefined) d.agents.seen(id, lastSeen);
    const a = d.agents.get(id);
    return a !== undefined && isStale(a);
  });
  // A live, ping-answering socket is presence: keep last-seen fresh for it.
  if (connected.length > 0) {
    d.queue.defer({ op: 'agent.touch', at: now, ids: connected });
    for (const id of connected) d.agents.seen(id, now);
  }
  // Checked again when planned: a heartbeat or a socket may have come since the scan. Planned
  // together, they share one group commit.
  const offline = await Promise.all(stale.map((id) => takeOffline(d, id, {}, 'stale: no heartbeat within STALE_TTL_MS', isStale)));
  return stale.filter((_, i) => offline[i] !== null);
}

/**
 * Remember when a socket went away: the TTL counts from here. A connection bound by a
 * registration is unbound in the store, so every node hears the agent is connected nowhere.
 */
export function noteDisconnected(d: Domain, agentId: string, session: Session): void {
  const now = d.now();
  d.notifier.pushes.disconnected(agentId);
  const a = d.agents.seen(agentId, now);
  if (!a) return;
  d.queue.defer({ op: 'agent.touch', at: now, ids: [agentId] });
  const epoch = d.bindings.epochOf(session);
  if (epoch !== undefined) d.queue.defer({ op: 'session.unbind', at: now, agentId, node: d.bindings.self, epoch });
  d.notifier.agentUpdated(d.agents.summary(a));
}

/**
 * A registration on this node bound `session` under `epoch`. If a newer binding on another node
 * was published before this session was attached, this one lost the race: closed with 4502.
 */
export function registered(d: Domain, session: Session, agentId: string, epoch: number): void {
  d.bindings.bound(session, epoch);
  const newest = d.bindings.get(agentId);
  if (newest && newest.epoch > epoch && newest.node !== d.bindings.self && d.sessions.forAgent(agentId) === session) d.sessions.evict(agentId, MOVED_ELSEWHERE);
}
