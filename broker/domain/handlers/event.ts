import {
  LIMITS,
  RelayError,
  type EventListParams,
  type EventListResult,
  type StreamSubscribeParams,
  type StreamSubscribeResult,
} from '../../../protocol/index.js';
import type { CallContext } from '../context.js';
import { checkCursor } from '../delivery.js';
import { withinBudget } from '../result-budget.js';

export function list({ domain: d }: CallContext, p: EventListParams): EventListResult {
  const page = withinBudget(
    d.store.events.list({
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
 * synchronously before this returns, so nothing committed meanwhile can slip between them.
 */
export function subscribe(ctx: CallContext, p: StreamSubscribeParams): StreamSubscribeResult {
  const { domain: d, session } = ctx;
  if (!session) throw new RelayError('invalidRequest', 'stream/subscribe needs a live connection (WebSocket or GET /api/stream)');
  checkCursor(d, p.since);
  const topics = new Set(p.topics);
  if (p.since !== undefined && topics.has('messages')) {
    let cursor = p.since;
    for (;;) {
      const page = d.store.messages.all({ since: cursor, limit: 1000, channel: null, threadId: null });
      for (const message of page) d.notifier.sendTo(session, 'message/new', { message }, message.id);
      if (page.length < 1000) break;
      cursor = page.at(-1)!.id;
    }
  }
  if (p.eventsSince !== undefined && topics.has('events')) {
    let cursor = p.eventsSince;
    for (;;) {
      const page = d.store.events.list({ since: cursor, kind: null, taskId: null, limit: 1000 });
      for (const event of page) d.notifier.sendTo(session, 'event/new', { event });
      if (page.length < 1000) break;
      cursor = page.at(-1)!.id;
    }
  }
  d.sessions.subscribe(session, p.topics);
  return { cursor: d.store.messages.maxId(), eventCursor: d.store.events.maxId() };
}
