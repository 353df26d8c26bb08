import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';
import { CONFIG_VARS } from '../../broker/config.js';

/** The repository root: children run from here, so relative script paths work. */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

// Children still running when the test process exits (a crash, a bail-out, tap's timeout) are
// killed with it.
const live = new Set<number>();
let exitHook = false;

/** Kill `pid` (SIGKILL) if it is still running when this test process ends. */
export function trackChild(pid: number): void {
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

/** `pid` has exited (or is someone else's to stop now). */
export function untrackChild(pid: number): void {
  live.delete(pid);
}

/**
 * The transport relays under test use: AGENT_RELAY_TEST_TRANSPORT (auto, uws or node; unset means
 * the relay's default), as the AGENT_RELAY_TRANSPORT setting. scripts/test.sh runs the WebSocket and
 * HTTP suites a second time with `node`.
 */
export function testTransportEnv(): Record<string, string> {
  const transport = process.env.AGENT_RELAY_TEST_TRANSPORT;
  return transport ? { AGENT_RELAY_TRANSPORT: transport } : {};
}

/**
 * The parent's environment minus tap's loaders and every relay setting (a developer's shell may
 * set them), minus whatever `drop` names, plus the test transport, plus `extra`.
 */
export function childEnv(extra: Record<string, string> = {}, drop: (key: string) => boolean = () => false): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k === 'NODE_OPTIONS' || k.startsWith('TAP') || k.startsWith('_TAPJS') || k.startsWith('TS_NODE') || drop(k)) continue;
    env[k] = v;
  }
  for (const v of Object.values(CONFIG_VARS)) delete env[v.env];
  // Under coverage, tap's spawn hook puts its loader back into the child, which then reports the
  // TypeScript files tsx compiled under the same file URLs as the test process's own compilation:
  // merged, the two garble each other (routing.ts read 0% of functions called). Children's
  // coverage is left out instead; the relay most tests start runs in the test process.
  env._TAPJS_PROCESSINFO_COVERAGE_ = '0';
  return { ...env, ...testTransportEnv(), ...extra };
}

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface TsChild {
  pid: number;
  /** Write to the child's stdin. */
  send(text: string): void;
  /** Everything the process wrote so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves once the process has exited and its output is fully read. */
  readonly exited: Promise<ChildExit>;
  /** Send `signal` (default SIGTERM) unless the process is gone. */
  kill(signal?: NodeJS.Signals): void;
  /** Called with each chunk of stdout as it arrives. */
  onStdout(fn: (chunk: string) => void): () => void;
}

/**
 * Run a TypeScript file of this repository as a child process through tsx, like the relay, with
 * the parent's environment minus tap's loaders and every relay setting, plus `env`. SIGKILLed by
 * pid at teardown if still running, and when the test process exits.
 */
export function spawnTs(t: Test, script: string, opts: { args?: string[]; env?: Record<string, string>; nodeArgs?: string[]; user?: { uid: number; gid: number } } = {}): TsChild {
  return spawnChild(t, process.execPath, [...(opts.nodeArgs ?? []), '--import', 'tsx', script, ...(opts.args ?? [])], { env: childEnv(opts.env), ...(opts.user ? { user: opts.user } : {}) });
}

/**
 * After a child exits, how long its output pipes may stay open. A grandchild that inherited them
 * (a shell the program started) holds them open past the exit; reading stops then, so `exited`
 * and the teardown never wait on a process nobody asked about.
 */
const STDIO_DRAIN_MS = 2000;

/**
 * Run any program (from the repository root unless `cwd` says otherwise) with exactly `env`,
 * tracked and killed like spawnTs's children. `group`: the program leads a process group of its
 * own, and signals (the teardown's SIGKILL too) go to the whole group, so whatever it started
 * goes with it.
 */
export function spawnChild(t: Test, command: string, args: string[], opts: { env: NodeJS.ProcessEnv; cwd?: string; user?: { uid: number; gid: number }; group?: boolean }): TsChild {
  const group = opts.group === true;
  const child = spawn(command, args, { cwd: opts.cwd ?? ROOT, env: opts.env, stdio: ['pipe', 'pipe', 'pipe'], detached: group, ...(opts.user ?? {}) });
  const pid = child.pid;
  if (pid === undefined) {
    child.once('error', () => undefined); // reported by the throw below, not as an uncaught event
    throw new Error(`${command} did not start`);
  }
  // A negative pid signals the group (its id is the leader's pid).
  const target = group ? -pid : pid;
  trackChild(target);
  child.stdin.on('error', () => undefined);
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
  // The process has exited (its pid may be reused from now on: no more signals to it).
  let gone = false;
  let done = false;
  // 'close', not 'exit': by then stdout and stderr are fully read; or STDIO_DRAIN_MS after the exit.
  const exited = new Promise<ChildExit>((resolve) => {
    let status: ChildExit | undefined;
    let drain: NodeJS.Timeout | undefined;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(drain);
      untrackChild(target);
      resolve(status!);
    };
    child.once('exit', (code, signal) => {
      gone = true;
      status = { code, signal };
      drain = setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        finish();
      }, STDIO_DRAIN_MS);
    });
    child.once('close', (code, signal) => {
      gone = true;
      status ??= { code, signal };
      finish();
    });
  });
  const kill = (signal: NodeJS.Signals = 'SIGTERM') => {
    // A group outlives its leader while a member runs; its id is not reused until it is empty.
    if (group ? done : gone) return;
    try {
      process.kill(target, signal);
    } catch {
      // already gone
    }
  };
  t.teardown(async () => {
    if (done) return;
    kill('SIGKILL');
    await exited;
  });
  return {
    pid,
    send: (text) => {
      if (!done) child.stdin.write(text);
    },
    stdout: () => out,
    stderr: () => err,
    exited,
    kill,
    onStdout: (fn) => {
      child.stdout.on('data', fn);
      return () => child.stdout.off('data', fn);
    },
  };
}
