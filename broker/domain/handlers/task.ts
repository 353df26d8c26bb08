import {
  LIMITS,
  RelayError,
  isTerminalStatus,
  type Task,
  type TaskClaimResult,
  type TaskCreateParams,
  type TaskCreateResult,
  type TaskGetParams,
  type TaskGetResult,
  type TaskListParams,
  type TaskListResult,
  type TaskReleaseParams,
  type TaskReleaseResult,
  type TaskUpdateParams,
  type TaskUpdateResult,
} from '../../../protocol/index.js';
import { requireAgent, type CallContext } from '../context.js';
import type { Domain } from '../domain.js';
import { withinBudget } from '../result-budget.js';
import { PLAN_AGAIN, replanning, staleRoute } from '../replan.js';
import { applyRouted, routeStamp } from '../routed.js';
import { senderOf } from '../sender.js';
import { notClaimable } from '../claimed-tasks.js';
import { plannedRelease } from '../offline.js';
import { callbackSigner, type Announcement, type OutboxEntry, type Outcome, type TaskGuard } from '../store-port.js';

export async function create(ctx: CallContext, p: TaskCreateParams): Promise<TaskCreateResult> {
  const from = senderOf(ctx, p.from);
  const source = p.source ?? from;
  checkSourceFree(ctx.domain, source);
  checkCreate(ctx.domain, source, p);
  return createTask(ctx.domain, from, source, p, null).then((r) => {
    if ('duplicate' in r) throw new Error('a task/create without a receipt cannot be a duplicate');
    return r;
  });
}

/**
 * A configured integration's name as `source` belongs to its authenticated ingress alone: with it
 * anyone could resolve or dedupe that integration's tasks, and get callbacks signed with its secret.
 * Any other source name is free (a script's `grafana`, the default agent id or `ext:NAME`).
 */
function checkSourceFree(d: Domain, source: string): void {
  if (!d.integrations.has(source)) return;
  throw new RelayError(
    'unauthorized',
    `unauthorized: source: "${source}" is the integration ${source}; its tasks are created and resolved only through POST /api/integrations/${source}/events with its secret; pass another source`,
  );
}

/** Refusals that need no transaction: resolve without a key, callbacks nobody can sign. */
export function checkCreate(d: Domain, source: string, p: TaskCreateParams): void {
  if (p.action === 'resolve' && !p.dedupeKey) throw new RelayError('invalidParams', 'dedupeKey: required with action "resolve"');
  if (p.callbackUrl && !d.secretFor(callbackSigner(d.integrations)(source))) {
    throw new RelayError('invalidParams', 'callbackUrl: callbacks are signed; set AGENT_RELAY_CALLBACK_SECRET on the relay (or create the task through an integration)');
  }
}

/**
 * task/create as one op: resolve, dedupe, or create and announce. Shared with webhook ingress,
 * whose receipt commits with the task (a replay racing the first delivery is a duplicate).
 */
export function createTask(
  d: Domain,
  from: string,
  source: string,
  p: TaskCreateParams,
  receipt: { integration: string; deliveryId: string } | null,
): Promise<TaskCreateResult | { duplicate: true; taskId: number | null }> {
  const channel = p.channel ?? null;
  const input = { title: p.title, target: p.target, body: p.body ?? null, channel, dedupeKey: p.dedupeKey ?? null, callbackUrl: p.callbackUrl ?? null, meta: p.meta ?? {} };
  return applyRouted(d, p.target, () => {
    let announce: Announcement | { unroutable: string };
    try {
      announce = { from, recipients: d.agents.route(p.target, channel, from).recipients };
    } catch (err) {
      if (!(err instanceof RelayError)) throw err;
      announce = { unroutable: err.message };
    }
    return {
      op: { op: 'task.create', at: d.now(), from, source, input, action: p.action ?? 'trigger', announce, receipt },
      answer: (o) => {
        if (o.ok) return o.value;
        if (o.refused === 'duplicate') return { duplicate: true as const, taskId: o.taskId };
        if (o.refused === 'noLiveTask') throw new RelayError('notFound', `dedupeKey: no open task "${p.dedupeKey}" from source ${source}`);
        if (o.refused === 'unroutable') throw new RelayError('notFound', o.message);
        throw unexpected(o);
      },
    };
  });
}

