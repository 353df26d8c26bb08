import { LIMITS, RelayError, type EventListParams, type EventListResult, type StreamSubscribeParams, type StreamSubscribeResult } from '../../../protocol/index.js';
import type { CallContext } from '../context.js';
import { attach } from '../attach.js';
import { checkCursor } from '../delivery.js';
import { withinBudget } from '../result-budget.js';

export async function list({ domain: d }: CallContext, p: EventListParams): Promise<EventListResult> {
  const page = withinBudget(
    await d.store.events.list({
      since: p.since ?? 0,
      kind: p.kind ?? null,
      taskId: p.taskId ?? null,
      limit: p.limit ?? LIMITS.defaultListLimit,
    }),
    LIMITS.maxResultBytes,
  );
  return page.cut ? { events: page.records, more: true } : { events: page.records };
}

/**
 * Follow topics live. Backlogs (messages after `since`, events after `eventsSince`) are pushed
 * before this returns, by the one attach: nothing committed meanwhile can slip between them.
 */
export async function subscribe(ctx: CallContext, p: StreamSubscribeParams): Promise<StreamSubscribeResult> {
  const { domain: d, session } = ctx;
  if (!session) throw new RelayError('invalidRequest', 'stream/subscribe needs a live connection (WebSocket or GET /api/stream)');
  await checkCursor(d, p.since);
  return attach(d, session, { agentId: null, ...(p.since !== undefined ? { since: p.since } : {}), ...(p.eventsSince !== undefined ? { eventsSince: p.eventsSince } : {}), topics: p.topics });
}
