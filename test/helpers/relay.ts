import { Writable } from 'node:stream';
import { join } from 'node:path';
import tap, { type Test } from 'tap';
import { loadConfig, type RelayConfig } from '../../broker/config.js';
import { createLogger } from '../../broker/logger.js';
import { createRelay, type Relay, type RelayOptions } from '../../broker/relay.js';
import type { Clock } from '../../broker/domain/ports.js';
import type { CallbackPolicy } from '../../broker/domain/callbacks.js';
import type { CommitObserver } from '../../broker/domain/commit-queue.js';
import type { OpName } from '../../broker/domain/store-port.js';
import { SqliteStore } from '../../broker/store/store.js';
import { testTransportEnv } from './child.js';
import { startPostgres, type TestPostgres } from './postgres.js';

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
  const dbPath = overrides.dbPath ?? join(dir, 'relay.db');
  // A folder or file named by the test is one it restarts on: the same database again.
  const reopens = opts.dir !== undefined || overrides.dbPath !== undefined;
  const config = loadConfig(testTransportEnv(), { port: 0, dbPath, ...(await testStore(reopens ? dbPath : null)), logLevel: 'info', ...overrides });
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

/**
 * Counts the writes of the named kinds that commits answered, for `observeCommit`. Only those:
 * other writes run beside them on their own clock (a live push opens a push span, whose row is
 * written 50 ms on; the presence sweep touches connected agents), and a slow run would count them.
 */
export function writeCounter(...kinds: OpName[]): { observeCommit: CommitObserver; total: () => number; perCommit: number[] } {
  const perCommit: number[] = [];
  return {
    observeCommit: (_ms, writes) => {
      const n = writes.filter((w) => kinds.includes(w.op)).length;
      if (n > 0) perCommit.push(n);
    },
    total: () => perCommit.reduce((a, b) => a + b, 0),
    perCommit,
  };
}

let postgres: Promise<TestPostgres> | null = null;
/** The database standing in for each SQLite file path: a relay restarted on the same file gets the same database. */
const databases = new Map<string, Promise<string>>();

/** True when this test process runs its relays on PostgreSQL (AGENT_RELAY_TEST_STORE=postgres). */
export const onPostgres = process.env.AGENT_RELAY_TEST_STORE === 'postgres';

/**
 * The store AGENT_RELAY_TEST_STORE names for the relays of this test process: unset, each relay's
 * own SQLite file; `postgres`, a fresh database per relay (the same one again for a folder or file
 * the test names, which it restarts on), on one throwaway
 * PostgreSQL per test process (test/helpers/postgres.ts), stopped when the process's tests end.
 * `npm run test:postgres` runs suites so.
 */
async function testStore(reopen: string | null): Promise<Partial<RelayConfig>> {
  if (!onPostgres) return {};
  postgres ??= startPostgres(tap);
  const server = postgres;
  let url = reopen === null ? undefined : databases.get(reopen);
  if (!url) {
    url = server.then((s) => s.freshDatabase());
    if (reopen !== null) databases.set(reopen, url);
  }
  return { store: await url };
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