export function claimTask(ctx: CallContext, id: number): Promise<TaskClaimResult> {
  const agentId = requireAgent(ctx);
  const d = ctx.domain;
  const known = d.claimed.refusal(id);
  if (known) return Promise.reject(known);
  return d.queue.apply({ op: 'task.claim', at: d.now(), taskId: id, agentId }, (o) => {
    if (o.ok) return { task: o.value.task, claimToken: o.value.task.attempts };
    if (o.refused === 'notFound') throw new RelayError('notFound', `id: no task ${id}`);
    if (o.refused !== 'notOpen') throw unexpected(o);
    d.claimed.committed(o.task);
    throw notClaimable(id, o.task);
  });
}

export function claim(ctx: CallContext, p: { id: number }): Promise<TaskClaimResult> {
  return claimTask(ctx, p.id);
}

/**
 * Check the caller may act on a claimed task as its owner. A token from an earlier attempt (the
 * task was released, and maybe claimed again) is stale: -32006, whoever presents it.
 */
function checkOwnership(ctx: CallContext, task: Task, claimToken: number | undefined): void {
  if (claimToken !== undefined && (task.claimedBy === null || claimToken !== task.attempts)) {
    throw new RelayError('staleClaim', `claimToken: ${claimToken} is stale for task ${task.id} (current attempt ${task.attempts}, ${task.claimedBy ? `owner ${task.claimedBy}` : 'unclaimed'})`, {
      owner: task.claimedBy,
    });
  }
  if (task.claimedBy === null) throw new RelayError('conflict', `task ${task.id} is open: claim it first`, { status: task.status });
  // Only the owner itself: an observer presenting the (guessable) attempt number is not the owner.
  if (ctx.agentId !== task.claimedBy) {
    throw new RelayError('conflict', `task ${task.id} is claimed by ${task.claimedBy}`, { owner: task.claimedBy });
  }
  if (claimToken === undefined) throw new RelayError('invalidParams', `claimToken: required to change task ${task.id} while it is claimed`);
}

/** The task as it is now, refused when it is unknown or already closed. */
async function openTask(d: Domain, id: number): Promise<Task> {
  const task = await d.store.tasks.get(id);
  if (!task) throw new RelayError('notFound', `id: no task ${id}`);
  if (isTerminalStatus(task.status)) throw new RelayError('conflict', `task ${id} is already ${task.status}`, { status: task.status });
  return task;
}

function guardOf(task: Task): TaskGuard {
  return { status: task.status, claimedBy: task.claimedBy, attempts: task.attempts };
}

/**
 * Plan a change against the task as read now and apply it; when the task moved on before the
 * commit (a claim, a release, another update), read it again and plan again: the checks then
 * answer for the state the change would really meet.
 */
async function changeTask(ctx: CallContext, id: number, plan: (task: Task) => Parameters<Domain['queue']['apply']>[0]): Promise<Task> {
  return replanning(ctx.domain, { changed: `task ${id} kept changing while this change was planned`, routedTo: `task ${id}'s target` }, async () => {
    const op = plan(await openTask(ctx.domain, id));
    return ctx.domain.queue.apply(op, (o: Outcome) => {
      if (o.ok) return (o.value as { task: Task }).task;
      if (o.refused === 'changed' || o.refused === 'notFound') return PLAN_AGAIN;
      const stale = staleRoute(o);
      if (stale) return stale;
      throw unexpected(o);
    });
  });
}

