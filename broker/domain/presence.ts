import type { Domain } from './domain.js';
import { takeOffline } from './offline.js';

/**
 * Find agents with neither a live socket nor a heartbeat within STALE_TTL_MS and take them
 * offline (their claimed work is released). Time the relay itself was down does not count:
 * staleness is measured from the later of last-seen, relay start and `resumedAt` (the end of the
 * latest stop of the relay's loop, see LoopWatch), so a restart or a pause shorter than the TTL
 * releases nothing.
 */
export async function sweepStaleAgents(d: Domain, resumedAt = -Infinity): Promise<string[]> {
  const now = d.now();
  const ttl = d.config.staleTtlMs;
  const since = Math.max(d.startedAt, resumedAt);
  const isStale = (a: { id: string; lastSeenAt: number }) => !d.sessions.isConnected(a.id) && now - Math.max(a.lastSeenAt, since) > ttl;
  const stale: string[] = [];
  const connected: string[] = [];
  for (const a of d.agents.values()) {
    if (a.status === 'offline') continue;
    if (d.sessions.isConnected(a.id)) connected.push(a.id);
    else if (isStale(a)) stale.push(a.id);
  }
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

/** Remember when a socket went away: the TTL counts from here. */
export function noteDisconnected(d: Domain, agentId: string): void {
  const now = d.now();
  d.notifier.pushes.disconnected(agentId);
  const a = d.agents.seen(agentId, now);
  if (!a) return;
  d.queue.defer({ op: 'agent.touch', at: now, ids: [agentId] });
  d.notifier.agentUpdated(d.agents.summary(a));
}
