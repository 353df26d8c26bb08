import type { FsyncCeiling, SqliteCeiling, SqliteCeilingArgs } from '../ceilings/sqlite.js';
import { nowMs, sleep } from '../lib/clock.js';
import type { BenchContext } from '../lib/context.js';
import { loadDriver, type Endpoint } from '../lib/drivers.js';
import { mergeHists, summarize, type Latency } from '../lib/hist.js';
import { commitShare, describeCommits, scrapeCommitSums, type CommitShare } from '../lib/commit-share.js';
import { cpuMeter, forkWorker, split, type Worker } from '../lib/proc.js';
import { startRelay } from '../lib/relay-proc.js';
import { RpcWs } from '../lib/rpc-ws.js';
import { Redis } from 'ioredis';

export interface DurableRun {
  name: string;
  system: string;
  durability: string;
  publishers: number;
  ackedPerSec: number;
  latency: Latency;
  errors: number;
  firstError?: string;
  /** CPU per acknowledged send while the run's window lasted (Linux; absent in runs before 2026-12-07). */
  cpu?: DurableCpu;
  /** The relay on SQLite: where its group commits spent their time, from its /metrics (absent before 2026-12-07's second session). */
  commits?: CommitShare;
}

export interface DurableCpu {
  /** The server's process (all its threads: the relay's writer too); for the relay on PostgreSQL, the relay alone. */
  serverUsPerAck: number;
  /** The load generators' processes together. */
  generatorsUsPerAck: number;
  /** How many of the machine's cores were busy, on average (everything on the machine). */
  machineBusyCores: number;
}

export interface DurableResult {
  runs: DurableRun[];
  /** Raw better-sqlite3 commits of the same rows: the disk's limit, by sync mode and batch. */
  sqlite: SqliteCeiling[];
  /** The same rows as a fan-out message to N recipients (message + N queued + N pushed), batched. */
  sqliteFanout: SqliteCeiling[];
  /** Raw fdatasync of small appends beside the relay's databases (absent in runs before 2026-12-02). */
  fsync?: FsyncCeiling;
}

async function drive(ctx: BenchContext, workers: Worker[], ep: Endpoint, serverPid: number, name: string, durability: string): Promise<DurableRun> {
  const d = ctx.cfg.durable;
  const shares = split(d.publishers, workers.length);
  await Promise.all(workers.map((w, i) => w.call('open', { endpoint: ep, count: shares[i] })));
  const startAt = nowMs() + 300;
  const running = Promise.all(
    workers.map((w) => w.call<{ acked: number; errors: number; firstError?: string; hist: string }>('run', { window: d.window, durationMs: d.durationMs, startAt }, d.durationMs + 60_000)),
  );
  // Measured from when the publishers start: what a send costs the server and the load generators.
  await sleep(startAt - nowMs());
  const meter = cpuMeter({ server: serverPid, ...Object.fromEntries(workers.map((w, i) => [`generator${i}`, w.pid])) });
  const outs = await running;
  const share = meter.stop();
  await Promise.all(workers.map((w) => w.call('close')));
  const acked = outs.reduce((n, o) => n + o.acked, 0);
  const perAck = (sec: number) => (acked > 0 ? Math.round((sec / acked) * 1e6 * 10) / 10 : 0);
  const errors = outs.reduce((n, o) => n + o.errors, 0);
  const run: DurableRun = {
    name,
    system: ep.system,
    durability,
    publishers: d.publishers,
    ackedPerSec: Math.round(acked / (d.durationMs / 1000)),
    latency: summarize(mergeHists(outs.map((o) => o.hist))),
    errors,
    ...(outs.find((o) => o.firstError) ? { firstError: outs.find((o) => o.firstError)!.firstError! } : {}),
    ...(share
      ? {
          cpu: {
            serverUsPerAck: perAck(share.cpuSec.server!),
            generatorsUsPerAck: perAck(workers.reduce((sum, _, i) => sum + share.cpuSec[`generator${i}`]!, 0)),
            machineBusyCores: Math.round(share.machineBusyCores * 100) / 100,
          },
        }
      : {}),
  };
  const cpu = run.cpu ? `  CPU/ack: server ${run.cpu.serverUsPerAck} µs, load ${run.cpu.generatorsUsPerAck} µs; ${run.cpu.machineBusyCores} cores busy` : '';
  ctx.log(`  ${name.padEnd(34)} ${String(run.ackedPerSec).padStart(7)} acked/s  p50 ${run.latency.p50} ms  p99 ${run.latency.p99} ms${cpu}${errors ? `  errors ${errors} (${run.firstError})` : ''}`);
  return run;
}