export async function update(ctx: CallContext, p: TaskUpdateParams): Promise<TaskUpdateResult> {
  const task = await changeTask(ctx, p.id, (task) => {
    const by = ctx.agentId ?? 'observer';
    // Cancelling is administrative: anyone may cancel work that is not finished.
    const adminCancel = p.status === 'canceled' && p.claimToken === undefined && (!task.claimedBy || ctx.agentId !== task.claimedBy);
    if (!adminCancel) checkOwnership(ctx, task, p.claimToken);
    const status = p.status ?? task.status;
    const progress = p.progress ?? (status === 'done' ? 100 : task.progress);
    const data = { by, ...(p.note !== undefined ? { note: p.note } : {}), progress };
    const event = isTerminalStatus(status)
      ? { kind: 'task.closed' as const, agentId: task.claimedBy, data: { status, ...data } }
      : { kind: 'task.updated' as const, agentId: task.claimedBy, data: { status, ...data } };
    return { op: 'task.transition', at: ctx.domain.now(), taskId: task.id, guard: guardOf(task), status, progress, event };
  });
  return { task };
}

export async function release(ctx: CallContext, p: TaskReleaseParams): Promise<TaskReleaseResult> {
  const task = await changeTask(ctx, p.id, (task) => {
    checkOwnership(ctx, task, p.claimToken);
    const stamp = routeStamp(ctx.domain, [task.target]);
    return { op: 'task.release', at: ctx.domain.now(), guard: guardOf(task), release: plannedRelease(ctx.domain, task, p.note ?? 'released by owner', ctx.agentId), ...stamp };
  });
  return { task };
}

/** An outcome the op cannot answer: a bug in the plan or the store. */
export function unexpected(o: { refused?: string }): Error {
  return new Error(`unexpected store outcome: ${o.refused ?? 'ok'}`);
}

export async function list({ domain: d }: CallContext, p: TaskListParams): Promise<TaskListResult> {
  const page = withinBudget(
    await d.store.tasks.list({
      status: p.status ?? null,
      target: p.target ?? null,
      channel: p.channel ?? null,
      claimedBy: p.claimedBy ?? null,
      since: p.since ?? 0,
      limit: p.limit ?? LIMITS.defaultListLimit,
    }),
    LIMITS.maxResultBytes,
  );
  return page.cut ? { tasks: page.records, more: true } : { tasks: page.records };
}

export async function get({ domain: d }: CallContext, p: TaskGetParams): Promise<TaskGetResult> {
  const task = await d.store.tasks.get(p.id);
  if (!task) throw new RelayError('notFound', `id: no task ${p.id}`);
  // A long-lived task collects events (every progress update) and their callbacks: page them, so
  // one answer stays under the result budget. An event is counted with its callbacks.
  const rows = await d.store.events.ofTask(p.id, p.since ?? 0, LIMITS.maxListLimit);
  const callbacks = rows.length ? (await d.store.outbox.ofTask(p.id, rows[0]!.id, rows.at(-1)!.id)).map(callbackView) : [];
  const byEvent = new Map<number, typeof callbacks>();
  for (const c of callbacks) {
    const list = byEvent.get(c.eventId);
    if (list) list.push(c);
    else byEvent.set(c.eventId, [c]);
  }
  const budget = LIMITS.maxResultBytes - Buffer.byteLength(JSON.stringify(task));
  const page = withinBudget(rows, budget, (event) => ({ event, callbacks: byEvent.get(event.id) ?? [] }));
  const events = page.records.map((r) => r.event);
  const result = { task, events, callbacks: page.records.flatMap((r) => r.callbacks) };
  return page.cut || rows.length === LIMITS.maxListLimit ? { ...result, more: true } : result;
}

/** What task/get shows of a callback delivery: its state, not its payload or signer. */
function callbackView({ webhookId, eventId, url, state, attempts, nextAt, lastStatus, lastError, createdAt, updatedAt }: OutboxEntry) {
  return { webhookId, eventId, url, state, attempts, nextAt, lastStatus, lastError, createdAt, updatedAt };
}
