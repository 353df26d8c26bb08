import {
  LIMITS,
  RelayError,
  TERMINAL_TASK_STATUSES,
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
  type TaskStatus,
  type TaskUpdateParams,
  type TaskUpdateResult,
} from '../../../protocol/index.js';
import type { OutboxEntry } from '../../store/outbox.js';
import type { OnCommit } from '../../store/write-queue.js';
import { withinBudget } from '../result-budget.js';
import type { CallContext } from '../context.js';
import type { RelayCore } from '../core.js';
import { senderOf } from './message.js';

export function isTerminal(status: TaskStatus): boolean {
  return (TERMINAL_TASK_STATUSES as readonly string[]).includes(status);
}

interface NewTaskInput {
  title: string;
  target: string;
  body: string | null;
  channel: string | null;
  source: string;
  dedupeKey: string | null;
  callbackUrl: string | null;
  meta: Record<string, unknown>;
}

/** Insert an open task and its task.created event (the caller announces it). */
export function createTaskInTx(core: RelayCore, onCommit: OnCommit, t: NewTaskInput): Task {
  const task = core.store.tasks.insert({ ...t, createdAt: core.now() });
  const event = core.appendEvent('task.created', task.id, null, { source: t.source, target: t.target });
  core.taskChanged(onCommit, task, event);
  return task;
}

export async function create(core: RelayCore, ctx: CallContext, p: TaskCreateParams): Promise<TaskCreateResult> {
  const from = senderOf(core, ctx, p.from);
  const source = p.source ?? from;
  checkSourceFree(core, source);
  checkCreate(core, source, p);
  return core.queue.submit((onCommit) => createInTx(core, onCommit, from, source, p));
}

/**
 * A configured integration's name as `source` belongs to its authenticated ingress alone: with it
 * anyone could resolve or dedupe that integration's tasks, and get callbacks signed with its secret.
 * Any other source name is free (a script's `grafana`, the default agent id or `ext:NAME`).
 */
function checkSourceFree(core: RelayCore, source: string): void {
  if (!core.integrations.has(source)) return;
  throw new RelayError(
    'unauthorized',
    `unauthorized: source: "${source}" is the integration ${source}; its tasks are created and resolved only through POST /api/integrations/${source}/events with its secret; pass another source`,
  );
}

/** Refusals that need no transaction: resolve without a key, callbacks nobody can sign. */
export function checkCreate(core: RelayCore, source: string, p: TaskCreateParams): void {
  if (p.action === 'resolve' && !p.dedupeKey) throw new RelayError('invalidParams', 'dedupeKey: required with action "resolve"');
  if (p.callbackUrl && !core.secretFor(core.callbackSigner(source))) {
    throw new RelayError('invalidParams', 'callbackUrl: callbacks are signed; set AGENT_RELAY_CALLBACK_SECRET on the relay (or create the task through an integration)');
  }
}

/** task/create inside a write: resolve, dedupe, or create and announce. Shared with webhook ingress. */
export function createInTx(core: RelayCore, onCommit: OnCommit, from: string, source: string, p: TaskCreateParams): TaskCreateResult {
  const live = p.dedupeKey ? core.store.tasks.findLive(source, p.dedupeKey) : undefined;
  if (p.action === 'resolve') {
    if (!live) throw new RelayError('notFound', `dedupeKey: no open task "${p.dedupeKey}" from source ${source}`);
    return { task: closeTask(core, onCommit, live, 'done', 100, { resolvedBy: from, note: 'resolved by source' }), created: false };
  }
  if (live) {
    const task = core.store.tasks.bumpOccurrences(live.id, core.now());
    const event = core.appendEvent('task.deduped', task.id, null, { occurrences: task.occurrences, from });
    core.taskChanged(onCommit, task, event);
    return { task, created: false };
  }
  const task = createTaskInTx(core, onCommit, {
    title: p.title,
    target: p.target,
    body: p.body ?? null,
    channel: p.channel ?? null,
    source,
    dedupeKey: p.dedupeKey ?? null,
    callbackUrl: p.callbackUrl ?? null,
    meta: p.meta ?? {},
  });
  const { message } = core.announceTask(onCommit, task, from);
  return { task: core.store.tasks.setMessage(task.id, message.id), created: true };
}

export function claimTask(core: RelayCore, ctx: CallContext, id: number): Promise<TaskClaimResult> {
  const agentId = core.requireAgent(ctx);
  return core.queue.submit((onCommit) => {
    const task = core.store.tasks.claim(id, agentId, core.now());
    if (!task) {
      const current = core.store.tasks.get(id);
      if (!current) throw new RelayError('notFound', `id: no task ${id}`);
      if (current.claimedBy) {
        throw new RelayError('conflict', `task ${id} is already claimed by ${current.claimedBy}`, { owner: current.claimedBy, status: current.status });
      }
      throw new RelayError('conflict', `task ${id} is ${current.status}: it can no longer be claimed`, { status: current.status });
    }
    const event = core.appendEvent('task.claimed', id, agentId, { attempt: task.attempts });
    core.taskChanged(onCommit, task, event);
    return { task, claimToken: task.attempts };
  });
}

