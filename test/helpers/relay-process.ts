import type { Test } from 'tap';
import { type ChildExit, spawnTs } from './child.js';

const READY_TIMEOUT_MS = 20_000;

export type RelayExit = ChildExit;

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
  const child = spawnTs(t, 'broker/main.ts', { args: ['--port', '0', '--db', opts.dbPath, ...(opts.args ?? [])], env: { LOG_LEVEL: 'info', ...opts.env } });
  const { pid, exited } = child;
  let stopping = false;
  return new Promise<RelayProcess>((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      stopping = true;
      child.kill('SIGKILL');
      reject(new Error(`relay did not log its url within ${READY_TIMEOUT_MS} ms\nstdout: ${child.stdout()}\nstderr: ${child.stderr()}`));
    }, READY_TIMEOUT_MS);
    const stopWatching = child.onStdout(() => {
      const m = /"url":"http:\/\/127\.0\.0\.1:(\d+)"/.exec(child.stdout());
      if (!m || settled) return;
      settled = true;
      clearTimeout(timer);
      stopWatching();
      const port = Number(m[1]);
      resolve({
        port,
        url: `http://127.0.0.1:${port}`,
        wsUrl: `ws://127.0.0.1:${port}/rpc`,
        pid,
        stdout: child.stdout,
        stderr: child.stderr,
        exited,
        stop: async (sig: NodeJS.Signals = 'SIGTERM') => {
          stopping = true;
          child.kill(sig);
          return (await exited).code;
        },
        kill9: () => {
          stopping = true;
          child.kill('SIGKILL');
          return exited;
        },
      });
    });
    void exited.then((e) => {
      if (settled) {
        // A relay that dies while a test talks to it shows up as "socket closed 1006" in a later
        // call: fail here, saying why it died. The signals tests send (SIGTERM, SIGKILL) are not news.
        if (!stopping && e.signal !== 'SIGKILL' && e.signal !== 'SIGTERM') {
          t.fail(`relay pid ${pid} exited by itself (code ${e.code}, signal ${e.signal}); its last output:\n${child.stdout().slice(-2000)}\n${child.stderr().slice(-2000)}`);
        }
        return;
      }
      settled = true;
      clearTimeout(timer);
      reject(new RelayStartError(`relay exited before listening (code ${e.code}, signal ${e.signal}): ${child.stderr().trim()}`, e, child.stderr(), child.stdout()));
    });
  });
}