export async function runDurable(ctx: BenchContext): Promise<DurableResult> {
  const workers = [await forkWorker('publish-1', 'scenarios/publish-worker.ts'), await forkWorker('publish-2', 'scenarios/publish-worker.ts')];
  const runs: DurableRun[] = [];
  const sqlite: SqliteCeiling[] = [];
  const sqliteFanout: SqliteCeiling[] = [];
  let fsync: FsyncCeiling | undefined;
  try {
    for (const sync of ['FULL', 'NORMAL'] as const) {
      const relay = await startRelay({ name: `durable-${sync}`, sync, cpuProf: ctx.cpuProf });
      try {
        // The sink: a registered agent, not connected. Every send is a message row plus its queued delivery.
        const rpc = await RpcWs.connect(relay.wsUrl);
        await rpc.call('agent/register', { id: 'sink' });
        await rpc.close();
        const before = await scrapeCommitSums(relay.url);
        const run = await drive(
          ctx,
          workers,
          { system: 'relay', url: relay.wsUrl, topic: 'durable', target: 'sink' },
          relay.pid,
          `relay message/send, synchronous=${sync}`,
          `SQLite WAL synchronous=${sync}`,
        );
        // Over the whole drive (connecting and closing too: a few commits more than the window's).
        const commits = commitShare(before, await scrapeCommitSums(relay.url), ctx.cfg.durable.durationMs / 1000);
        if (commits) {
          run.commits = commits;
          ctx.log(`    ${describeCommits(commits)}`);
        }
        runs.push(run);
      } finally {
        await relay.stop();
      }
    }
    if (ctx.peers.postgres) {
      // The same relay on its PostgreSQL store (issue 18): one node, a fresh database.
      const relay = await startRelay({ name: 'durable-postgres', env: { AGENT_RELAY_STORE: await ctx.peers.postgres.freshDatabase() }, cpuProf: ctx.cpuProf });
      try {
        const rpc = await RpcWs.connect(relay.wsUrl);
        await rpc.call('agent/register', { id: 'sink' });
        await rpc.close();
        runs.push(
          await drive(
            ctx,
            workers,
            { system: 'relay', url: relay.wsUrl, topic: 'durable', target: 'sink' },
            relay.pid,
            'relay message/send, PostgreSQL store',
            `PostgreSQL ${ctx.peers.postgres.version} synchronous_commit=on`,
          ),
        );
      } finally {
        await relay.stop();
      }
    }
    if (ctx.peers.nats) {
      const ep: Endpoint = { system: 'jetstream', port: ctx.peers.nats.port, topic: 'durable' };
      await (await loadDriver('jetstream')).prepare!(ep);
      runs.push(await drive(ctx, workers, ep, ctx.peers.nats.pid, 'NATS JetStream publish (file)', 'file store, default sync'));
    }
    if (ctx.peers.redis) {
      const admin = new Redis({ host: '127.0.0.1', port: ctx.peers.redis.port });
      for (const fsync of ['everysec', 'always']) {
        await admin.config('SET', 'appendfsync', fsync);
        runs.push(
          await drive(
            ctx,
            workers,
            { system: 'redis-streams', port: ctx.peers.redis.port, topic: `durable-${fsync}` },
            ctx.peers.redis.pid,
            `Redis XADD, appendfsync ${fsync}`,
            `AOF appendfsync ${fsync}`,
          ),
        );
      }
      await admin.config('SET', 'appendfsync', 'everysec');
      admin.disconnect();
    }
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
  }

  const sq = await forkWorker('sqlite-ceiling', 'ceilings/sqlite.ts');
  try {
    const ms = ctx.profile === 'quick' ? 1500 : 5000;
    fsync = await sq.call<FsyncCeiling>('measureFsync', { syncs: 200, bytesPerAppend: 200 });
    ctx.log(`  raw fdatasync, 200-byte appends ×${fsync.syncs}  ${fsync.syncsPerSec}/s  p50 ${fsync.latency.p50} ms  p99 ${fsync.latency.p99} ms`);
    for (const sync of ['FULL', 'NORMAL'] as const) {
      for (const msgsPerCommit of [1, 250]) {
        const r = await sq.call<SqliteCeiling>('measure', { sync, recipients: 1, msgsPerCommit, pushed: false, durationMs: ms } satisfies SqliteCeilingArgs);
        sqlite.push(r);
        ctx.log(
          `  raw better-sqlite3 ${sync.padEnd(6)} ${String(msgsPerCommit).padStart(4)} msg/commit  ${String(r.msgsPerSec).padStart(7)} msgs/s  ${r.rowsPerSec} rows/s  ${r.commitsPerSec} commits/s`,
        );
      }
    }
    for (const n of ctx.cfg.fanout.subscriberCounts) {
      // About what the relay's group commit holds at these rates (a commit per few ms).
      const msgsPerCommit = 10;
      const r = await sq.call<SqliteCeiling>('measure', { sync: 'FULL', recipients: n, msgsPerCommit, pushed: true, durationMs: ms } satisfies SqliteCeilingArgs);
      sqliteFanout.push(r);
      ctx.log(`  raw better-sqlite3 fan-out rows N=${String(n).padEnd(4)} ${String(r.msgsPerSec).padStart(7)} msgs/s = ${r.msgsPerSec * n} deliveries/s  (${r.rowsPerSec} rows/s)`);
    }
  } finally {
    await sq.stop();
  }
  return { runs, sqlite, sqliteFanout, ...(fsync ? { fsync } : {}) };
}
