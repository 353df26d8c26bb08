import { Writable } from 'node:stream';
import { join } from 'node:path';
import type { Test } from 'tap';
import { loadConfig, type RelayConfig } from '../../broker/config.js';
import { createLogger } from '../../broker/logger.js';
import { createRelay, type Relay, type RelayOptions } from '../../broker/relay.js';
import type { Clock } from '../../broker/domain/ports.js';
import type { CallbackPolicy } from '../../broker/domain/callbacks.js';
import { SqliteStore } from '../../broker/store/store.js';
import { testTransportEnv } from './child.js';

export interface TestRelay extends Relay {
  config: RelayConfig;
  wsUrl: string;
  /** Every log line the relay wrote, parsed. */
  logs: Array<Record<string, unknown>>;
  /** Raw log text, for "never logged" checks. */
  logText: () => string;
}

/**
 * Start a real relay in-process (on the transport AGENT_RELAY_TEST_TRANSPORT names, default auto) on an ephemeral loopback port with its database in the test's
 * own directory; it is closed when the test ends.
 */
export async function startRelay(
  t: Test,
  overrides: Partial<RelayConfig> = {},
  opts: { dir?: string; logs?: Array<Record<string, unknown>>; clock?: Clock; callbackPolicy?: Partial<CallbackPolicy>; sseKeepAliveMs?: number } & Pick<
    RelayOptions,
    'holdCommitWhile' | 'observeCommit'
  > = {},
): Promise<TestRelay> {
  const dir = opts.dir ?? t.testdir();
  const config = loadConfig(testTransportEnv(), { port: 0, dbPath: join(dir, 'relay.db'), logLevel: 'info', ...overrides });
  // Pass `logs` to read them even when start-up fails.
  const logs: Array<Record<string, unknown>> = opts.logs ?? [];
  let raw = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      const text = chunk.toString();
      raw += text;
      for (const line of text.split('\n')) if (line.trim()) logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  const relay = await createRelay(config, createLogger(config.logLevel, sink), {
    ...(opts.clock ? { clock: opts.clock } : {}),
    ...(opts.callbackPolicy ? { callbackPolicy: opts.callbackPolicy } : {}),
    ...(opts.sseKeepAliveMs !== undefined ? { sseKeepAliveMs: opts.sseKeepAliveMs } : {}),
    ...(opts.holdCommitWhile ? { holdCommitWhile: opts.holdCommitWhile } : {}),
    ...(opts.observeCommit ? { observeCommit: opts.observeCommit } : {}),
  });
  t.teardown(() => relay.close());
  return Object.assign(relay, {
    config,
    wsUrl: `ws://127.0.0.1:${relay.port}/rpc`,
    logs,
    logText: () => raw,
  }) as TestRelay;
}

/** A clock tests can move by hand. */
export class ManualClock implements Clock {
  constructor(public t = Date.now()) {}
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
}

/** The SQLite store of a relay started on the default store (tests of SQLite's own behaviour: PRAGMAs, faults). */
export function sqliteStoreOf(relay: Relay): SqliteStore {
  if (!(relay.store instanceof SqliteStore)) throw new Error('this test needs a relay on the SQLite store');
  return relay.store;
}
