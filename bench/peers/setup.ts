import { execFileSync, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, spawnTracked, stopPid } from '../lib/proc.js';
import { benchTmp } from '../lib/relay-proc.js';
import { sleep } from '../lib/clock.js';
import { Socket } from 'node:net';

/**
 * Bench setup: install Debian's nats-server and redis-server when missing, start each on an
 * ephemeral loopback port with its data in a temp folder, and stop each by pid.
 */
const PACKAGES: Record<string, string> = { 'nats-server': 'nats-server', 'redis-server': 'redis-server' };

function which(cmd: string): string | null {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

/** apt-get install what is missing (root on Debian); returns the binaries still missing. */
export function ensureInstalled(log: (s: string) => void = () => {}): string[] {
  const missing = Object.keys(PACKAGES).filter((b) => !which(b));
  if (missing.length > 0) {
    log(`bench setup: installing ${missing.join(', ')} with apt-get`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    try {
      execFileSync('apt-get', ['update', '-qq'], { stdio: 'ignore', env, timeout: 300_000 });
      execFileSync('apt-get', ['install', '-y', '-qq', ...missing.map((b) => PACKAGES[b]!)], { stdio: 'ignore', env, timeout: 600_000 });
    } catch (err) {
      log(`bench setup: apt-get failed (${(err as Error).message.split('\n')[0]}); peers that need it are skipped`);
    }
  }
  return Object.keys(PACKAGES).filter((b) => !which(b));
}

export function version(cmd: 'nats-server' | 'redis-server'): string {
  try {
    const out = execFileSync(cmd, ['--version'], { encoding: 'utf8' });
    return /v=?(\d+\.\d+\.\d+)/.exec(out)?.[1] ?? out.trim().split('\n')[0]!;
  } catch {
    return 'unknown';
  }
}

export interface PeerProc {
  name: string;
  pid: number;
  port: number;
  version: string;
  stop(): Promise<void>;
}

async function waitTcp(port: number, timeoutMs: number, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`exited (${child.exitCode ?? child.signalCode}) before listening on ${port}: see bench/results/logs/`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = new Socket();
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
      s.connect(port, '127.0.0.1');
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await sleep(25);
  }
}

function dataDir(name: string): string {
  const dir = join(benchTmp(), name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** nats-server with JetStream (file storage) on 127.0.0.1:PORT. */
export async function startNats(): Promise<PeerProc> {
  const port = await freePort();
  const dir = dataDir('nats');
  const child = spawnTracked('nats-server', 'nats-server', ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir]);
  await waitTcp(port, 15_000, child);
  return { name: 'nats-server', pid: child.pid!, port, version: version('nats-server'), stop: () => stopPid(child.pid!) };
}

/**
 * redis-server on 127.0.0.1:PORT, no RDB snapshots, append-only file with `appendfsync everysec`
 * (its usual durable setting; the durable-publish scenario also measures `always`).
 */
export async function startRedis(): Promise<PeerProc> {
  const port = await freePort();
  const dir = dataDir('redis');
  const child = spawnTracked('redis-server', 'redis-server', [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--dir',
    dir,
    '--save',
    '',
    '--appendonly',
    'yes',
    '--appendfsync',
    'everysec',
    '--daemonize',
    'no',
    '--protected-mode',
    'yes',
    '--maxclients',
    '20000',
    '--client-output-buffer-limit',
    'pubsub',
    '64mb',
    '32mb',
    '60',
  ]);
  await waitTcp(port, 15_000, child);
  return { name: 'redis-server', pid: child.pid!, port, version: version('redis-server'), stop: () => stopPid(child.pid!) };
}

// `npm run bench:setup`: install, start both, print where they listen, stop them.
const isEntry = process.argv[1]?.endsWith('setup.ts');
if (isEntry) {
  (async () => {
    const missing = ensureInstalled((s) => console.log(s));
    if (missing.length) console.log(`still missing: ${missing.join(', ')}`);
    const peers = [];
    if (!missing.includes('nats-server')) peers.push(await startNats());
    if (!missing.includes('redis-server')) peers.push(await startRedis());
    for (const p of peers) console.log(`${p.name} (${p.version}) pid ${p.pid} on 127.0.0.1:${p.port}`);
    for (const p of peers) await p.stop();
    rmSync(benchTmp(), { recursive: true, force: true });
    console.log('stopped');
  })().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
