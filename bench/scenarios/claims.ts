import Database from 'better-sqlite3';
import { nowMs, sleep } from '../lib/clock.js';
import type { BenchContext } from '../lib/context.js';
import { mergeHists, summarize, type Latency } from '../lib/hist.js';
import { commitShare, describeClaimWrites, scrapeCommitSums, type CommitShare } from '../lib/commit-share.js';
import { cpuMeter, forkWorker } from '../lib/proc.js';
import { startRelay } from '../lib/relay-proc.js';
import { RpcWs } from '../lib/rpc-ws.js';

export interface ClaimsResult {
  claimers: number;
  tasks: number;
  contention: number;
  claimsPerSec: number;
  attemptsPerSec: number;
  attempts: number;
  conflicts: number;
  errors: number;
  /** Tasks two claimers both won, from the claimers' answers. */
  doubleClaims: number;
  /** Tasks with more than one task.claimed event in the database after the run. */
  doubleClaimsInDb: number;
  claimedInDb: number;
  unclaimed: number;
  createPerSec: number;
  latency: Latency;
  firstError?: string;
  /** Where the race's group commits spent their time, and how many writes reached the store (absent before 2026-12-07's second session). */
  commits?: CommitShare;
  /** CPU per won claim during the race (Linux; absent before 2026-12-08). */
  cpu?: ClaimsCpu;
}

export interface ClaimsCpu {
  /** The relay's process, all its threads. */
  serverUsPerClaim: number;
  /** The two claimer processes together. */
  generatorsUsPerClaim: number;
  /** How many of the machine's cores were busy, on average (everything on the machine). */
  machineBusyCores: number;
}

export async function runClaims(ctx: BenchContext): Promise<ClaimsResult> {
  const c = ctx.cfg.claims;
  const relay = await startRelay({ name: 'claims', cpuProf: ctx.cpuProf });
  const workers = [await forkWorker('claims-1', 'scenarios/claims-worker.ts'), await forkWorker('claims-2', 'scenarios/claims-worker.ts')];
  let result: Omit<ClaimsResult, 'doubleClaimsInDb' | 'claimedInDb'>;
  try {
    // Tasks targeted at a capability no agent has: claimable, announced to nobody.
    const rpc = await RpcWs.connect(relay.wsUrl);
    const t0 = nowMs();
    const batches = [];
    for (let i = 0; i < c.tasks; i += 100) {
      const calls = Array.from({ length: Math.min(100, c.tasks - i) }, (_, k) => ({ method: 'task/create', params: { title: `bench task ${i + k}`, target: 'cap:nobody', from: 'ext:bench' } }));
      batches.push(rpc.batch<{ task: { id: number } }>(calls));
    }
    const created = (await Promise.all(batches)).flat();
    const createPerSec = Math.round(c.tasks / ((nowMs() - t0) / 1000));
    const taskIds = created.map((r) => (r.ok ? r.result.task.id : -1)).filter((id) => id > 0);
    await rpc.close();
    ctx.log(`  created ${taskIds.length} tasks (${createPerSec}/s, batches of 100)`);

    const half = Math.ceil(c.claimers / 2);
    const indices = [Array.from({ length: half }, (_, i) => i), Array.from({ length: c.claimers - half }, (_, i) => half + i)];
    await Promise.all(workers.map((w, i) => w.call('open', { url: relay.wsUrl, indices: indices[i] })));
    const before = await scrapeCommitSums(relay.url);
    const startAt = nowMs() + 300;
    const racing = Promise.all(
      workers.map((w) =>
        w.call<{ wins: number[]; attempts: number; conflicts: number; errors: number; firstError?: string; startMs: number; endMs: number; hist: string }>(
          'run',
          { taskIds, claimers: c.claimers, contention: c.contention, window: c.window, startAt },
          600_000,
        ),
      ),
    );
    // From the start of the race to its end: what a won claim costs the relay and the claimers.
    await sleep(startAt - nowMs());
    const meter = cpuMeter({ server: relay.pid, generator0: workers[0]!.pid, generator1: workers[1]!.pid });
    const outs = await racing;
    const share = meter.stop();
    const after = await scrapeCommitSums(relay.url);
    await Promise.all(workers.map((w) => w.call('close')));
    const seen = new Map<number, number>();
    for (const o of outs) for (const id of o.wins) seen.set(id, (seen.get(id) ?? 0) + 1);
    const sec = (Math.max(...outs.map((o) => o.endMs)) - Math.min(...outs.map((o) => o.startMs))) / 1000;
    const attempts = outs.reduce((n, o) => n + o.attempts, 0);
    const commits = commitShare(before, after, sec);
    const perClaim = (cpuSec: number) => (seen.size > 0 ? Math.round((cpuSec / seen.size) * 1e6 * 10) / 10 : 0);
    result = {
      ...(commits ? { commits } : {}),
      ...(share
        ? {
            cpu: {
              serverUsPerClaim: perClaim(share.cpuSec.server!),
              generatorsUsPerClaim: perClaim(share.cpuSec.generator0! + share.cpuSec.generator1!),
              machineBusyCores: Math.round(share.machineBusyCores * 100) / 100,
            },
          }
        : {}),
      claimers: c.claimers,
      tasks: taskIds.length,
      contention: c.contention,
      claimsPerSec: Math.round(seen.size / sec),
      attemptsPerSec: Math.round(attempts / sec),
      attempts,
      conflicts: outs.reduce((n, o) => n + o.conflicts, 0),
      errors: outs.reduce((n, o) => n + o.errors, 0),
      doubleClaims: [...seen.values()].filter((n) => n > 1).length,
      unclaimed: taskIds.length - seen.size,
      createPerSec,
      latency: summarize(mergeHists(outs.map((o) => o.hist))),
      ...(outs.find((o) => o.firstError) ? { firstError: outs.find((o) => o.firstError)!.firstError! } : {}),
    };
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
    await relay.stop();
  }
  // The database's own account, read after the relay stopped.
  const db = new Database(relay.dbPath, { readonly: true });
  const doubleClaimsInDb = (db.prepare(`SELECT COUNT(*) AS n FROM (SELECT task_id FROM events WHERE kind = 'task.claimed' GROUP BY task_id HAVING COUNT(*) > 1)`).get() as { n: number }).n;
  const claimedInDb = (db.prepare(`SELECT COUNT(*) AS n FROM tasks WHERE status = 'claimed'`).get() as { n: number }).n;
  db.close();
  const r: ClaimsResult = { ...result, doubleClaimsInDb, claimedInDb };
  if (r.commits) ctx.log(`    ${describeClaimWrites(r.attempts, r.commits)}`);
  if (r.cpu) ctx.log(`    CPU per won claim: relay ${r.cpu.serverUsPerClaim} µs, claimers ${r.cpu.generatorsUsPerClaim} µs; ${r.cpu.machineBusyCores} cores busy`);
  ctx.log(
    `  ${r.claimers} claimers, ${r.tasks} tasks, each raced by ${r.contention}: ${r.claimsPerSec} claims/s (${r.attemptsPerSec} attempts/s, ${r.conflicts} conflicts), claim p50 ${r.latency.p50} ms p99 ${r.latency.p99} ms; double claims ${r.doubleClaims} (db ${r.doubleClaimsInDb}), claimed in db ${r.claimedInDb}, unclaimed ${r.unclaimed}${r.errors ? `, errors ${r.errors}: ${r.firstError}` : ''}`,
  );
  return r;
}
