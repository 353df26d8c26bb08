import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';
import { CONFIG_VARS } from '../../broker/config.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const READY_TIMEOUT_MS = 20_000;

// Children still running when the test process exits (a crash, a bail-out) are killed with it.
const live = new Set<number>();
let exitHook = false;
function track(pid: number): void {
  live.add(pid);
  if (exitHook) return;
  exitHook = true;
  process.once('exit', () => {
    for (const p of live) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
}

export interface RelayExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface RelayProcess {
  port: number;
  url: string;
  wsUrl: string;
  pid: number;
  /** Everything the process wrote so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves once the process has exited. */
  readonly exited: Promise<RelayExit>;
  /** Send `signal` (default SIGTERM) and resolve with the exit code (null when a signal killed it). */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** SIGKILL: no shutdown code runs. Resolves once the process is gone. */
  kill9(): Promise<RelayExit>;
}

/** Error thrown when the relay exits before it is listening (e.g. it refused its database). */
export class RelayStartError extends Error {
  constructor(
    message: string,
    readonly exit: RelayExit,
    readonly stderr: string,
    readonly stdout: string,
  ) {
    super(message);
  }
}

/**
 * Run the relay as a real child process (`node --import tsx broker/main.ts --port 0 --db DB`),
 * wait for its "listening" log line and parse the port from it. The environment is the parent's
 * minus tap's loaders and any relay setting, plus `env`. The process is SIGKILLed by pid at
 * teardown if it is still running.
 */
export function spawnRelay(t: Test, opts: { dbPath: string; env?: Record<string, string>; args?: string[] }): Promise<RelayProcess> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k === 'NODE_OPTIONS' || k.startsWith('TAP') || k.startsWith('_TAPJS') || k.startsWith('TS_NODE')) continue;
    env[k] = v;
  }
  for (const v of Object.values(CONFIG_VARS)) delete env[v.env];
  Object.assign(env, { LOG_LEVEL: 'info' }, opts.env);

  const child = spawn(process.execPath, ['--import', 'tsx', 'broker/main.ts', '--port', '0', '--db', opts.dbPath, ...(opts.args ?? [])], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const pid = child.pid;
  if (pid !== undefined) track(pid);
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
  let exitInfo: RelayExit | null = null;
  const exited = new Promise<RelayExit>((resolve) => {
    // 'close', not 'exit': by then stdout and stderr are fully read.
    child.once('close', (code, signal) => {
      exitInfo = { code, signal };
      if (pid !== undefined) live.delete(pid);
      resolve(exitInfo);
    });
  });
  const alive = () => exitInfo === null;
  const signal = (sig: NodeJS.Signals) => {
    if (alive() && pid !== undefined) {
      try {
        process.kill(pid, sig);
      } catch {
        // already gone
      }
    }
  };
  t.teardown(async () => {
    if (!alive()) return;
    signal('SIGKILL');
    await exited;
  });

  return new Promise<RelayProcess>((resolve, reject) => {
    if (pid === undefined) {
      reject(new Error('relay process did not start'));
      return;
    }
    let settled = false;
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      signal('SIGKILL');
      reject(new Error(`relay did not log its url within ${READY_TIMEOUT_MS} ms\nstdout: ${out}\nstderr: ${err}`));
    }, READY_TIMEOUT_MS);
    const onData = () => {
      const m = /"url":"http:\/\/127\.0\.0\.1:(\d+)"/.exec(out);
      if (!m || settled) return;
      settled = true;
      clearTimeout(timer);
      child.stdout.off('data', onData);
      const port = Number(m[1]);
      resolve({
        port,
        url: `http://127.0.0.1:${port}`,
        wsUrl: `ws://127.0.0.1:${port}/rpc`,
        pid,
        stdout: () => out,
        stderr: () => err,
        exited,
        stop: async (sig: NodeJS.Signals = 'SIGTERM') => {
          signal(sig);
          return (await exited).code;
        },
        kill9: () => {
          signal('SIGKILL');
          return exited;
        },
      });
    };
    child.stdout.on('data', onData);
    void exited.then((e) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new RelayStartError(`relay exited before listening (code ${e.code}, signal ${e.signal}): ${err.trim()}`, e, err, out));
    });
  });
}
