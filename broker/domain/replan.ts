import { RelayError } from '../../protocol/index.js';
import type { Domain } from './domain.js';
import { REPLANS, type Outcome } from './store-port.js';

/*
 * A write is planned against the state as read now and applied with that state as its
 * precondition. When the state moved on before the commit (a claim landed, an agent changed), the
 * store refuses it and the write is planned again against what it would really meet. The one
 * loop that does this for every handler is here.
 */

/** What an attempt answers when the store found the state it was planned against moved on. */
export const PLAN_AGAIN = Symbol('plan again');

/** A refusal: an agent's routing changed at feed position `position`, after the plan's routedAt. */
export class StaleRoute {
  constructor(readonly position: number) {}
}

/** The outcome's staleRoute refusal, if that is what it is. */
export function staleRoute(o: Outcome): StaleRoute | null {
  return !o.ok && o.refused === 'staleRoute' ? new StaleRoute(o.position) : null;
}

/** The words of the -32003 the caller hears when the attempts gave up; only the kind its attempt can answer needs naming. */
export interface GiveUp {
  /** Refused as changed every round: "task 7 kept changing while this change was planned". */
  changed?: string;
  /** Refused as stale every round: the agents matching this kept changing on other nodes. */
  routedTo?: string;
}

/**
 * Run `attempt` (plan, apply, answer) until it answers a result. PLAN_AGAIN runs it again; a
 * StaleRoute waits until this node has published the routing change it names, so the next plan
 * sees it. After REPLANS further rounds the caller hears -32003 with `giveUp`'s wording.
 */
export async function replanning<R>(d: Domain, giveUp: GiveUp, attempt: () => Promise<R | typeof PLAN_AGAIN | StaleRoute>): Promise<R> {
  for (let round = 0; ; round++) {
    const result = await attempt();
    if (result instanceof StaleRoute) {
      if (round >= REPLANS) throw new RelayError('conflict', `the agents matching ${giveUp.routedTo ?? "this write's target"} kept changing on other relay nodes while this was routed; retry`);
      await d.store.feed!.passed(result.position);
    } else if (result === PLAN_AGAIN) {
      if (round >= REPLANS) throw new RelayError('conflict', `${giveUp.changed ?? 'what this write was planned against kept changing'}; retry`);
    } else {
      return result;
    }
  }
}
