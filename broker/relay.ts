import { join } from 'node:path';
import { CLOSE_CODES } from '../protocol/index.js';
import { createHttpHandler } from '../adapters/http/router.js';
import type { RelayConfig } from './config.js';
import { CallbackDispatcher, DEFAULT_CALLBACK_POLICY, type CallbackPolicy } from './domain/callbacks.js';
import type { CommitObserver } from './domain/commit-queue.js';
import { Domain } from './domain/domain.js';
import { loadIntegrations } from './integrations.js';
import { createMetrics, watchState, type StoreBatchObserver } from './metrics.js';
import { InboxWaiters } from '../adapters/http/inbox.js';
import { domainEdge } from './domain/edge.js';
import { systemClock, type Clock, type RelayEdge } from './domain/ports.js';
import { Scheduler } from './domain/scheduler.js';
import type { Logger } from './logger.js';
import { PACKAGE_ROOT, RELAY_VERSION } from './package-root.js';
import type { RelayStore } from './domain/store-port.js';
import { SqliteStore } from './store/store.js';
import { RpcDispatcher } from './transport/rpc-dispatch.js';
import { startTransport, type RunningTransport } from './transport/index.js';

export interface Relay {
  readonly port: number;
  readonly url: string;
  /** The domain every entry acts on. */
  readonly core: Domain;
  /** The store behind it (tests read it directly). */
  readonly store: RelayStore;
  readonly callbacks: CallbackDispatcher;
  /** Graceful stop: stop accepting, answer what is in flight, close sockets, close the database. */
  close(): Promise<void>;
}

export interface RelayOptions {
  clock?: Clock;
  callbackPolicy?: Partial<CallbackPolicy>;
  /** Interval of SSE keep-alive comments (default 15 s). */
  sseKeepAliveMs?: number;
  /** Also hold each group commit open while this says so (tests widen the window a commit waits in). */
  holdCommitWhile?: () => boolean;
  /** Also told each commit's duration and the writes it answered (beside the metrics). */
  observeCommit?: CommitObserver;
}

export async function createRelay(config: RelayConfig, log: Logger, options: RelayOptions = {}): Promise<Relay> {
  const integrations = loadIntegrations(config.integrationsPath);
  const metrics = createMetrics();
  const store = await openStore(config, [...integrations.keys()], log, metrics.observeStoreBatch);
  // Hooks that reach parts built later (the dispatcher, the transport) go through these closures.
  let callbacks: CallbackDispatcher | undefined;
  let transport: RunningTransport | undefined;
  const core = await Domain.open(store, config, log, options.clock ?? systemClock, integrations, {
    onCallbackEnqueued: () => callbacks?.kick(),
    holdCommitWhile: () => (transport?.framesWaiting() ?? 0) > 0 || (options.holdCommitWhile?.() ?? false),
    observeCommit: (ms, writes) => {
      metrics.observeCommit(ms, writes);
      options.observeCommit?.(ms, writes);
    },
  });
  callbacks = new CallbackDispatcher(core, (signer) => core.secretFor(signer), { ...DEFAULT_CALLBACK_POLICY, ...options.callbackPolicy });
  const dispatcher = new RpcDispatcher(core, log.child({ component: 'rpc' }), RELAY_VERSION);
  const scheduler = new Scheduler(core);
  try {
    // The edge adapters reach the relay only through this port: the method table and the domain's own functions.
    const edge: RelayEdge = {
      call: (method, params, caller) => dispatcher.call(method, params, caller),
      handleFrame: (text, caller) => dispatcher.handleFrame(text, caller),
      ...domainEdge(core),
    };
    const waiters = new InboxWaiters(edge);
    watchState(metrics.register, core, { longPolls: () => waiters.size });
    const http = createHttpHandler({ relay: edge, waiters, metrics: metrics.register, sseKeepAliveMs: options.sseKeepAliveMs ?? 15_000, dashboardDir: join(PACKAGE_ROOT, 'dist', 'dashboard') });
    transport = await startTransport({ domain: core, dispatcher, config, log, http });
  } catch (err) {
    await store.close();
    throw err;
  }
  const running = transport;
  const dispatch = callbacks;
  scheduler.start();
  dispatch.kick();
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  let closing: Promise<void> | null = null;
  return {
    port: running.port,
    url: `http://${host}:${running.port}`,
    core,
    store,
    callbacks: dispatch,
    close: () =>
      (closing ??= (async () => {
        running.stopListening();
        scheduler.stop();
        dispatch.stop();
        await core.queue.close();
        // Let answers to the flushed calls reach their sockets before the sockets close.
        await new Promise((r) => setImmediate(r));
        running.closeAll(CLOSE_CODES.shutdown, 'relay shutting down: reconnect and resume');
        // SSE streams are live sessions too: end them, or their clients never learn to reconnect.
        for (const s of [...core.sessions.sessions()]) if (s.kind === 'sse') s.close(CLOSE_CODES.shutdown, 'relay shutting down');
        await new Promise((r) => setImmediate(r));
        await store.close();
      })()),
  };
}

/** The store the configuration names: SQLite by default, PostgreSQL for a `postgres://` AGENT_RELAY_STORE. */
async function openStore(config: RelayConfig, signedSources: string[], log: Logger, observeBatch: StoreBatchObserver): Promise<RelayStore> {
  if (config.store) {
    // Loaded only when asked for: a SQLite relay never loads the PostgreSQL driver.
    const { PostgresStore } = await import('./store-postgres/store.js');
    return PostgresStore.open({
      url: config.store,
      signedSources,
      onConnectionError: (err) => log.warn({ err: err.message }, 'a PostgreSQL connection failed; the pool connects again'),
      ...(config.cluster === 'on' ? {} : { soleNode: { onLost: (why: string) => log.error(why) } }),
    });
  }
  return SqliteStore.open({
    path: config.dbPath,
    synchronous: config.sync,
    searchIndex: config.searchIndex === 'on',
    busyTimeoutMs: config.busyTimeoutMs,
    signedSources,
    // Loud, and no silent restart: what the dead thread had in hand is unknown, so every write is refused from now on.
    onFatal: (err) => log.fatal({ err }, 'the store writer thread died: every write is refused until the relay is restarted'),
    observeBatch,
  });
}
