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
  type MessageSendResult,
  type Message,
  type Task,
  type ThreadGetParams,
  type ThreadGetResult,
} from '../../../protocol/index.js';
import type { CallContext } from '../context.js';
import type { RelayCore } from '../core.js';
import { inboxReader } from '../read-rule.js';
import { withinBudget } from '../result-budget.js';
import { claimTask, createTaskInTx } from './task.js';

/**
 * The sender name: agents send as themselves; observers as `ext:NAME` of their choosing, except a
 * configured integration's `ext:NAME`, which its ingress announces tasks as.
 */
export function senderOf(core: RelayCore, ctx: CallContext, from: string | undefined): string {
  if (ctx.agentId) {
    if (from !== undefined && from !== ctx.agentId) throw new RelayError('invalidParams', 'from: only observers may choose a sender; agents send as themselves');
    return ctx.agentId;
  }
  if (from !== undefined && core.integrations.has(from.slice('ext:'.length))) {
    throw new RelayError('unauthorized', `unauthorized: from: ${from} is the integration ${from.slice('ext:'.length)}'s sender name, used only by its ingress; choose another ext:NAME`);
  }
  return from ?? 'ext:observer';
}

export async function send(core: RelayCore, ctx: CallContext, p: MessageSendParams): Promise<MessageSendResult> {
  const from = senderOf(core, ctx, p.from);
  return core.queue.submit((onCommit) => {
    let threadId: number | null = null;
    if (p.replyTo !== undefined) {
      const parent = core.store.messages.get(p.replyTo);
      if (!parent) throw new RelayError('notFound', `replyTo: no message ${p.replyTo}`);
      threadId = parent.threadId;
    }
    let task: Task | undefined;
    if (p.claimable) {
      task = createTaskInTx(core, onCommit, {
        title: p.subject ?? firstLine(p.body),
        target: p.to,
        body: p.body,
        channel: p.channel ?? null,
        source: from,
        dedupeKey: null,
        callbackUrl: null,
        meta: p.meta ?? {},
      });
    }
    const { message, route } = core.insertMessage(onCommit, {
      from,
      to: p.to,
      channel: p.channel ?? null,
      subject: p.subject ?? null,
      body: p.body,
      replyTo: p.replyTo ?? null,
      threadId,
      claimable: Boolean(p.claimable),
      taskId: task?.id ?? null,
      createdAt: core.now(),
      meta: p.meta ?? {},
    });
    if (task) task = core.store.tasks.setMessage(task.id, message.id);
    return { message, recipients: route.recipients, warnings: route.warnings, ...(task ? { task } : {}) };
  });
}

function firstLine(body: string): string {
  const line = body.split('\n', 1)[0]!.trim();
  return (line.length > 120 ? `${line.slice(0, 117)}...` : line) || '(untitled)';
}

export function list(core: RelayCore, ctx: CallContext, p: MessageListParams): MessageListResult {
  const agentId = p.agentId ?? ctx.agentId;
  if (agentId) inboxReader(ctx, agentId);
  core.checkCursor(p.since);
  const since = p.since ?? 0;
  const filter = { since, limit: p.limit ?? LIMITS.defaultListLimit, channel: p.channel ?? null, threadId: p.threadId ?? null };
  let page;
  if (agentId) {
    page = withinBudget(core.inbox(agentId, { ...filter, unread: Boolean(p.unread) }), LIMITS.maxResultBytes);
    // Only what the page returns counts as handed over.
    if (ctx.transport === 'http' && agentId === ctx.agentId) recordPolled(core, agentId, page.records, p.unread || filter.channel !== null || filter.threadId !== null ? null : since);
  } else {
    if (p.unread) throw new RelayError('invalidParams', 'unread: needs an agent (agentId, or a registered connection)');
    page = withinBudget(core.store.messages.all(filter), LIMITS.maxResultBytes);
  }
  const messages = page.records;
  return { messages, cursor: messages.at(-1)?.id ?? since, ...(page.cut ? { more: true } : {}) };
}

/**
 * A poll by the recipient itself hands messages over: they count as pushed. An unfiltered page is
 * every message to the agent in (since, last id]: one range; a filtered one is recorded per message.
 */
function recordPolled(core: RelayCore, agentId: string, messages: readonly Message[], unfilteredSince: number | null): void {
  const last = messages.at(-1)?.id;
  if (last === undefined) return;
  if (unfilteredSince !== null && core.notifier.pushes.polled(agentId, unfilteredSince, last)) return;
  const at = core.now();
  core.queue.defer(() => {
    for (const m of messages) core.store.deliveries.advance(agentId, m.id, 'pushed', at);
  });
}

export async function read(core: RelayCore, ctx: CallContext, p: MessageReadParams): Promise<MessageReadResult> {
  const agentId = core.requireAgent(ctx);
  if (!p.ids && p.upTo === undefined) throw new RelayError('invalidParams', 'ids: give ids or upTo');
  const marked = await core.queue.submit(() => {
    const at = core.now();
    let n = 0;
    if (p.ids) n += core.store.deliveries.markRead(agentId, p.ids, at);
    if (p.upTo !== undefined) n += core.store.deliveries.markReadUpTo(agentId, p.upTo, at);
    return n;
  });
  return { marked };
}

export function get(core: RelayCore, _ctx: CallContext, p: MessageGetParams): MessageGetResult {
  const message = core.store.messages.get(p.id);
  if (!message) throw new RelayError('notFound', `id: no message ${p.id}`);
  return { message, deliveries: core.store.deliveries.forMessage(p.id) };
}

export async function ack(core: RelayCore, ctx: CallContext, p: MessageAckParams): Promise<MessageAckResult> {
  const agentId = core.requireAgent(ctx);
  const delivery = await core.queue.submit(() => {
    if (!core.store.deliveries.get(agentId, p.id)) {
      throw new RelayError('notFound', `id: message ${p.id} was not delivered to ${agentId}`);
    }
    core.store.deliveries.advance(agentId, p.id, p.state, core.now());
    return core.store.deliveries.get(agentId, p.id)!;
  });
  return { delivery };
}

export async function claim(core: RelayCore, ctx: CallContext, p: MessageClaimParams): Promise<MessageClaimResult> {
  const message = core.store.messages.get(p.id);
  if (!message) throw new RelayError('notFound', `id: no message ${p.id}`);
  if (message.taskId === null) throw new RelayError('conflict', `id: message ${p.id} is not claimable`);
  return claimTask(core, ctx, message.taskId);
}

export function thread(core: RelayCore, _ctx: CallContext, p: ThreadGetParams): ThreadGetResult {
  const message = core.store.messages.get(p.id);
  if (!message) throw new RelayError('notFound', `id: no message ${p.id}`);
  const rows = core.store.messages.thread(message.threadId, p.since ?? 0, LIMITS.maxListLimit);
  const page = withinBudget(rows, LIMITS.maxResultBytes);
  const more = page.cut || rows.length === LIMITS.maxListLimit;
  return more ? { threadId: message.threadId, messages: page.records, more: true } : { threadId: message.threadId, messages: page.records };
}
