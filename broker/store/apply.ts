import { isTerminalStatus, type RelayEvent, type Task } from '../../protocol/index.js';
import {
  callbackPayload,
  callbackWebhookId,
  type Announcement,
  type Change,
  type EventSpec,
  type OpOf,
  type Outcome,
  type PlannedRelease,
  type PruneCounts,
  type Refusal,
  type Results,
  type StoredAgent,
  type StoredSession,
  type TaskGuard,
  type WriteOp,
} from '../domain/store-port.js';
import { LeaseApplier } from './apply-leases.js';
import { ok, refuse, type Applied } from './applied.js';
import type { Tables } from './tables.js';

/**
 * Applies write ops inside the open transaction: checks each op's preconditions against the rows
 * as they are now, writes, and records the changes in the order it made them. All decisions that
 * need the relay's memory (routing, who may act) were made when the op was planned; the store
 * decides only what the rows decide (is the task still open, is the id free).
 */
export class OpApplier {
  private changes: Change[] = [];
  private readonly leases: LeaseApplier;

  constructor(
    private readonly t: Tables,
    /** Which secret signs a task's callbacks, by the task's source. */
    private readonly callbackSigner: (source: string) => string,
  ) {
    this.leases = new LeaseApplier(t, (c) => this.changes.push(c));
  }

  apply(op: WriteOp): Outcome {
    this.changes = [];
    const result = this.run(op);
    return { ...result, changes: this.changes } as Outcome;
  }

  private run(op: WriteOp): Applied {
    switch (op.op) {
      case 'message.send':
        return this.send(op);
      case 'task.create':
        return this.createTask(op);
      case 'task.claim':
        return this.claim(op);
      case 'task.transition':
        return this.transition(op);
      case 'task.release':
        return this.releaseOwned(op);
      case 'agent.insert':
        return this.insertAgent(op);
      case 'agent.patch':
        return this.patchAgent(op);
      case 'agent.offline':
        return this.offline(op);
      case 'session.bind':
        return ok({ session: this.bindSession(op.agentId, op.node, op.at) } satisfies Results['session.bind']);
      case 'session.unbind':
        return this.unbind(op);
      case 'agent.touch':
        for (const id of op.ids) this.t.agents.touchLastSeen(id, op.at);
        return ok(null);
      case 'delivery.read': {
        let marked = 0;
        if (op.ids) marked += this.t.deliveries.markRead(op.agentId, op.ids, op.at);
        if (op.upTo !== null) marked += this.t.deliveries.markReadUpTo(op.agentId, op.upTo, op.at);
        return ok({ marked });
      }
      case 'delivery.ack': {
        if (!this.t.deliveries.get(op.agentId, op.messageId)) return refuse({ refused: 'notDelivered' });
        this.t.deliveries.advance(op.agentId, op.messageId, op.state, op.at);
        return ok({ delivery: this.t.deliveries.get(op.agentId, op.messageId)! });
      }
      case 'delivery.mark':
        for (const id of op.messageIds) this.t.deliveries.advance(op.agentId, id, op.state, op.at);
        return ok(null);
      case 'delivery.span': {
        if (op.rowId === null) return ok({ rowId: this.t.deliveries.insertSpan(op.agentId, 'pushed', op.first, op.last, op.at) });
        this.t.deliveries.extendSpan(op.agentId, { id: op.rowId, first: op.first }, op.last);
        return ok({ rowId: op.rowId });
      }
      case 'callback.lease':
        return ok({ entries: this.t.outbox.lease(op.at, op.limit, op.at + op.leaseMs) } satisfies Results['callback.lease']);
      case 'callback.attempt':
        if (!this.t.outbox.recordAttempt(op.id, { epoch: op.epoch, state: op.state, nextAt: op.nextAt, status: op.status, error: op.error, now: op.at })) return refuse({ refused: 'notLeased' });
        return ok(null);
      case 'lease.acquire':
        return this.leases.acquire(op);
      case 'lease.renew':
        return this.leases.renew(op);
      case 'lease.release':
        return this.leases.release(op);
      case 'lease.expire':
        return ok({ leases: this.leases.expire(op.at) } satisfies Results['lease.expire']);
      case 'prune':
        return ok(this.prune(op));
    }
  }

