import { fork, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nowMs, sleep } from './clock.js';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BENCH = join(ROOT, 'bench');

/** Every process the bench starts, so each is stopped by its pid: at the end, on failure and on Ctrl-C. */
const children = new Map<number, { name: string; child: ChildProcess }>();
let handlersInstalled = false;

export function track(name: string, child: ChildProcess): void {
  if (child.pid === undefined) throw new Error(`${name}: failed to start`);
  children.set(child.pid, { name, child });
  child.once('exit', () => children.delete(child.pid!));
  installHandlers();
}

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', () => killAllSync());
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      process.stderr.write(`\nbench: ${sig}: stopping ${children.size} processes\n`);
      killAllSync();
      if (process.env.BENCH_TMP && !process.env.BENCH_WORKER) rmSync(process.env.BENCH_TMP, { recursive: true, force: true });
      process.exit(130);
    });
  }
}

/** SIGKILL every tracked process by pid (used from exit handlers, which cannot wait). */
export function killAllSync(): void {
  for (const [pid] of children) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  children.clear();
}

/** Run a bench entry point: exit 0 when it resolves; on failure print it, SIGKILL every child, exit 1. */
export function runMain(main: () => Promise<void>): void {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      killAllSync();
      process.exit(1);
    },
  );
}

/** SIGTERM one process by pid, SIGKILL it after `graceMs`; resolves when it has exited. */
export async function stopPid(pid: number, graceMs = 5000): Promise<void> {
  const entry = children.get(pid);
  const exited = entry ? new Promise<void>((r) => (entry.child.exitCode !== null || entry.child.signalCode !== null ? r() : entry.child.once('exit', () => r()))) : null;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    children.delete(pid);
    return;
  }
  const deadline = Date.now() + graceMs;
  if (exited) {
    const t = sleep(graceMs).then(() => 'timeout' as const);
    if ((await Promise.race([exited.then(() => 'done' as const), t])) === 'done') return;
  } else {
    while (Date.now() < deadline) {
      try {
        process.kill(pid, 0);
      } catch {
        return;
      }
      await sleep(50);
    }
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* gone */
  }
  if (exited) await exited;
  children.delete(pid);
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

export function logDir(): string {
  const dir = join(BENCH, 'results', 'logs');
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Spawn a long-running program, logs to bench/results/logs/NAME.log, tracked for cleanup. */
export function spawnTracked(name: string, cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): ChildProcess {
  const log = createWriteStream(join(logDir(), `${name}.log`));
  const child = spawn(cmd, args, { cwd: opts.cwd ?? ROOT, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.pipe(log);
  child.stderr!.pipe(log);
  track(name, child);
  return child;
}

export async function waitHttp(url: string, timeoutMs: number, child?: ChildProcess): Promise<number> {
  const start = performance.now();
  for (;;) {
    if (child && (child.exitCode !== null || child.signalCode !== null)) throw new Error(`process exited (${child.exitCode ?? child.signalCode}) before ${url} answered`);
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (r.ok) return performance.now() - start;
    } catch {
      /* not yet */
    }
    if (performance.now() - start > timeoutMs) throw new Error(`${url} did not answer within ${timeoutMs} ms`);
    await sleep(10);
  }
}

/** CPU seconds (user+system) and resident memory of a process, from /proc. */
export function procStats(pid: number): { cpuSec: number; rssBytes: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) * 1024;
  return { cpuSec: ticks / 100, rssBytes: rss };
}

/** The whole machine's CPU ticks since boot (all cores, from /proc/stat): busy, total, and how many cores. */
function machineTicks(): { busy: number; total: number; cores: number } {
  const lines = readFileSync('/proc/stat', 'utf8').split('\n');
  const n = lines[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = n.slice(0, 8).reduce((a, b) => a + b, 0); // user … steal (guest time is inside user)
  return { busy: total - n[3]! - n[4]!, total, cores: lines.filter((l) => /^cpu\d/.test(l)).length }; // busy: less idle and iowait
}

/**
 * Wait (at most `maxMs`) until the machine is quiet: a `windowMs` window in which fewer than
 * `busyCores` cores were busy. What a scenario leaves running (a peer's checkpoint, a relay's
 * last fsyncs, a load generator's exit) otherwise lands in the next one's figures. Resolves to
 * how long it waited and how busy the last window was (undefined off Linux).
 */
export async function settleMachine(busyCores = 0.3, windowMs = 500, maxMs = 15_000): Promise<{ waitedMs: number; busyCores: number } | undefined> {
  const t0 = nowMs();
  for (;;) {
    const meter = cpuMeter({});
    await sleep(windowMs);
    const share = meter.stop();
    if (!share) return undefined;
    const busy = Math.round(share.machineBusyCores * 100) / 100;
    if (busy < busyCores || nowMs() - t0 >= maxMs) return { waitedMs: Math.round(nowMs() - t0), busyCores: busy };
  }
}

/** CPU used while a piece of work ran, by the processes named and by the whole machine. */
export interface CpuShare {
  /** CPU seconds (user+system) of each process named, all its threads. */
  cpuSec: Record<string, number>;
  /** Busy share of the machine, in cores (2 = both cores of a 2-core machine busy throughout). */
  machineBusyCores: number;
}

/**
 * Start measuring the CPU that processes (by name → pid) and the whole machine spend from now;
 * `stop()` says how much. From /proc: Linux only (elsewhere, and if a process has gone, undefined).
 */
export function cpuMeter(pids: Record<string, number>): { stop(): CpuShare | undefined } {
  const sample = () => {
    try {
      return { procs: Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, procStats(pid).cpuSec])), machine: machineTicks() };
    } catch {
      return undefined;
    }
  };
  const before = sample();
  return {
    stop() {
      const after = sample();
      if (!before || !after) return undefined;
      const ticks = after.machine.total - before.machine.total;
      return {
        cpuSec: Object.fromEntries(Object.keys(pids).map((name) => [name, after.procs[name]! - before.procs[name]!])),
        machineBusyCores: ticks > 0 ? ((after.machine.busy - before.machine.busy) / ticks) * after.machine.cores : 0,
      };
    },
  };
}

