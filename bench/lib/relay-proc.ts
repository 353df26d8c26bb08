import { mkdirSync, rmSync } from 'node:fs';
import { WS_PATH } from '../../protocol/websocket.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nowMs } from './clock.js';
import { BENCH, freePort, logDir, ROOT, spawnTracked, stopPid, waitHttp } from './proc.js';

export interface RelayProc {
  name: string;
  pid: number;
  port: number;
  url: string;
  wsUrl: string;
  dbPath: string;
  /** Spawn → /healthz answering, ms. */
  startupMs: number;
  logPath: string;
  stop(): Promise<void>;
}

export interface RelayOpts {
  name: string;
  sync?: 'FULL' | 'NORMAL';
  /** Reuse this database (recovery); by default a fresh one in a temp folder. */
  dbPath?: string;
  env?: Record<string, string>;
  cpuProf?: boolean;
  /** Start with --inspect on a free loopback port (memory measurement forces GC through it). */
  inspect?: boolean;
}

/** The load limits a benchmark must lift; everything else is the relay as shipped. */
export const BENCH_RELAY_ENV: Record<string, string> = {
  AGENT_RELAY_RATE_LIMIT: '1000000',
  AGENT_RELAY_RATE_BURST: '1000000',
  AGENT_RELAY_HTTP_RATE_LIMIT: '10000000',
  AGENT_RELAY_HTTP_RATE_BURST: '10000000',
  AGENT_RELAY_LISTEN_WAIT_MS: '0',
  LOG_LEVEL: 'warn',
};

/** The run's scratch folder: set by bench/run.ts and inherited by every worker, removed at the end. */
export function benchTmp(): string {
  return (process.env.BENCH_TMP ??= join(tmpdir(), `agent-relay-bench-${process.pid}`));
}

export function tempDbPath(name: string): string {
  const dir = join(benchTmp(), name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return join(dir, 'relay.db');
}

/** Start the relay as its own process, as `npm start` does: `node --enable-source-maps dist/broker/main.js --port P --db PATH` (run `npm run build` first). */
export async function startRelay(o: RelayOpts): Promise<RelayProc> {
  const port = await freePort();
  const dbPath = o.dbPath ?? tempDbPath(o.name);
  const execArgv = ['--enable-source-maps'];
  if (o.cpuProf) {
    // One folder per relay run: node writes a profile per thread.
    const dir = join(BENCH, 'results', 'prof', `relay-${o.name}-${Date.now()}`);
    mkdirSync(dir, { recursive: true });
    execArgv.push('--cpu-prof', `--cpu-prof-dir=${dir}`);
  }
  if (o.inspect) execArgv.push('--inspect=127.0.0.1:0');
  const env = { ...process.env, ...BENCH_RELAY_ENV, AGENT_RELAY_SYNC: o.sync ?? 'FULL', ...o.env };
  const t0 = nowMs();
  // BENCH_RELAY_ROOT runs the relay of another checkout (e.g. a before/after comparison); default: this one.
  const cwd = process.env.BENCH_RELAY_ROOT ?? ROOT;
  const child = spawnTracked(`relay-${o.name}`, process.execPath, [...execArgv, 'dist/broker/main.js', '--port', String(port), '--db', dbPath], { env, cwd });
  const url = `http://127.0.0.1:${port}`;
  await waitHttp(`${url}/healthz`, 60_000, child);
  const startupMs = nowMs() - t0;
  return {
    name: o.name,
    pid: child.pid!,
    port,
    url,
    wsUrl: `ws://127.0.0.1:${port}${WS_PATH}`,
    dbPath,
    startupMs,
    logPath: join(logDir(), `relay-${o.name}.log`),
    stop: () => stopPid(child.pid!, 15_000),
  };
}
