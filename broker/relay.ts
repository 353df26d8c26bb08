import { join } from 'node:path';
import { CLOSE_CODES } from '../protocol/index.js';
import { createHttpHandler } from '../adapters/http/router.js';
import type { RelayConfig } from './config.js';
import { CallbackDispatcher, DEFAULT_CALLBACK_POLICY, type CallbackPolicy } from './domain/callbacks.js';
import { RelayCore } from './domain/core.js';
import { loadIntegrations } from './integrations.js';
import { createMetrics } from './metrics.js';
import { InboxWaiters } from '../adapters/http/inbox.js';
import { systemClock, type Clock } from './domain/ports.js';
import { Scheduler } from './domain/scheduler.js';
import type { Logger } from './logger.js';
import { PACKAGE_ROOT, RELAY_VERSION } from './package-root.js';
import { SqliteStore } from './store/store.js';
import { RpcDispatcher } from './transport/rpc-dispatch.js';
import { startTransport } from './transport/index.js';


export interface Relay {
  readonly port: number;
  readonly url: string;
  readonly core: RelayCore;
  readonly callbacks: CallbackDispatcher;
  /** Graceful stop: stop accepting, answer what is in flight, close sockets, close the database. */
  close(): Promise<void>;
}

export interface RelayOptions {
  clock?: Clock;
  callbackPolicy?: Partial<CallbackPolicy>;
  /** Interval of SSE keep-alive comments (default 15 s). */
  sseKeepAliveMs?: number;
}

export async function createRelay(config: RelayConfig, log: Logger, options: RelayOptions = {}): Promise<Relay> {
  const integrations = loadIntegrations(config.integrationsPath);
  const store = SqliteStore.open({ path: config.dbPath, synchronous: config.sync, busyTimeoutMs: config.busyTimeoutMs });
  const core = new RelayCore(store, config, log, options.clock ?? systemClock, integrations);
  const callbacks = new CallbackDispatcher(core, (signer) => core.secretFor(signer), { ...DEFAULT_CALLBACK_POLICY, ...options.callbackPolicy });
  core.onCallbackEnqueued = () => callbacks.kick();
  const dispatcher = new RpcDispatcher(core, log.child({ component: 'rpc' }), RELAY_VERSION);
  const scheduler = new Scheduler(core);
  let transport;
  try {
    const waiters = new InboxWaiters(core.notifier);
    const metrics = createMetrics(core, { longPolls: () => waiters.size });
    const http = createHttpHandler({ core, dispatcher, waiters, metrics, sseKeepAliveMs: options.sseKeepAliveMs ?? 15_000, dashboardDir: join(PACKAGE_ROOT, 'dist', 'dashboard') });
    transport = await startTransport({ core, dispatcher, config, log, http });
  } catch (err) {
    store.close();
    throw err;
  }
  scheduler.start();
  callbacks.kick();
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  let closing: Promise<void> | null = null;
  return {
    port: transport.port,
    url: `http://${host}:${transport.port}`,
    core,
    callbacks,
    close: () =>
      (closing ??= (async () => {
        transport.stopListening();
        scheduler.stop();
        callbacks.stop();
        core.queue.close();
        // Let answers to the flushed calls reach their sockets before the sockets close.
        await new Promise((r) => setImmediate(r));
        transport.closeAll(CLOSE_CODES.shutdown, 'relay shutting down: reconnect and resume');
        // SSE streams are live sessions too: end them, or their clients never learn to reconnect.
        for (const s of [...core.sessions.sessions()]) if (s.kind === 'sse') s.close(CLOSE_CODES.shutdown, 'relay shutting down');
        await new Promise((r) => setImmediate(r));
        store.close();
      })()),
  };
}
