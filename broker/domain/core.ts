import { RelayError, type Agent, type AgentSummary, type EventKind, type Message, type RelayEvent, type Task } from '../../protocol/index.js';
import type { RelayConfig } from '../config.js';
import type { Integration } from '../integrations.js';
import type { Logger } from '../logger.js';
import { withoutMeta, type CachedAgent, type StoredAgent } from '../store/agents.js';
import type { ListFilter, NewMessage } from '../store/messages.js';
import type { SqliteStore } from '../store/store.js';
import { WriteQueue, type OnCommit } from '../store/write-queue.js';
import type { CallContext } from './context.js';
import { Notifier } from './notifier.js';
import type { Clock, Session } from './ports.js';
import { resolveTarget, UnknownAgentError, type Route } from './routing.js';
import { SessionRegistry } from './sessions.js';
import { verifyToken } from './tokens.js';

/**
 * The relay's state and the operations several handlers share. Agents are cached in memory
 * (routing and listing read the cache, never the database); the cache changes only after commit.
 */
/**
 * Rows read per backlog page. Small, because a backlog stops at the session's backpressure limit:
 * a page of 1,000 large messages read tens of megabytes to send one.
 */
const BACKLOG_PAGE = 100;

export class RelayCore {
  readonly queue: WriteQueue;
  readonly sessions = new SessionRegistry();
  readonly notifier: Notifier;
  /** Committed agents without their meta (bounded, but up to 16 KiB each; read from the store when listed). */
  readonly agents = new Map<string, CachedAgent>();
  readonly startedAt: number;
  /** Set by the relay: wakes the callback dispatcher after an outbox entry commits. */
  onCallbackEnqueued: () => void = () => {};

  constructor(
    readonly store: SqliteStore,
    readonly config: RelayConfig,
    readonly log: Logger,
    readonly clock: Clock,
    readonly integrations: ReadonlyMap<string, Integration> = new Map(),
  ) {
    this.queue = new WriteQueue(store, log.child({ component: 'write-queue' }), () => this.reloadAgents());
    this.notifier = new Notifier(this.sessions, store, this.queue, log, () => clock.now());
    this.startedAt = clock.now();
    this.reloadAgents();
  }

  now(): number {
    return this.clock.now();
  }

  reloadAgents(): void {
    this.agents.clear();
    for (const a of this.store.agents.all()) this.agents.set(a.id, withoutMeta(a));
  }

  wireAgent(a: StoredAgent): Agent {
    return { ...this.agentSummary(a), meta: a.meta };
  }

  /** The agent on the wire without its meta (agent/updated). */
  agentSummary(a: CachedAgent): AgentSummary {
    const { tokenHash: _t, offlineAt: _o, inboxFloor: _f, meta: _m, ...rest } = a as CachedAgent & Partial<StoredAgent>;
    return { ...rest, connected: this.sessions.isConnected(a.id) };
  }

  /** No message below this id can be addressed to the agent: inbox scans start here. */
  inboxFloor(agentId: string): number {
    return this.agents.get(agentId)?.inboxFloor ?? 0;
  }

  /** The agent's messages after `since`; with `unread`, those it has not read. */
  inbox(agentId: string, f: ListFilter & { unread: boolean }): Message[] {
    const floor = this.inboxFloor(agentId);
    return f.unread
      ? this.store.messages.inbox(agentId, { ...f, floor, unread: true, readThrough: this.store.deliveries.readThrough(agentId) })
      : this.store.messages.inbox(agentId, { ...f, floor, unread: false });
  }

  /**
   * Push the committed messages in (since, upTo] to a session that has just attached, in id order,
   * before its live pushes: the agent's inbox, or every message for an observer (agentId null).
   * Stops once the session closes: a write past its backpressure limit cuts it, and the client
   * resumes from the last id it got.
   */
  replayBacklog(session: Session, agentId: string | null, since: number, upTo: number): void {
    let cursor = since;
    while (!session.closed && cursor < upTo) {
      const filter = { since: cursor, limit: BACKLOG_PAGE, channel: null, threadId: null };
      const page = agentId ? this.inbox(agentId, { ...filter, unread: false }) : this.store.messages.all(filter);
      const inRange = page.filter((m) => m.id <= upTo);
      if (inRange.length === 0) break;
      this.notifier.backlog(session, inRange, agentId);
      cursor = inRange.at(-1)!.id;
      if (page.length < BACKLOG_PAGE) break;
    }
  }

  /** The calling agent's id, or -32004 when the call needs an identity it does not have. */
  requireAgent(ctx: CallContext): string {
    if (ctx.agentId && this.agents.has(ctx.agentId)) return ctx.agentId;
    throw new RelayError('notRegistered', 'not registered: call agent/register first (or pass agentId and agentToken over HTTP)');
  }

  /** Verify HTTP-style credentials; returns the agent id or throws -32001. */
  authenticate(agentId: string | undefined, agentToken: string): string {
    const agent = agentId ? this.agents.get(agentId) : undefined;
    // Compare even when the agent is unknown, so timing does not reveal which ids exist.
    const ok = verifyToken(agentToken, agent?.tokenHash ?? '0'.repeat(64));
    if (!agentId) throw new RelayError('invalidParams', 'agentId: required with agentToken');
    if (!agent || !ok) throw new RelayError('unauthorized', `unauthorized: agentToken does not match agent ${agentId}`);
    return agentId;
  }

