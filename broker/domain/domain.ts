import type { RelayConfig } from '../config.js';
import type { Integration } from '../integrations.js';
import type { Logger } from '../logger.js';
import { AgentDirectory } from './agent-directory.js';
import { CommitQueue } from './commit-queue.js';
import { Notifier } from './notifier.js';
import { SearchPages } from './search-pages.js';
import type { Clock } from './ports.js';
import { SessionRegistry } from './sessions.js';
import type { Change, RelayStore } from './store-port.js';

export interface DomainHooks {
  /** Wakes the callback dispatcher once an outbox entry is durable. */
  onCallbackEnqueued?: () => void;
  /** See CommitQueueOptions. */
  holdCommitWhile?: () => boolean;
  observeCommit?: (ms: number, ops: number) => void;
}

/**
 * What every handler works with: the store port, the group commit in front of it, the agent
 * directory, live sessions and the notifier. Built once by the composition root (broker/relay.ts);
 * the hooks come in here, never assigned afterwards.
 */
export class Domain {
  readonly sessions = new SessionRegistry();
  readonly agents: AgentDirectory;
  readonly notifier: Notifier;
  readonly queue: CommitQueue;
  readonly searches: SearchPages;
  readonly startedAt: number;

  constructor(
    readonly store: RelayStore,
    readonly config: RelayConfig,
    readonly log: Logger,
    readonly clock: Clock,
    readonly integrations: ReadonlyMap<string, Integration> = new Map(),
    hooks: DomainHooks = {},
  ) {
    this.agents = new AgentDirectory(store.agents, this.sessions);
    const onCallback = hooks.onCallbackEnqueued ?? (() => {});
    this.queue = new CommitQueue(store, log.child({ component: 'commit' }), {
      publish: (changes) => this.publish(changes, onCallback),
      ...(hooks.holdCommitWhile ? { holdWhile: hooks.holdCommitWhile } : {}),
      ...(hooks.observeCommit ? { observeCommit: hooks.observeCommit } : {}),
    });
    this.notifier = new Notifier(this.sessions, store, this.queue, log, () => clock.now());
    this.searches = new SearchPages(() => clock.now());
    this.startedAt = clock.now();
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