// ---------------------------------------------------------------- workers

export interface Worker {
  readonly pid: number;
  call<T = unknown>(cmd: string, args?: unknown, timeoutMs?: number): Promise<T>;
  stop(): Promise<void>;
}

let nextCallId = 1;

/**
 * Fork a bench script as a load-generator process (its own event loop and core time) and talk to
 * it over IPC: `call(cmd, args)` runs the handler the script registered with `serveWorker`.
 */
export function forkWorker(name: string, script: string): Promise<Worker> {
  const child = fork(join(BENCH, script), [], {
    cwd: ROOT,
    execArgv: ['--import', 'tsx', '--max-old-space-size=4096', ...(process.env.BENCH_WORKER_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_WORKER_PROF}`] : [])],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    serialization: 'advanced',
    env: { ...process.env, BENCH_WORKER: name },
  });
  track(name, child);
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void; timer: NodeJS.Timeout }>();
  child.on('message', (m: { id: number; ok: boolean; result?: unknown; error?: string } | { ready: true }) => {
    if ('ready' in m) return;
    const p = pending.get(m.id);
    if (!p) return;
    pending.delete(m.id);
    clearTimeout(p.timer);
    if (m.ok) p.resolve(m.result);
    else p.reject(new Error(`${name}: ${m.error}`));
  });
  child.once('exit', (code, signal) => {
    for (const p of pending.values()) {
      clearTimeout(p.timer);
      p.reject(new Error(`${name} exited (${code ?? signal})`));
    }
    pending.clear();
  });
  const worker: Worker = {
    pid: child.pid!,
    call<T>(cmd: string, args?: unknown, timeoutMs = 120_000): Promise<T> {
      const id = nextCallId++;
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error(`${name}: ${cmd} timed out after ${timeoutMs} ms`));
        }, timeoutMs);
        pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
        child.send({ id, cmd, args });
      });
    },
    stop: () => stopPid(child.pid!, 3000),
  };
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null) => reject(new Error(`${name} exited during start (${code})`));
    child.once('exit', onExit);
    child.once('message', () => {
      child.off('exit', onExit);
      resolve(worker);
    });
  });
}

type Handler = (args: any) => unknown;

/** In a worker script: answer the orchestrator's calls; exits when the orchestrator goes away. */
export function serveWorker(handlers: Record<string, Handler>): void {
  process.on('message', (m: { id: number; cmd: string; args: unknown }) => {
    const h = handlers[m.cmd];
    Promise.resolve()
      .then(() => {
        if (!h) throw new Error(`unknown command ${m.cmd}`);
        return h(m.args);
      })
      .then(
        (result) => process.send!({ id: m.id, ok: true, result }),
        (err: unknown) => process.send!({ id: m.id, ok: false, error: String((err as Error)?.stack ?? err) }),
      );
  });
  process.on('disconnect', () => process.exit(0));
  // Exit on SIGTERM by process.exit, so a --cpu-prof profile (BENCH_WORKER_PROF) is written.
  process.on('SIGTERM', () => process.exit(0));
  process.send!({ ready: true });
}

/** Split `total` items over `parts` workers as evenly as possible. */
export function split(total: number, parts: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < parts; i++) out.push(Math.floor(total / parts) + (i < total % parts ? 1 : 0));
  return out;
}
