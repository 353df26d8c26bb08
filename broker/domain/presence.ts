import type { RelayCore } from './core.js';

/**
 * Find agents with neither a live socket nor a heartbeat within STALE_TTL_MS and take them
 * offline (their claimed work is released). Time the relay itself was down does not count:
 * staleness is measured from the later of last-seen, relay start and `resumedAt` (the end of the
 * latest stop of the relay's loop, see LoopWatch), so a restart or a pause shorter than the TTL
 * releases nothing.
 */
export async function sweepStaleAgents(core: RelayCore, resumedAt = -Infinity): Promise<string[]> {
  const now = core.now();
  const ttl = core.config.staleTtlMs;
  const since = Math.max(core.startedAt, resumedAt);
  const stale: string[] = [];
  const connected: string[] = [];
  for (const a of core.agents.values()) {
    if (a.status === 'offline') continue;
    if (core.sessions.isConnected(a.id)) {
      connected.push(a.id);
      continue;
    }
    if (now - Math.max(a.lastSeenAt, since) > ttl) stale.push(a.id);
  }
  // A live, ping-answering socket is presence: keep last-seen fresh for it.
  if (connected.length > 0) {
    core.queue.defer(() => {
      for (const id of connected) core.store.agents.touchLastSeen(id, now);
    });
    for (const id of connected) {
      const a = core.agents.get(id);
      if (a) a.lastSeenAt = now;
    }
  }
  if (stale.length === 0) return [];
  return core.queue.submit((onCommit) => {
    const marked: string[] = [];
    for (const id of stale) {
      const a = core.agentInTx(id);
      // Re-check inside the transaction: a heartbeat may have landed since the scan.
      if (!a || a.status === 'offline' || core.sessions.isConnected(id)) continue;
      if (now - Math.max(a.lastSeenAt, since) <= ttl) continue;
      core.markOffline(onCommit, a, 'stale: no heartbeat within STALE_TTL_MS');
      marked.push(id);
    }
    return marked;
  });
}

/** Remember when a socket went away: the TTL counts from here. */
export function noteDisconnected(core: RelayCore, agentId: string): void {
  const now = core.now();
  core.notifier.pushes.disconnected(agentId);
  const a = core.agents.get(agentId);
  if (!a) return;
  a.lastSeenAt = now;
  core.queue.defer(() => core.store.agents.touchLastSeen(agentId, now));
  core.notifier.agentUpdated(core.agentSummary(a));
}
