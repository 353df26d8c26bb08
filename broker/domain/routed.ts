import { RelayError } from '../../protocol/index.js';
import type { Domain } from './domain.js';
import { isFanOut } from './routing.js';
import { REPLANS, type OpOf, type Outcome } from './store-port.js';

type RoutedOp = 'message.send' | 'task.create';

/** A plan's op and what to answer from its outcome. */
export interface RoutedPlan<N extends RoutedOp, R> {
  op: OpOf<N>;
  answer: (outcome: Outcome<N>) => R;
}

class StaleRoute {
  constructor(readonly position: number) {}
}

/**
 * Apply an op whose recipients `plan` resolved from this node's agent directory. With several
 * nodes the directory follows the change feed, so a registration or tag change committed on
 * another node a moment ago may not be in it yet: the op then carries the feed position the
 * directory has reached, the store refuses it when an agent's routing changed after that
 * (staleRoute), and it is planned again once this node has published that change. A store without
 * a feed has one writer, this node, and its directory is exact; so is a route to one id.
 */
export async function applyRouted<N extends RoutedOp, R>(d: Domain, target: string, plan: () => RoutedPlan<N, R>): Promise<R> {
  const feed = d.store.feed;
  for (let round = 0; ; round++) {
    const routedAt = feed && isFanOut(target) ? feed.through() : undefined;
    const { op, answer } = plan();
    const result = await d.queue.apply<N, R | StaleRoute>(routedAt === undefined ? op : { ...op, routedAt }, (o) => (!o.ok && o.refused === 'staleRoute' ? new StaleRoute(o.position) : answer(o)));
    if (!(result instanceof StaleRoute)) return result;
    if (round >= REPLANS) throw new RelayError('conflict', `the agents matching ${target} kept changing on other relay nodes while this was routed; retry`);
    await feed!.passed(result.position);
  }
}
