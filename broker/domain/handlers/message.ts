import {
  LIMITS,
  RelayError,
  type MessageAckParams,
  type MessageAckResult,
  type MessageClaimParams,
  type MessageClaimResult,
  type MessageGetParams,
  type MessageGetResult,
  type MessageListParams,
  type MessageListResult,
  type MessageReadParams,
  type MessageReadResult,
  type MessageSendParams,
  type MessageSearchParams,
  type MessageSearchResult,
  type MessageSendResult,
  type Message,
  type ThreadGetParams,
  type ThreadGetResult,
} from '../../../protocol/index.js';
import { requireAgent, type CallContext } from '../context.js';
import { checkCursor, inbox } from '../delivery.js';
import { inboxReader, searchScope } from '../read-rule.js';
import { parseSearchQuery } from '../search-query.js';
import type { Domain } from '../domain.js';
import { withinBudget } from '../result-budget.js';
import { applyRouted, type RoutedPlan } from '../routed.js';
import type { Route } from '../routing.js';
import { senderOf } from '../sender.js';
import type { SearchTerm } from '../store-port.js';
import { claimTask } from './task.js';

export async function send(ctx: CallContext, p: MessageSendParams): Promise<MessageSendResult> {
  const { domain: d } = ctx;
  const from = senderOf(ctx, p.from);
  const channel = p.channel ?? null;
  return applyRouted(d, p.to, () => {
    const route = d.agents.route(p.to, channel, from);
    return planSend(d, p, from, channel, route);
  });
}

function planSend(d: Domain, p: MessageSendParams, from: string, channel: string | null, route: Route): RoutedPlan<'message.send', MessageSendResult> {
  const at = d.now();
  const task = p.claimable ? { title: p.subject ?? firstLine(p.body), target: p.to, body: p.body, channel, source: from, dedupeKey: null, callbackUrl: null, meta: p.meta ?? {} } : null;
  const message = {
    from,
    to: p.to,
    channel,
    subject: p.subject ?? null,
    body: p.body,
    replyTo: p.replyTo ?? null,
    threadId: null,
    claimable: Boolean(p.claimable),
    taskId: null,
    createdAt: at,
    meta: p.meta ?? {},
  };
  return {
    op: { op: 'message.send', at, message, recipients: route.recipients, task },
    answer: (o) => {
      if (!o.ok) throw new RelayError('notFound', `replyTo: no message ${p.replyTo}`);
      const { message, task } = o.value;
      return { message, recipients: route.recipients, warnings: route.warnings, ...(task ? { task } : {}) };
    },
  };
}

function firstLine(body: string): string {
  const line = body.split('\n', 1)[0]!.trim();
  return (line.length > 120 ? `${line.slice(0, 117)}...` : line) || '(untitled)';
}

export async function list(ctx: CallContext, p: MessageListParams): Promise<MessageListResult> {
  const { domain: d } = ctx;
  const agentId = p.agentId ?? ctx.agentId;
  if (agentId) inboxReader(ctx, agentId);
  await checkCursor(d, p.since);
  const since = p.since ?? 0;
  const filter = { since, limit: p.limit ?? LIMITS.defaultListLimit, channel: p.channel ?? null, threadId: p.threadId ?? null };
  let page: { records: Message[]; cut: boolean };
  if (agentId) {
    page = withinBudget(await inbox(d, agentId, { ...filter, unread: Boolean(p.unread) }), LIMITS.maxResultBytes);
    // Only what the page returns counts as handed over.
    if (ctx.transport === 'http' && agentId === ctx.agentId) await recordPolled(ctx, agentId, page.records, p.unread || filter.channel !== null || filter.threadId !== null ? null : since);
  } else {
    if (p.unread) throw new RelayError('invalidParams', 'unread: needs an agent (agentId, or a registered connection)');
    page = withinBudget(await d.store.messages.all(filter), LIMITS.maxResultBytes);
  }
  const messages = page.records;
  return { messages, cursor: messages.at(-1)?.id ?? since, ...(page.cut ? { more: true } : {}) };
}

/**
 * A poll by the recipient itself hands messages over: they count as pushed. An unfiltered page is
 * every message to the agent in (since, last id]: one range; a filtered one is recorded per message.
 */
async function recordPolled({ domain: d }: CallContext, agentId: string, messages: readonly Message[], unfilteredSince: number | null): Promise<void> {
  const last = messages.at(-1)?.id;
  if (last === undefined) return;
  if (unfilteredSince !== null && (await d.notifier.pushes.polled(agentId, unfilteredSince, last))) return;
  d.queue.defer({ op: 'delivery.mark', at: d.now(), agentId, messageIds: messages.map((m) => m.id), state: 'pushed' });
}