export function claim(core: RelayCore, ctx: CallContext, p: { id: number }): Promise<TaskClaimResult> {
  return claimTask(core, ctx, p.id);
}

/**
 * Check the caller may act on a claimed task as its owner. A token from an earlier attempt (the
 * task was released, and maybe claimed again) is stale: -32006, whoever presents it.
 */
function checkOwnership(ctx: CallContext, task: Task, claimToken: number | undefined): void {
  if (claimToken !== undefined && (task.claimedBy === null || claimToken !== task.attempts)) {
    throw new RelayError('staleClaim', `claimToken: ${claimToken} is stale for task ${task.id} (current attempt ${task.attempts}, ${task.claimedBy ? `owner ${task.claimedBy}` : 'unclaimed'})`, { owner: task.claimedBy });
  }
  if (task.claimedBy === null) throw new RelayError('conflict', `task ${task.id} is open: claim it first`, { status: task.status });
  // Only the owner itself: an observer presenting the (guessable) attempt number is not the owner.
  if (ctx.agentId !== task.claimedBy) {
    throw new RelayError('conflict', `task ${task.id} is claimed by ${task.claimedBy}`, { owner: task.claimedBy });
  }
  if (claimToken === undefined) throw new RelayError('invalidParams', `claimToken: required to change task ${task.id} while it is claimed`);
}

function closeTask(core: RelayCore, onCommit: OnCommit, task: Task, status: TaskStatus, progress: number, data: Record<string, unknown>): Task {
  const closed = core.store.tasks.setState(task.id, status, progress, core.now());
  const event = core.appendEvent('task.closed', task.id, task.claimedBy, { status, ...data });
  core.taskChanged(onCommit, closed, event);
  return closed;
}

export async function update(core: RelayCore, ctx: CallContext, p: TaskUpdateParams): Promise<TaskUpdateResult> {
  const task = await core.queue.submit((onCommit) => {
    const task = core.store.tasks.get(p.id);
    if (!task) throw new RelayError('notFound', `id: no task ${p.id}`);
    if (isTerminal(task.status)) throw new RelayError('conflict', `task ${p.id} is already ${task.status}`, { status: task.status });
    const by = ctx.agentId ?? 'observer';
    // Cancelling is administrative: anyone may cancel work that is not finished.
    const adminCancel = p.status === 'canceled' && p.claimToken === undefined && (!task.claimedBy || ctx.agentId !== task.claimedBy);
    if (!adminCancel) checkOwnership(ctx, task, p.claimToken);
    const status = p.status ?? task.status;
    const progress = p.progress ?? (status === 'done' ? 100 : task.progress);
    const data = { by, ...(p.note !== undefined ? { note: p.note } : {}), progress };
    if (isTerminal(status)) return closeTask(core, onCommit, task, status, progress, data);
    const next = core.store.tasks.setState(task.id, status, progress, core.now());
    const event = core.appendEvent('task.updated', task.id, task.claimedBy, { status, ...data });
    core.taskChanged(onCommit, next, event);
    return next;
  });
  return { task };
}

export async function release(core: RelayCore, ctx: CallContext, p: TaskReleaseParams): Promise<TaskReleaseResult> {
  const task = await core.queue.submit((onCommit) => {
    const task = core.store.tasks.get(p.id);
    if (!task) throw new RelayError('notFound', `id: no task ${p.id}`);
    if (isTerminal(task.status)) throw new RelayError('conflict', `task ${p.id} is already ${task.status}`, { status: task.status });
    checkOwnership(ctx, task, p.claimToken);
    return core.releaseTask(onCommit, task, p.note ?? 'released by owner', ctx.agentId);
  });
  return { task };
}

export function list(core: RelayCore, _ctx: CallContext, p: TaskListParams): TaskListResult {
  const page = withinBudget(
    core.store.tasks.list({
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

export function get(core: RelayCore, _ctx: CallContext, p: TaskGetParams): TaskGetResult {
  const task = core.store.tasks.get(p.id);
  if (!task) throw new RelayError('notFound', `id: no task ${p.id}`);
  // A long-lived task collects events (every progress update) and their callbacks: page them, so
  // one answer stays under the result budget. An event is counted with its callbacks.
  const rows = core.store.events.ofTask(p.id, p.since ?? 0, LIMITS.maxListLimit);
  const callbacks = rows.length ? core.store.outbox.ofTask(p.id, rows[0]!.id, rows.at(-1)!.id).map(callbackView) : [];
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
