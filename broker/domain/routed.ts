import type { Domain } from './domain.js';
import { replanning, type StaleRoute, staleRoute } from './replan.js';
import { isAgentId, isFanOut } from './routing.js';
import type { OpOf, Outcome, RoutedAt } from './store-port.js';

/*
 * Recipients are resolved from this node's agent directory. With several nodes the directory
 * follows the change feed, so a registration or tag change committed on another node a moment ago
 * may not be in it yet. An op routed by tag, capability, label or broadcast then carries the feed
 * position the directory had reached (routedAt); the store refuses it when an agent's routing
 * changed after that (staleRoute), and the caller plans it again once this node has published that
 * change. A store without a feed has one writer, this node, and its directory is exact.
 */

type RoutedOp = 'message.send' | 'task.create';

/** A plan's op and what to answer from its outcome. */
export interface RoutedPlan<N extends RoutedOp, R> {
  op: OpOf<N>;
  answer: (outcome: Outcome<N>) => R;
}

/** One empty stamp for every op that needs none: spread into an op, it adds nothing. */
const NO_STAMP: RoutedAt = Object.freeze({});

/**
 * The feed position to stamp on an op about to be routed to `targets`: take it before routing, so
 * the directory the route reads is at least that new. Empty when none fans out or there is no feed.
 */
export function routeStamp(d: Domain, targets: readonly string[]): RoutedAt {
  const feed = d.store.feed;
  return feed && targets.some(isFanOut) ? { routedAt: feed.through() } : NO_STAMP;
}

/**
 * Apply an op whose recipients `plan` resolves for `target`, planning it again while its route is
 * stale. A direct id is looked up first (AgentDirectory.lookup), so the answer is -32002 only if it
 * is unknown on every node.
 */
export async function applyRouted<N extends RoutedOp, R>(d: Domain, target: string, plan: () => RoutedPlan<N, R>): Promise<R> {
  if (isAgentId(target)) await d.agents.lookup(target);
  return replanning(d, { routedTo: target }, () => {
    const stamp = routeStamp(d, [target]);
    const { op, answer } = plan();
    // Without a stamp (one node, or a route to one id) the op goes as planned, not copied: the send path.
    const stamped = stamp === NO_STAMP ? op : { ...op, ...stamp };
    return d.queue.apply<N, R | StaleRoute>(stamped, (o) => staleRoute(o) ?? answer(o));
  });
}