  // ---- messages and tasks ----

  private send(op: OpOf<'message.send'>): Applied {
    let threadId: number | null = null;
    if (op.message.replyTo !== null) {
      const parent = this.t.messages.get(op.message.replyTo);
      if (!parent) return refuse({ refused: 'replyToMissing' });
      threadId = parent.threadId;
    }
    let task: Task | null = null;
    if (op.task) task = this.insertTask(op.at, { ...op.task, createdAt: op.at });
    const message = this.insertMessage({ ...op.message, threadId, taskId: task?.id ?? null }, op.recipients);
    if (task) task = this.t.tasks.setMessage(task.id, message.id);
    return ok({ message, task } satisfies Results['message.send']);
  }

  private createTask(op: OpOf<'task.create'>): Applied {
    const seen = op.receipt ? this.t.receipts.seen(op.receipt.integration, op.receipt.deliveryId) : undefined;
    if (seen) return refuse({ refused: 'duplicate', taskId: seen.taskId });
    const result = this.createOrDedupe(op);
    // Only a delivery that was applied is recorded: a refused one (a resolve before its trigger)
    // may be retried with the same delivery id.
    if (result.ok && op.receipt) this.t.receipts.record(op.receipt.integration, op.receipt.deliveryId, op.at, (result.value as Results['task.create']).task.id);
    return result;
  }

  private createOrDedupe(op: OpOf<'task.create'>): Applied {
    const { input } = op;
    const live = input.dedupeKey ? this.t.tasks.findLive(op.source, input.dedupeKey) : undefined;
    if (op.action === 'resolve') {
      if (!live) return refuse({ refused: 'noLiveTask' });
      const closed = this.t.tasks.setState(live.id, 'done', 100, op.at);
      this.taskEvent(op.at, closed, { kind: 'task.closed', agentId: live.claimedBy, data: { status: 'done', resolvedBy: op.from, note: 'resolved by source' } });
      return ok({ task: closed, created: false } satisfies Results['task.create']);
    }
    if (live) {
      const task = this.t.tasks.bumpOccurrences(live.id, op.at);
      this.taskEvent(op.at, task, { kind: 'task.deduped', agentId: null, data: { occurrences: task.occurrences, from: op.from } });
      return ok({ task, created: false } satisfies Results['task.create']);
    }
    if ('unroutable' in op.announce) return refuse({ refused: 'unroutable', message: op.announce.unroutable });
    const task = this.insertTask(op.at, { ...input, source: op.source, createdAt: op.at });
    const message = this.announce(op.at, task, op.announce);
    return ok({ task: this.t.tasks.setMessage(task.id, message.id), created: true } satisfies Results['task.create']);
  }

  private insertTask(at: number, t: Parameters<Tables['tasks']['insert']>[0]): Task {
    const task = this.t.tasks.insert(t);
    this.taskEvent(at, task, { kind: 'task.created', agentId: null, data: { source: t.source, target: t.target } });
    return task;
  }

  private claim(op: OpOf<'task.claim'>): Applied {
    const task = this.t.tasks.claim(op.taskId, op.agentId, op.at);
    if (!task) {
      const current = this.t.tasks.get(op.taskId);
      return current ? refuse({ refused: 'notOpen', task: current }) : refuse({ refused: 'notFound' });
    }
    this.taskEvent(op.at, task, { kind: 'task.claimed', agentId: op.agentId, data: { attempt: task.attempts } });
    return ok({ task } satisfies Results['task.claim']);
  }

  /** The task, when it exists, is not closed, and is still as the op was planned against. */
  private guarded(taskId: number, guard: TaskGuard): Task | Refusal {
    const task = this.t.tasks.get(taskId);
    if (!task) return { refused: 'notFound' };
    if (isTerminalStatus(task.status) || task.status !== guard.status || task.claimedBy !== guard.claimedBy || task.attempts !== guard.attempts) {
      return { refused: 'changed' };
    }
    return task;
  }

