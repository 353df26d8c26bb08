/**
 * Standalone benchmark (issue 16, item 8): three ways to keep synchronous=FULL durability for
 * acknowledgements while the event loop does or does not wait for the fsync.
 *
 *   A  today: better-sqlite3, synchronous=FULL, BEGIN IMMEDIATE...COMMIT on the main thread.
 *   B  a worker_threads writer owns the connection (FULL); the main thread posts batches of plain
 *      objects and awaits the reply; pipeline depth 1 (one message in flight, the next accumulates);
 *      a second, read-only connection stays on the main thread.
 *   C  synchronous=NORMAL on the main thread; after COMMIT an async fs.fdatasync() of the -wal file
 *      (libuv pool, a second fd); a batch is acknowledged only once a sync that started after its
 *      COMMIT returned; later batches may commit while a sync is in flight; acks stay in order.
 *
 * Not wired into bench/run.ts. Usage:
 *   npx tsx bench/durability-options.ts [--design A|B|C|X|Y|fsync|all] [--dir DIR] [--seconds S]
 *                                       [--sizes 1,10,100,1000] [--clients 2] [--ack-socket] [--marker]
 * --seconds is per batch size (default 3.5, so one design stays under 20 s).
 * --ack-socket writes "ACK <batch>\n" to a unix socket per acknowledged batch and --marker puts
 * "MARK-<batch>-" in every row body: both exist for the strace ordering check (bench/DURABILITY.md).
 */
