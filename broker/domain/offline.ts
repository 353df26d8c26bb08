import { RelayError, type Task } from '../../protocol/index.js';
import type { Domain } from './domain.js';
import { PLAN_AGAIN, replanning, staleRoute } from './replan.js';
import { routeStamp } from './routed.js';
import type { AgentPatch, CachedAgent, OpOf, PlannedRelease, StoredAgent } from './store-port.js';

/** Release planned for a claimed task: offered again to its target, from the relay. */
export function plannedRelease(d: Domain, task: Task, reason: string, by: string | null, asOffline?: string): PlannedRelease {
  let recipients: string[] = [];
  try {
    recipients = d.agents.route(task.target, task.channel, 'ext:relay', asOffline).recipients;
  } catch (err) {
    // A direct target pruned since: the offer reaches observers only.
    if (!(err instanceof RelayError)) throw err;
  }
  return { taskId: task.id, attempts: task.attempts, reason, by, announce: { from: 'ext:relay', recipients } };
}

/**
 * Take an agent offline: its unfinished claimed work is released and offered again, routed as if
 * it were offline already (fan-out does not offer the work back to the agent that dropped it).
 */
export async function offlineOp(d: Domain, agent: CachedAgent, patch: AgentPatch, reason: string): Promise<OpOf<'agent.offline'>> {
  const tasks = await d.store.tasks.liveClaimedBy(agent.id);
  const targets = tasks.map((task) => task.target);
  const stamp = routeStamp(d, targets);
  const releases = tasks.map((task) => plannedRelease(d, task, `owner ${agent.id} went offline`, null, agent.id));
  return { op: 'agent.offline', at: d.now(), id: agent.id, patch, reason, releases, ...stamp };
}

/**
 * Apply an offline, planning it again while its claims moved between the plan and the commit, or
 * the route of their offers went stale (another node changed a matching agent). Resolves to the
 * offline agent, or null when it was offline already (or gone).
 */
export async function takeOffline(d: Domain, id: string, patch: AgentPatch, reason: string, stillWanted: (a: CachedAgent) => boolean = () => true): Promise<StoredAgent | null> {
  const giveUp = { changed: `agent ${id}'s claimed work kept changing while it was taken offline`, routedTo: `the targets of ${id}'s claimed work` };
  return replanning(d, giveUp, async () => {
    const agent = d.agents.get(id);
    if (!agent || agent.status === 'offline' || !stillWanted(agent)) return null;
    const op = await offlineOp(d, agent, patch, reason);
    return d.queue.apply(op, (o) => (o.ok ? o.value.agent : o.refused === 'notFound' ? null : (staleRoute(o) ?? PLAN_AGAIN)));
  });
}