  private transition(op: OpOf<'task.transition'>): Applied {
    const current = this.guarded(op.taskId, op.guard);
    if ('refused' in current) return refuse(current);
    const task = this.t.tasks.setState(op.taskId, op.status, op.progress, op.at);
    this.taskEvent(op.at, task, op.event);
    return ok({ task } satisfies Results['task.transition']);
  }

  private releaseOwned(op: OpOf<'task.release'>): Applied {
    const current = this.guarded(op.release.taskId, op.guard);
    if ('refused' in current) return refuse(current);
    return ok({ task: this.release(op.at, current, op.release) } satisfies Results['task.release']);
  }

  private release(at: number, task: Task, r: PlannedRelease): Task {
    const previousOwner = task.claimedBy;
    const released = this.t.tasks.release(task.id, at);
    this.taskEvent(at, released, { kind: 'task.released', agentId: previousOwner, data: { reason: r.reason, by: r.by, previousOwner } }, [previousOwner]);
    this.announce(at, released, r.announce);
    return released;
  }

  /** Offer an open task to its target as a claimable message (on creation and on every release). */
  private announce(at: number, task: Task, a: Announcement) {
    return this.insertMessage(
      {
        from: a.from,
        to: task.target,
        channel: task.channel,
        subject: task.title,
        body: task.body ?? task.title,
        replyTo: null,
        threadId: null,
        claimable: true,
        taskId: task.id,
        createdAt: at,
        meta: {},
      },
      a.recipients,
    );
  }

  private insertMessage(m: Parameters<Tables['messages']['insert']>[0], recipients: string[]) {
    const message = this.t.messages.insert(m, recipients);
    this.changes.push({ kind: 'message', message, recipients });
    return message;
  }

  /** Append a task event; a task with a callback URL gets it in the outbox in the same transaction. */
  private taskEvent(at: number, task: Task, e: EventSpec, alsoAgents: (string | null)[] = []): RelayEvent {
    const event = this.t.events.append({ at, kind: e.kind, taskId: task.id, agentId: e.agentId, data: e.data });
    if (task.callbackUrl) {
      this.t.outbox.enqueue({
        webhookId: callbackWebhookId(event),
        taskId: task.id,
        eventId: event.id,
        url: task.callbackUrl,
        signer: this.callbackSigner(task.source),
        payload: callbackPayload(task, event),
        now: at,
      });
      this.changes.push({ kind: 'callback' });
    }
    this.changes.push({ kind: 'task', task, event, alsoAgents });
    return event;
  }

  // ---- agents ----

  private agentEvents(at: number, id: string, events: EventSpec[]): void {
    for (const e of events) {
      const event = this.t.events.append({ at, kind: e.kind, taskId: null, agentId: e.agentId ?? id, data: e.data });
      this.changes.push({ kind: 'event', event });
    }
  }

  private saveAgent(agent: StoredAgent): void {
    this.t.agents.save(agent);
    this.changes.push({ kind: 'agent', agent });
  }

  private insertAgent(op: OpOf<'agent.insert'>): Applied {
    if (this.t.agents.get(op.agent.id)) return refuse({ refused: 'changed' });
    const count = this.t.agents.count();
    if (count >= op.maxAgents) return refuse({ refused: 'full', count });
    const newestMessageId = this.t.messages.maxId();
    const agent: StoredAgent = { ...op.agent, inboxFloor: newestMessageId };
    this.saveAgent(agent);
    this.agentEvents(op.at, agent.id, op.events);
    return ok({ agent, newestMessageId, session: this.bind(op) } satisfies Results['agent.insert']);
  }

  private patchAgent(op: OpOf<'agent.patch'>): Applied {
    const existing = this.t.agents.get(op.id);
    if (!existing) return refuse({ refused: 'notFound' });
    if (existing.tokenHash !== op.expect.tokenHash || existing.status !== op.expect.status) return refuse({ refused: 'changed' });
    const agent = patched(existing, op.patch);
    this.saveAgent(agent);
    this.agentEvents(op.at, agent.id, op.events);
    return ok({ agent, newestMessageId: this.t.messages.maxId(), session: this.bind(op) } satisfies Results['agent.patch']);
  }