import Database from 'better-sqlite3';
import { closeSync, fdatasync, fdatasyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';

interface Row {
  from_id: string;
  to_target: string;
  channel: string;
  body: string;
  thread_id: number;
  created_at: number;
}

interface Design {
  name: string;
  /** Resolves once the batch is committed and covered by a completed sync. */
  submit(rows: Row[]): Promise<void>;
  close(): Promise<void>;
  extra?(): string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS messages (
  id INTEGER PRIMARY KEY AUTOINCREMENT, from_id TEXT NOT NULL, to_target TEXT NOT NULL,
  channel TEXT, body TEXT NOT NULL, thread_id INTEGER NOT NULL, created_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS messages_thread ON messages (thread_id, id);`;
const INSERT = 'INSERT INTO messages (from_id, to_target, channel, body, thread_id, created_at) VALUES (?, ?, ?, ?, ?, ?)';

function open(path: string, sync: 'FULL' | 'NORMAL'): Database.Database {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${sync}`);
  if (db.pragma('synchronous', { simple: true }) !== (sync === 'FULL' ? 2 : 1)) throw new Error('synchronous not set');
  db.exec(SCHEMA);
  return db;
}

/**
 * One transaction per group of ops, a savepoint per op (what WriteQueue does today): better-sqlite3
 * turns a nested transaction() call into a SAVEPOINT.
 */
function groupTx(db: Database.Database): (batches: Row[][]) => void {
  const ins = db.prepare(INSERT);
  const op = db.transaction((rows: Row[]) => {
    for (const r of rows) ins.run(r.from_id, r.to_target, r.channel, r.body, r.thread_id, r.created_at);
  });
  const group = db.transaction((batches: Row[][]) => {
    for (const rows of batches) op(rows);
  });
  return (batches) => group.immediate(batches);
}

/** Ops submitted in the same event-loop turn share one commit, run in a setImmediate (WriteQueue). */
function turnGrouper(commit: (batches: Row[][]) => void, after: (n: number) => Promise<void>) {
  let pending: Array<{ rows: Row[]; resolve: () => void; reject: (e: unknown) => void }> = [];
  let scheduled = false;
  const stats = { txns: 0, ops: 0 };
  const flush = (): void => {
    scheduled = false;
    const group = pending;
    pending = [];
    try {
      commit(group.map((g) => g.rows));
    } catch (e) {
      for (const g of group) g.reject(e);
      return;
    }
    stats.txns++;
    stats.ops += group.length;
    after(group.length).then(() => {
      for (const g of group) g.resolve();
    });
  };
  return {
    stats,
    submit(rows: Row[]): Promise<void> {
      return new Promise<void>((resolve, reject) => {
        pending.push({ rows, resolve, reject });
        if (!scheduled) {
          scheduled = true;
          setImmediate(flush);
        }
      });
    },
  };
}

/** A: the write queue's shape today: FULL, the commit (and its fsync) blocks the event loop. */
function designA(path: string): Design {
  const db = open(path, 'FULL');
  const g = turnGrouper(groupTx(db), () => Promise.resolve());
  return {
    name: 'A main-thread FULL',
    submit: g.submit,
    async close() {
      db.close();
    },
    extra() {
      return `${(g.stats.ops / g.stats.txns).toFixed(1)} ops/commit`;
    },
  };
}

/** The writer thread of B. Plain CommonJS so it runs as an eval worker without a TS loader. */
const WORKER_SRC = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.sqlite);
const db = new Database(workerData.path);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = FULL');
if (db.pragma('synchronous', { simple: true }) !== 2) throw new Error('synchronous not FULL');
db.exec(workerData.schema);
const ins = db.prepare(workerData.insert);
const op = db.transaction((rows) => {
  for (const r of rows) ins.run(r.from_id, r.to_target, r.channel, r.body, r.thread_id, r.created_at);
});
// One message = one group commit; a savepoint per op so one refused op does not undo the others.
const group = db.transaction((batches) => batches.map((rows) => {
  try { op(rows); return 0; } catch (e) { return String((e && e.code) || e); }
}));
parentPort.on('message', (msg) => {
  if (msg === 'close') { db.close(); parentPort.postMessage('closed'); return; }
  let out;
  try { out = group.immediate(msg.batches); } catch (e) { out = msg.batches.map(() => String((e && e.code) || e)); }
  // COMMIT returned: under FULL its frames were fsynced before the wal-index header was published.
  parentPort.postMessage({ seq: msg.seq, out });
});
`;

function designB(path: string): Design {
  // Create the schema first so the read-only connection can open.
  open(path, 'FULL').close();
  const require = createRequire(import.meta.url);
  const worker = new Worker(WORKER_SRC, {
    eval: true,
    workerData: { path, sqlite: require.resolve('better-sqlite3'), schema: SCHEMA, insert: INSERT },
  });
  const reader = new Database(path, { readonly: true });
  const lastId = reader.prepare('SELECT max(id) AS m FROM messages');
  type Waiter = { rows: Row[]; resolve: () => void; reject: (e: unknown) => void };
  let queue: Waiter[] = [];
  let inflight: Waiter[] | null = null;
  let seq = 0;
  let postNs = 0;
  let posts = 0;
  let postedBatches = 0;
  const pump = (): void => {
    if (inflight || queue.length === 0) return;
    inflight = queue;
    queue = [];
    const t0 = process.hrtime.bigint();
    worker.postMessage({ seq: ++seq, batches: inflight.map((w) => w.rows) });
    postNs += Number(process.hrtime.bigint() - t0);
    posts++;
    postedBatches += inflight.length;
  };
  let closed: (() => void) | null = null;
  worker.on('message', (msg: { seq: number; out: Array<0 | string> } | 'closed') => {
    if (msg === 'closed') return closed?.();
    const done = inflight!;
    inflight = null;
    lastId.get(); // the main thread's read connection sees the commit (after the worker's fsync)
    done.forEach((w, i) => {
      if (msg.out[i] === 0) w.resolve();
      else w.reject(new Error(String(msg.out[i])));
    });
    pump();
  });
  worker.on('error', (e) => {
    console.error('writer thread failed', e);
    process.exit(1);
  });
  return {
    name: 'B writer thread FULL',
    submit(rows) {
      return new Promise<void>((resolve, reject) => {
        queue.push({ rows, resolve, reject });
        pump();
      });
    },
    async close() {
      await new Promise<void>((r) => {
        closed = r;
        worker.postMessage('close');
      });
      await worker.terminate();
      reader.close();
    },
    extra() {
      return `${(postedBatches / posts).toFixed(1)} ops/commit; postMessage ${(postNs / posts / 1000).toFixed(0)} us/msg = ${(postNs / postedBatches / 1000).toFixed(0)} us/op`;
    },
  };
}

/** C: NORMAL commit on the main thread, then an async fdatasync of the -wal on the libuv pool. */
function designC(path: string, early = false): Design {
  const db = open(path, 'NORMAL');
  // The -wal exists once the schema was written; it stays the same inode while a connection is open
  // (restart rewrites it from offset 0, TRUNCATE/journal_size_limit ftruncate it, only the last close
  // unlinks it). SQLite never syncs it under NORMAL at commit, so its directory entry is synced here once.
  const walFd = openSync(`${path}-wal`, 'r');
  const dirFd = openSync(join(path, '..'), 'r');
  fdatasyncSync(dirFd);
  closeSync(dirFd);
  let committed = 0; // commits done
  let synced = 0; // every commit <= synced is covered by a completed sync
  let syncing = false;
  let syncs = 0;
  const waiters: Array<{ seq: number; resolve: () => void }> = [];
  const startSync = (): void => {
    if (syncing || synced === committed) return;
    syncing = true;
    const target = committed; // this sync starts after commit #target's frames were written (COMMIT returned)
    syncs++;
    if (early) {
      // Y, the second negative control: acknowledges once the sync is issued, not once it returned.
      setImmediate(() => {
        while (waiters.length > 0 && waiters[0]!.seq <= target) waiters.shift()!.resolve();
      });
    }
    fdatasync(walFd, (err) => {
      syncing = false;
      if (err) {
        console.error('fdatasync failed: nothing after the last sync may be acknowledged', err);
        process.exit(1);
      }
      synced = target;
      while (waiters.length > 0 && waiters[0]!.seq <= synced) waiters.shift()!.resolve();
      startSync();
    });
  };
  // NORMAL: COMMIT writes the frames and publishes the wal-index header, no fsync (sqlite3WalFrames).
  const g = turnGrouper(groupTx(db), () => {
    const seq = ++committed;
    const p = new Promise<void>((resolve) => waiters.push({ seq, resolve }));
    startSync();
    return p;
  });
  return {
    name: early ? 'Y C acking at sync start (unsafe)' : 'C NORMAL + async fdatasync',
    submit: g.submit,
    async close() {
      while (syncing || synced < committed) await new Promise((r) => setTimeout(r, 1));
      closeSync(walFd);
      db.close();
    },
    extra() {
      return `${(g.stats.ops / g.stats.txns).toFixed(1)} ops/commit, ${(committed / syncs).toFixed(1)} commits/fdatasync`;
    },
  };
}

/** X, a negative control for the trace check: NORMAL, acknowledged at COMMIT, never synced. */
function designX(path: string): Design {
  const db = open(path, 'NORMAL');
  const g = turnGrouper(groupTx(db), () => Promise.resolve());
  return {
    name: 'X NORMAL, no sync (unsafe)',
    submit: g.submit,
    async close() {
      db.close();
    },
  };
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

interface Result {
  design: string;
  size: number;
  rowsPerS: number;
  p50: number;
  p99: number;
  eldP99: number;
  eldMax: number;
  elu: number;
  extra: string;
}

let batchCounter = 0;
function makeRows(n: number, marker: boolean): Row[] {
  const b = ++batchCounter;
  const rows: Row[] = [];
  const pad = 'x'.repeat(150);
  for (let i = 0; i < n; i++) {
    rows.push({
      from_id: 'agent-bench-01',
      to_target: 'channel:bench',
      channel: 'bench',
      body: marker ? `MARK-${b}-${i} ${pad}` : `${b}:${i} ${pad}`,
      thread_id: b,
      created_at: Date.now(),
    });
  }
  return rows;
}

/**
 * Closed loop: --clients producers, each with one op of `size` rows outstanding. Each design groups
 * what is waiting the way it would behind apply(ops): A and C per event-loop turn, B per message.
 */
async function runOne(mk: (path: string) => Design, dir: string, size: number, seconds: number, opts: { marker: boolean; ack: net.Socket | null; clients: number }): Promise<Result> {
  const path = join(dir, `d-${Math.random().toString(36).slice(2)}.db`);
  const d = mk(path);
  const lat: number[] = [];
  let rows = 0;
  const h = monitorEventLoopDelay({ resolution: 1 });
  // Warm up one batch outside the window.
  await d.submit(makeRows(size, opts.marker));
  h.enable();
  const elu0 = performance.eventLoopUtilization();
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  const client = async (): Promise<void> => {
    while (performance.now() < end) {
      const batch = makeRows(size, opts.marker);
      const id = batch[0]!.thread_id;
      const s = performance.now();
      await d.submit(batch);
      lat.push(performance.now() - s);
      rows += size;
      if (opts.ack) opts.ack.write(`ACK ${id}\n`);
    }
  };
  await Promise.all(Array.from({ length: opts.clients }, client));
  const wall = performance.now() - t0;
  const elu = performance.eventLoopUtilization(elu0);
  h.disable();
  const extra = d.extra?.() ?? '';
  await d.close();
  for (const suffix of ['', '-wal', '-shm']) rmSync(path + suffix, { force: true });
  lat.sort((a, b) => a - b);
  return {
    design: d.name,
    size,
    rowsPerS: (rows / wall) * 1000,
    p50: pct(lat, 50),
    p99: pct(lat, 99),
    eldP99: h.percentile(99) / 1e6,
    eldMax: h.max / 1e6,
    elu: elu.utilization,
    extra,
  };
}

function rawFsync(dir: string, runs = 200): string {
  const path = join(dir, 'fsync-probe');
  const fd = openSync(path, 'w');
  const buf = Buffer.alloc(200, 'y');
  const t: number[] = [];
  for (let i = 0; i < runs; i++) {
    writeSync(fd, buf);
    const s = performance.now();
    fdatasyncSync(fd);
    t.push(performance.now() - s);
  }
  closeSync(fd);
  rmSync(path, { force: true });
  t.sort((a, b) => a - b);
  return `raw fdatasync of a 200-byte append (${runs} runs): p50 ${pct(t, 50).toFixed(2)} ms, p99 ${pct(t, 99).toFixed(2)} ms, max ${t[t.length - 1]!.toFixed(2)} ms`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      design: { type: 'string', default: 'all' },
      dir: { type: 'string' },
      seconds: { type: 'string', default: '3.5' },
      sizes: { type: 'string', default: '1,10,100,1000' },
      'ack-socket': { type: 'boolean', default: false },
      marker: { type: 'boolean', default: false },
      clients: { type: 'string', default: '2' },
    },
  });
  const dir = mkdtempSync(join(values.dir ?? tmpdir(), 'durab-'));
  const seconds = Number(values.seconds);
  const sizes = values.sizes!.split(',').map(Number);
  const designs: Record<string, (p: string) => Design> = { A: designA, B: designB, C: (p) => designC(p), X: designX, Y: (p) => designC(p, true) };
  const which = values.design === 'all' ? ['fsync', 'A', 'B', 'C'] : values.design!.split(',');
  let ack: net.Socket | null = null;
  let server: net.Server | null = null;
  if (values['ack-socket']) {
    const sock = join(dir, 'ack.sock');
    server = net.createServer((s) => s.resume());
    await new Promise<void>((r) => server!.listen(sock, r));
    ack = net.connect(sock);
    await new Promise<void>((r) => ack!.once('connect', r));
  }
  console.log(`dir ${dir} (pid ${process.pid}), ${values.clients} clients, ${seconds} s per size`);
  const results: Result[] = [];
  for (const w of which) {
    if (w === 'fsync') {
      console.log(rawFsync(dir));
      continue;
    }
    for (const size of sizes) {
      const r = await runOne(designs[w]!, dir, size, seconds, { marker: values.marker!, ack, clients: Number(values.clients) });
      results.push(r);
      console.error(`${r.design} x${size}: ${r.rowsPerS.toFixed(0)} rows/s`);
    }
  }
  if (results.length > 0) {
    console.log('| design | rows/op | rows/s | ack p50 ms | ack p99 ms | loop delay p99 ms | loop delay max ms | main thread busy | notes |');
    console.log('|---|---:|---:|---:|---:|---:|---:|---:|---|');
    for (const r of results) {
      console.log(
        `| ${r.design} | ${r.size} | ${r.rowsPerS.toFixed(0)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${r.eldP99.toFixed(2)} | ${r.eldMax.toFixed(2)} | ${(r.elu * 100).toFixed(0)}% | ${r.extra} |`,
      );
    }
  }
  ack?.end();
  server?.close();
  rmSync(dir, { recursive: true, force: true });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
