import {
  LIMITS,
  RelayError,
  type EventListParams,
  type EventListResult,
  type StreamSubscribeParams,
  type StreamSubscribeResult,
} from '../../../protocol/index.js';
import type { CallContext } from '../context.js';
import { withinBudget } from '../result-budget.js';
import type { RelayCore } from '../core.js';

export function list(core: RelayCore, _ctx: CallContext, p: EventListParams): EventListResult {
  const page = withinBudget(
    core.store.events.list({
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
export function subscribe(core: RelayCore, ctx: CallContext, p: StreamSubscribeParams): StreamSubscribeResult {
  const session = ctx.session;
  if (!session) throw new RelayError('invalidRequest', 'stream/subscribe needs a live connection (WebSocket or GET /api/stream)');
  core.checkCursor(p.since);
  const topics = new Set(p.topics);
  if (p.since !== undefined && topics.has('messages')) {
    let cursor = p.since;
    for (;;) {
      const page = core.store.messages.all({ since: cursor, limit: 1000, channel: null, threadId: null });
      for (const message of page) core.notifier.sendTo(session, 'message/new', { message }, message.id);
      if (page.length < 1000) break;
      cursor = page.at(-1)!.id;
    }
  }
  if (p.eventsSince !== undefined && topics.has('events')) {
    let cursor = p.eventsSince;
    for (;;) {
      const page = core.store.events.list({ since: cursor, kind: null, taskId: null, limit: 1000 });
      for (const event of page) core.notifier.sendTo(session, 'event/new', { event });
      if (page.length < 1000) break;
      cursor = page.at(-1)!.id;
    }
  }
  core.sessions.subscribe(session, p.topics);
  return { cursor: core.store.messages.maxId(), eventCursor: core.store.events.maxId() };
}