  /** Enforce the retention floor: a cursor below what is still held must resync, never skip. */
  checkCursor(since: number | undefined, field = 'since'): void {
    if (since === undefined) return;
    const floor = this.store.prunedThrough();
    if (since < floor) {
      throw new RelayError('cursorExpired', `${field}: cursor ${since} is below the retention floor ${floor}; resync with message/list`, { floor });
    }
  }

  route(target: string, channel: string | null, senderId: string): Route {
    try {
      return resolveTarget(target, channel, senderId, this.agents);
    } catch (err) {
      if (err instanceof UnknownAgentError) throw new RelayError('notFound', err.message);
      throw err;
    }
  }

  // ---- operations used inside write work (they run in the group-commit transaction) ----

  appendEvent(kind: EventKind, taskId: number | null, agentId: string | null, data: Record<string, unknown>): RelayEvent {
    return this.store.events.append({ at: this.now(), kind, taskId, agentId, data });
  }

  /** Insert a message routed to `to`, and push it after commit. */
  insertMessage(onCommit: OnCommit, m: NewMessage): { message: Message; route: Route } {
    const route = this.route(m.to, m.channel, m.from);
    const message = this.store.messages.insert(m, route.recipients);
    onCommit(() => this.notifier.messageNew(message, route.recipients));
    return { message, route };
  }

  /** Offer an open task to its target as a claimable message (on creation and on every release). */
  announceTask(onCommit: OnCommit, task: Task, from: string): { message: Message; route: Route } {
    return this.insertMessage(onCommit, {
      from,
      to: task.target,
      channel: task.channel,
      subject: task.title,
      body: task.body ?? task.title,
      replyTo: null,
      threadId: null,
      claimable: true,
      taskId: task.id,
      createdAt: this.now(),
      meta: {},
    });
  }

  /** Publish a task event after commit; with a callback URL, also write it to the outbox in this transaction. */
  taskChanged(onCommit: OnCommit, task: Task, event: RelayEvent, alsoAgents: readonly (string | null)[] = []): void {
    if (task.callbackUrl) {
      this.store.outbox.enqueue({
        webhookId: `msg_${event.id}`,
        taskId: task.id,
        eventId: event.id,
        url: task.callbackUrl,
        signer: this.callbackSigner(task.source),
        payload: JSON.stringify({ type: event.kind, timestamp: new Date(event.at).toISOString(), data: { event, task } }),
        now: this.now(),
      });
      onCommit(() => this.onCallbackEnqueued());
    }
    onCommit(() => this.notifier.taskUpdated(task, event, alsoAgents));
  }

  /** Tasks of an integration are signed with its secret; all others with the relay callback secret. */
  callbackSigner(source: string): string {
    return this.integrations.has(source) ? `integration:${source}` : 'relay';
  }

  secretFor(signer: string): string | undefined {
    if (signer === 'relay') return this.config.callbackSecret;
    const integration = this.integrations.get(signer.slice('integration:'.length));
    return integration?.callbackSecret ?? integration?.secret;
  }

  /** Return a claimed task to open, record why, and announce it again. */
  releaseTask(onCommit: OnCommit, task: Task, reason: string, by: string | null): Task {
    const previousOwner = task.claimedBy;
    const released = this.store.tasks.release(task.id, this.now());
    const event = this.appendEvent('task.released', task.id, previousOwner, { reason, by, previousOwner });
    this.taskChanged(onCommit, released, event, [previousOwner]);
    this.announceTask(onCommit, released, `ext:relay`);
    return released;
  }

  /** Persist an agent and publish the change after commit. */
  saveAgent(onCommit: OnCommit, agent: StoredAgent): void {
    this.store.agents.save(agent);
    onCommit(() => {
      this.agents.set(agent.id, withoutMeta(agent));
      this.notifier.agentUpdated(this.agentSummary(agent));
    });
  }

  /** Take an agent offline: release its unfinished claimed work and record both. */
  markOffline(onCommit: OnCommit, agent: StoredAgent, reason: string): StoredAgent {
    const now = this.now();
    const offline: StoredAgent = { ...agent, status: 'offline', offlineAt: now };
    this.saveAgent(onCommit, offline);
    const event = this.appendEvent('agent.offline', null, agent.id, { reason });
    onCommit(() => this.notifier.eventNew(event));
    // Re-announcements are routed over the cache, which only changes after commit: route them over the
    // agent as it now is (offline), so fan-out does not offer the work back to the agent that dropped it.
    const cached = this.agents.get(agent.id);
    this.agents.set(agent.id, withoutMeta(offline));
    try {
      for (const task of this.store.tasks.liveClaimedBy(agent.id)) this.releaseTask(onCommit, task, `owner ${agent.id} went offline`, null);
    } finally {
      if (cached) this.agents.set(agent.id, cached);
      else this.agents.delete(agent.id);
    }
    return offline;
  }

  /** Read the authoritative agent row inside a write (the cache may lag a batch behind). */
  agentInTx(id: string): StoredAgent | undefined {
    return this.store.agents.get(id);
  }
}