  /** A registration's binding of the agent's connection to its node, if it asked for one. */
  private bind(op: OpOf<'agent.insert'> | OpOf<'agent.patch'>): StoredSession | null {
    return op.bind ? this.bindSession(op.op === 'agent.insert' ? op.agent.id : op.id, op.bind.node, op.at) : null;
  }

  /** The agent's connection is on `node` now (the next epoch), published as a session change. */
  private bindSession(agentId: string, node: string, at: number): StoredSession {
    const session = this.t.sessions.bind(agentId, node, at);
    this.changes.push({ kind: 'session', session });
    return session;
  }

  private unbind(op: OpOf<'session.unbind'>): Applied {
    const session = this.t.sessions.unbind(op.agentId, op.node, op.epoch, op.at);
    if (!session) return refuse({ refused: 'changed' });
    this.changes.push({ kind: 'session', session });
    return ok({ session } satisfies Results['session.unbind']);
  }

  private offline(op: OpOf<'agent.offline'>): Applied {
    const existing = this.t.agents.get(op.id);
    if (!existing) return refuse({ refused: 'notFound' });
    if (existing.status === 'offline') return refuse({ refused: 'changed' });
    const claimed = this.t.tasks.liveClaimedBy(op.id);
    const planned = new Map(op.releases.map((r) => [r.taskId, r]));
    if (claimed.length !== planned.size || claimed.some((t) => planned.get(t.id)?.attempts !== t.attempts)) return refuse({ refused: 'changed' });
    const agent: StoredAgent = { ...patched(existing, op.patch), status: 'offline', offlineAt: op.at };
    this.saveAgent(agent);
    this.agentEvents(op.at, op.id, [{ kind: 'agent.offline', agentId: op.id, data: { reason: op.reason } }]);
    for (const task of claimed) this.release(op.at, task, planned.get(task.id)!);
    this.leases.endAllOf(op.id, op.at);
    return ok({ agent } satisfies Results['agent.offline']);
  }

  // ---- retention ----

  private prune(op: OpOf<'prune'>): PruneCounts {
    const before = this.t.prunedThrough();
    const maxPruned = this.t.messages.pruneBefore(op.cutoff);
    const prunedThrough = Math.max(before, maxPruned);
    if (prunedThrough > before) this.t.setPrunedThrough(prunedThrough);
    if (maxPruned > 0) this.t.deliveries.pruneThrough(maxPruned);
    const events = this.t.events.pruneBefore(op.cutoff);
    const tasks = this.t.tasks.pruneClosedBefore(op.cutoff);
    // Finished callback deliveries and webhook receipts age out with the rest; pending ones stay.
    const callbacks = this.t.outbox.pruneFinishedBefore(op.cutoff);
    const receipts = this.t.receipts.pruneBefore(op.cutoff);
    const leases = this.t.leases.pruneEndedBefore(op.cutoff);
    const agents = this.t.agents.pruneOffline(op.offlineCutoff);
    for (const id of agents) this.changes.push({ kind: 'agentRemoved', id });
    return { messages: maxPruned > 0 ? maxPruned - before : 0, prunedThrough, events, tasks, callbacks, receipts, leases, agents };
  }
}

function patched(a: StoredAgent, p: StoredAgentPatch): StoredAgent {
  const next = { ...a };
  for (const [k, v] of Object.entries(p)) if (v !== undefined) (next as Record<string, unknown>)[k] = v;
  // Last-seen only moves forward: a touch committed meanwhile is newer than the plan's snapshot.
  if (p.lastSeenAt !== undefined) next.lastSeenAt = Math.max(a.lastSeenAt, p.lastSeenAt);
  return next;
}

type StoredAgentPatch = OpOf<'agent.patch'>['patch'];
