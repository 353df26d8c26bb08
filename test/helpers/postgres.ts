import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { Test } from 'tap';
import { trackChild, untrackChild } from './child.js';

/*
 * A throwaway PostgreSQL for one test file: `initdb` into a temp folder (trust auth, listening on
 * 127.0.0.1 only, its unix socket in the folder, fsync on), `postgres` started on a free port and
 * stopped by pid, the folder deleted at the end. Each test takes a fresh database from it. Root
 * cannot run PostgreSQL, so as root the server runs as the `postgres` user (Debian's package makes
 * it) over a folder chowned to it.
 */

const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 10_000;

/** The folder with initdb and postgres: PATH first, else the newest /usr/lib/postgresql/N/bin. */
export function postgresBinaries(): string | null {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'postgres'))) return dir;
  }
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return null;
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions.length > 0 ? join(root, versions[0]!, 'bin') : null;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** The uid/gid to run PostgreSQL as: ours, or the `postgres` user's when we are root. */
function serverUser(): { uid: number; gid: number } | null {
  if (process.getuid?.() !== 0) return null;
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    return { uid, gid };
  } catch {
    throw new Error('running as root, and there is no `postgres` user to run PostgreSQL as (initdb refuses root)');
  }
}

export interface TestPostgres {
  readonly port: number;
  /** A connection URL for `database` (the server's own `postgres` database if none). */
  url(database?: string): string;
  /** A new empty database; its URL. */
  freshDatabase(): Promise<string>;
  /** Stop the server (SIGINT: fast shutdown, then SIGKILL after a bound). */
  stop(): Promise<void>;
  /** Start it again, same data folder and port; resolves once it accepts connections. */
  start(): Promise<void>;
  /** Run SQL on the `postgres` database as the superuser. */
  admin<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params?: unknown[]): Promise<pg.QueryResult<R>>;
  /** The server's pid while it runs. */
  readonly pid: number | null;
}

/** Start a PostgreSQL for this test file; it is stopped and its folder deleted when `t` ends. */
export async function startPostgres(t: Test): Promise<TestPostgres> {
  const server = await launchPostgres();
  t.teardown(() => server.shutdown());
  return server;
}

/**
 * Start a throwaway PostgreSQL outside a test (the benchmarks): `shutdown` stops it and deletes
 * its folder (a process that exits first still kills it and deletes the folder).
 */
export async function launchPostgres(): Promise<TestPostgres & { shutdown(): Promise<void> }> {
  const bin = postgresBinaries();
  if (!bin) throw new Error('PostgreSQL is not installed: no initdb on PATH or under /usr/lib/postgresql/*/bin (Debian: apt-get install postgresql)');
  const user = serverUser();
  const dir = mkdtempSync(join(tmpdir(), 'relay-pg-'));
  const data = join(dir, 'data');
  if (user) chownSync(dir, user.uid, user.gid);
  const asUser = user ? { uid: user.uid, gid: user.gid } : {};
  try {
    // --no-sync: initdb's own files need no fsync for a throwaway cluster; the server runs with fsync=on.
    execFileSync(join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--locale=C.UTF-8', '--no-sync'], { ...asUser, stdio: 'pipe', timeout: 60_000 });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    const e = err as { stderr?: Buffer; message: string };
    throw new Error(`initdb failed: ${e.stderr?.toString() || e.message}`);
  }
  const port = await freePort();
  let child: ChildProcess | null = null;
  let log = '';
  let databases = 0;
  const url = (database = 'postgres') => `postgres://postgres@127.0.0.1:${port}/${database}`;

  const accepting = async (): Promise<void> => {
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      const proc = child as ChildProcess | null;
      if (!proc || proc.exitCode !== null || proc.signalCode !== null) throw new Error(`postgres exited (${proc?.exitCode ?? proc?.signalCode}) before accepting connections:\n${log.slice(-2000)}`);
      const c = new pg.Client({ connectionString: url(), connectionTimeoutMillis: 1000 });
      try {
        await c.connect();
        await c.query('SELECT 1');
        return;
      } catch {
        if (Date.now() > deadline) throw new Error(`postgres did not accept connections on 127.0.0.1:${port} within ${START_TIMEOUT_MS} ms:\n${log.slice(-2000)}`);
        await sleep(50);
      } finally {
        await c.end().catch(() => {});
      }
    }
  };

  const start = async (): Promise<void> => {
    if (child) throw new Error('postgres is already running');
    log = '';
    const args = ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=on', '-c', 'synchronous_commit=on', '-c', 'max_connections=100'];
    const proc = spawn(join(bin, 'postgres'), args, { ...asUser, stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    trackChild(proc.pid!);
    const keep = (b: Buffer) => {
      log = (log + b.toString()).slice(-20_000);
    };
    proc.stdout!.on('data', keep);
    proc.stderr!.on('data', keep);
    proc.once('exit', () => untrackChild(proc.pid!));
    await accepting();
  };

  const stop = async (): Promise<void> => {
    const proc = child;
    if (!proc) return;
    child = null;
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill('SIGINT'); // fast shutdown: active transactions are rolled back, then a checkpoint
    const inTime = await Promise.race([exited.then(() => true), sleep(STOP_TIMEOUT_MS).then(() => false)]);
    if (!inTime) {
      proc.kill('SIGKILL');
      await exited;
    }
  };

  const admin = async <R extends pg.QueryResultRow>(sql: string, params: unknown[] = []) => {
    const c = new pg.Client({ connectionString: url(), connectionTimeoutMillis: 5000 });
    await c.connect();
    try {
      return await c.query<R>(sql, params);
    } finally {
      await c.end();
    }
  };

  await start();
  // A test process that dies before its teardown still kills the server (trackChild) and leaves no folder.
  const removeFolder = () => rmSync(dir, { recursive: true, force: true });
  process.once('exit', removeFolder);
  return {
    async shutdown() {
      await stop();
      removeFolder();
      process.off('exit', removeFolder);
    },
    port,
    url,
    async freshDatabase() {
      const name = `relay_${++databases}`;
      await admin(`CREATE DATABASE ${name}`);
      return url(name);
    },
    stop,
    start,
    admin,
    get pid() {
      return child?.pid ?? null;
    },
  };
}
