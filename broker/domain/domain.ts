import { randomUUID } from 'node:crypto';
import { CLOSE_CODES } from '../../protocol/index.js';
import type { RelayConfig } from '../config.js';
import type { Integration } from '../integrations.js';
import type { Logger } from '../logger.js';
import { AgentDirectory } from './agent-directory.js';
import { MOVED_ELSEWHERE, SessionBindings } from './bindings.js';
import { ClaimedTasks } from './claimed-tasks.js';
import { type CommitObserver, CommitQueue } from './commit-queue.js';
import { Notifier } from './notifier.js';
import { SearchPages } from './search-pages.js';
import type { Clock } from './ports.js';
import { SessionRegistry } from './sessions.js';
import type { Change, RelayStore, StoredAgent, StoredSession } from './store-port.js';

export interface DomainHooks {
  /** Wakes the callback dispatcher once an outbox entry is durable. */
  onCallbackEnqueued?: () => void;
  /** See CommitQueueOptions. */
  holdCommitWhile?: () => boolean;
  observeCommit?: CommitObserver;
}

/** What the domain reads from the store once, when the relay starts. */
export interface DomainStart {
  agents: readonly StoredAgent[];
  /** Where each agent's connection was bound last. */
  sessions: readonly StoredSession[];
  /** The newest message and event: the live feed goes on from there. */
  messageId: number;
  eventId: number;
}

/**
 * What every handler works with: the store port, the group commit in front of it, the agent
 * directory, live sessions and the notifier. Built once by the composition root (broker/relay.ts)
 * with `Domain.open`; the hooks come in here, never assigned afterwards.
 */
export class Domain {
  readonly sessions = new SessionRegistry();
  readonly agents: AgentDirectory;
  readonly bindings: SessionBindings;
  readonly notifier: Notifier;
  readonly queue: CommitQueue;
  readonly claimed: ClaimedTasks;
  readonly searches: SearchPages;
  readonly startedAt: number;

  /** Read what the domain starts from, then build it. */
  static async open(store: RelayStore, config: RelayConfig, log: Logger, clock: Clock, integrations: ReadonlyMap<string, Integration> = new Map(), hooks: DomainHooks = {}): Promise<Domain> {
    const [agents, sessions, messageId, eventId] = await Promise.all([store.agents.all(), store.sessions.all(), store.messages.maxId(), store.events.maxId()]);
    return new Domain(store, config, log, clock, integrations, hooks, { agents, sessions, messageId, eventId });
  }

  private constructor(
    readonly store: RelayStore,
    readonly config: RelayConfig,
    readonly log: Logger,
    readonly clock: Clock,
    readonly integrations: ReadonlyMap<string, Integration>,
    hooks: DomainHooks,
    start: DomainStart,
  ) {
    this.bindings = new SessionBindings(store.nodes?.self ?? `node-${randomUUID()}`, store.nodes, start.sessions);
    const feed = store.feed;
    this.agents = new AgentDirectory(store.agents, this.sessions, start.agents, (id) => this.bindings.elsewhere(id, clock.now()), feed ? () => feed.caughtUp() : null);
    const onCallback = hooks.onCallbackEnqueued ?? (() => {});
    const publish = (changes: readonly Change[]) => this.publish(changes, onCallback);
    // A store with a change feed publishes every node's commits, this one's too, before it answers.
    this.queue = new CommitQueue(store, log.child({ component: 'commit' }), {
      ...(store.feed ? {} : { publish }),
      ...(hooks.holdCommitWhile ? { holdWhile: hooks.holdCommitWhile } : {}),
      ...(hooks.observeCommit ? { observeCommit: hooks.observeCommit } : {}),
    });
    const queue = this.queue;
    this.claimed = new ClaimedTasks(!store.feed, () => queue.onTheWay('task.release') + queue.onTheWay('agent.offline') > 0);
    this.notifier = new Notifier(this.sessions, store, this.queue, log, () => clock.now(), { messageId: start.messageId, eventId: start.eventId }, config.maxBackpressureBytes);
    this.searches = new SearchPages(() => clock.now());
    this.startedAt = clock.now();
    store.feed?.follow(publish, (why) => void this.resync(why));
  }

  /**
   * A commit moved an agent's connection. Bound to another node with a newer epoch than this
   * node's session of the agent: that session is closed with 4502 (one session per agent across
   * the nodes). Observers hear of it when the agent's connected state as seen here changed (a
   * binding of this node's own register or disconnect was announced there already).
   */
  private sessionMoved(s: StoredSession): void {
    const a = this.agents.get(s.agentId);
    const wasConnected = a ? this.agents.summary(a).connected : false;
    this.bindings.committed(s);
    const local = this.sessions.forAgent(s.agentId);
    if (local && s.node !== null && s.node !== this.bindings.self && (this.bindings.epochOf(local) ?? 0) < s.epoch) this.sessions.evict(s.agentId, MOVED_ELSEWHERE);
    if (a && this.agents.summary(a).connected !== wasConnected) this.notifier.agentUpdated(this.agents.summary(a));
  }

  /**
   * The feed lost its place: pushes since may have gaps and the directory may be stale. Every
   * session is closed to resume by cursor (which reads the store), and the directory read again.
   */
  private async resync(why: string): Promise<void> {
    this.log.error({ why }, 'the change feed lost its place: closing every session to resume by cursor');
    for (const s of [...this.sessions.sessions()]) s.close(CLOSE_CODES.shutdown, 'the relay lost its place in the change feed: resume by cursor');
    this.agents.reload(await this.store.agents.all());
  }

  now(): number {
    return this.clock.now();
  }

  secretFor(signer: string): string | undefined {
    if (signer === 'relay') return this.config.callbackSecret;
    const integration = this.integrations.get(signer.slice('integration:'.length));
    return integration?.callbackSecret ?? integration?.secret;
  }

  /** A commit's changes, in the order the store made them: the directory first, then pushes. */
  private publish(changes: readonly Change[], onCallback: () => void): void {
    let callbacks = false;
    for (const c of changes) {
      switch (c.kind) {
        case 'message':
          this.notifier.messageNew(c.message, c.recipients);
          break;
        case 'task':
          this.claimed.committed(c.task);
          this.notifier.taskUpdated(c.task, c.event, c.alsoAgents);
          break;
        case 'event':
          this.notifier.eventNew(c.event);
          break;
        case 'agent':
          this.agents.committed(c.agent);
          this.notifier.agentUpdated(this.agents.summary(c.agent));
          break;
        case 'agentRemoved':
          this.agents.removed(c.id);
          break;
        case 'session':
          this.sessionMoved(c.session);
          break;
        case 'lease':
          this.notifier.leaseUpdated(c.lease, c.event);
          break;
        case 'callback':
          callbacks = true;
          break;
      }
    }
    if (callbacks) onCallback();
  }
}