/**
 * Ranked full-text search over what the caller may list: its inbox, or the global feed for an
 * observer (read-rule.ts). The first page ranks the best hits; later pages are cut from that
 * ranking (search-pages.ts), so paging neither repeats nor skips a hit.
 */
export async function search(ctx: CallContext, p: MessageSearchParams): Promise<MessageSearchResult> {
  const { domain: d } = ctx;
  if (d.config.searchIndex === 'off') throw new RelayError('methodNotFound', 'message/search is off on this relay (AGENT_RELAY_SEARCH_INDEX=off): its operator can turn it on');
  const scope = searchScope(ctx);
  const limit = p.limit ?? LIMITS.defaultSearchLimit;
  let terms: readonly SearchTerm[];
  let ids: readonly number[];
  let served: (count: number) => string | null;
  if (p.after !== undefined) {
    const page = d.searches.page(scope, p.after, limit);
    ({ terms, ids } = page);
    served = (count) => d.searches.next(page.key, page.offset + count);
  } else {
    const parsed = parseSearchQuery(p.query);
    const ranked = (
      await d.store.search.rank({
        terms: parsed,
        since: p.since ?? 0,
        channel: p.channel ?? null,
        from: p.from ?? null,
        to: p.to ?? null,
        inbox: scope === null ? null : { agentId: scope, floor: d.agents.inboxFloor(scope) },
        limit: LIMITS.maxSearchHits,
      })
    ).map((r) => r.id);
    terms = parsed;
    ids = ranked.slice(0, limit);
    // Kept only when a second page exists.
    served = (count) => (count < ranked.length ? d.searches.keep(scope, parsed, ranked, count) : null);
  }
  const page = withinBudget(await d.store.search.hits(terms, ids), LIMITS.maxResultBytes);
  // A cut page resumes after its last hit (ids of hits pruned meanwhile are skipped, not counted).
  const next = served(page.cut ? ids.indexOf(page.records.at(-1)!.message.id) + 1 : ids.length);
  return next === null ? { hits: page.records } : { hits: page.records, more: true, nextCursor: next };
}

export async function read(ctx: CallContext, p: MessageReadParams): Promise<MessageReadResult> {
  const agentId = requireAgent(ctx);
  if (!p.ids && p.upTo === undefined) throw new RelayError('invalidParams', 'ids: give ids or upTo');
  return ctx.domain.queue.apply({ op: 'delivery.read', at: ctx.domain.now(), agentId, ids: p.ids ?? null, upTo: p.upTo ?? null }, (o) => ({ marked: o.ok ? o.value.marked : 0 }));
}

export async function get({ domain: d }: CallContext, p: MessageGetParams): Promise<MessageGetResult> {
  const message = await d.store.messages.get(p.id);
  if (!message) throw new RelayError('notFound', `id: no message ${p.id}`);
  return { message, deliveries: await d.store.deliveries.forMessage(p.id) };
}

export async function ack(ctx: CallContext, p: MessageAckParams): Promise<MessageAckResult> {
  const agentId = requireAgent(ctx);
  return ctx.domain.queue.apply({ op: 'delivery.ack', at: ctx.domain.now(), agentId, messageId: p.id, state: p.state }, (o) => {
    if (!o.ok) throw new RelayError('notFound', `id: message ${p.id} was not delivered to ${agentId}`);
    return { delivery: o.value.delivery };
  });
}

export async function claim(ctx: CallContext, p: MessageClaimParams): Promise<MessageClaimResult> {
  const message = await ctx.domain.store.messages.get(p.id);
  if (!message) throw new RelayError('notFound', `id: no message ${p.id}`);
  if (message.taskId === null) throw new RelayError('conflict', `id: message ${p.id} is not claimable`);
  return claimTask(ctx, message.taskId);
}

export async function thread({ domain: d }: CallContext, p: ThreadGetParams): Promise<ThreadGetResult> {
  const message = await d.store.messages.get(p.id);
  if (!message) throw new RelayError('notFound', `id: no message ${p.id}`);
  const rows = await d.store.messages.thread(message.threadId, p.since ?? 0, LIMITS.maxListLimit);
  const page = withinBudget(rows, LIMITS.maxResultBytes);
  const more = page.cut || rows.length === LIMITS.maxListLimit;
  return more ? { threadId: message.threadId, messages: page.records, more: true } : { threadId: message.threadId, messages: page.records };
}
