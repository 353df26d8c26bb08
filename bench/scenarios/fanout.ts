import { startBareUws } from '../ceilings/uws.js';
import { nowMs, sleep } from '../lib/clock.js';
import type { BenchContext } from '../lib/context.js';
import { loadDriver, type Endpoint, type SystemName } from '../lib/drivers.js';
import { mergeHists, summarize, type Latency } from '../lib/hist.js';
import type { PaceResult } from '../lib/pacer.js';
import { forkWorker, split, type Worker } from '../lib/proc.js';
import { startRelay } from '../lib/relay-proc.js';

export interface FanoutStep {
  system: SystemName;
  n: number;
  /** Offered publishes per second. */
  rate: number;
  /** Publishes actually sent per second (the in-flight cap holds an overloaded system back). */
  sentRate: number;
  /** Deliveries (messages × subscribers) per second. */
  deliveredPerSec: number;
  /** Fraction of measured deliveries that arrived (within the drain time). */
  deliveredFraction: number;
  latency: Latency;
  reconnects: number;
  errors: number;
  held: boolean;
  search?: boolean;
  /** Not run: a lower offered rate already saturated the system (quick profile only). */
  skipped?: boolean;
}

export interface FanoutResult {
  steps: FanoutStep[];
  /** Highest offered rate held (all delivered, p99 < 50 ms), by system and N. */
  maxHeld: Array<{ system: SystemName; n: number; rate: number | null; tried: number[] }>;
}

export const P99_LIMIT_MS = 50;

interface Stats {
  received: number;
  warm: number;
  lastRecvMs: number;
  reconnects: number;
  hist?: string;
}

async function subStats(subs: Worker[], cmd: 'stats' | 'collect'): Promise<Stats[]> {
  return Promise.all(subs.map((w) => w.call<Stats>(cmd)));
}

const sum = (xs: Stats[], k: 'received' | 'reconnects') => xs.reduce((n, x) => n + x[k], 0);

/** How long a step warms up, measures and drains. */
export type StepTiming = Pick<BenchContext['cfg']['fanout'], 'warmupMs' | 'durationMs' | 'drainMs'>;

/** One offered rate: reset, publish paced, wait for the deliveries to drain, collect. */
export async function fanoutStep(f: StepTiming, log: (line: string) => void, system: SystemName, n: number, rate: number, pub: Worker, subs: Worker[]): Promise<FanoutStep> {
  await Promise.all(subs.map((w) => w.call('reset')));
  const pr = await pub.call<PaceResult>('pubRun', { rate, warmupMs: f.warmupMs, durationMs: f.durationMs, maxInflight: Math.max(1000, Math.round(rate / 5)) }, 60_000);
  const expected = pr.measuredSent * n;
  let last = -1;
  let lastChange = nowMs();
  for (;;) {
    const st = await subStats(subs, 'stats');
    const got = sum(st, 'received');
    const now = nowMs();
    if (got >= expected) break;
    if (got !== last) {
      last = got;
      lastChange = now;
    }
    if (now - lastChange > 1000 || now - pr.endMs > f.drainMs) break;
    await sleep(100);
  }
  const st = await subStats(subs, 'collect');
  const received = sum(st, 'received');
  const lastRecv = Math.max(...st.map((s) => s.lastRecvMs));
  const windowSec = Math.max(f.durationMs / 1000, (lastRecv - pr.measureStartMs) / 1000);
  const latency = summarize(mergeHists(st.map((s) => s.hist!)));
  const deliveredFraction = expected > 0 ? received / expected : 0;
  const result: FanoutStep = {
    system,
    n,
    rate,
    sentRate: Math.round(pr.measuredSent / (f.durationMs / 1000)),
    deliveredPerSec: Math.round(received / windowSec),
    deliveredFraction: Math.round(deliveredFraction * 10000) / 10000,
    latency,
    reconnects: sum(st, 'reconnects'),
    errors: pr.errors,
    held: deliveredFraction >= 0.99 && pr.skipped <= pr.offered * 0.01 && pr.errors === 0 && latency.p99 < P99_LIMIT_MS,
  };
  // Let an overloaded system finish its backlog before the next step (bounded).
  let prev = -1;
  for (let i = 0; i < 50; i++) {
    const cur = sum(await subStats(subs, 'stats'), 'received');
    if (cur === prev) break;
    prev = cur;
    await sleep(300);
  }
  log(
    `  fanout ${system.padEnd(13)} N=${String(n).padEnd(4)} offered ${String(rate).padStart(6)}/s  delivered ${String(result.deliveredPerSec).padStart(8)}/s (${(deliveredFraction * 100).toFixed(1)}%)  p50 ${fmt(latency.p50)} p99 ${fmt(latency.p99)} p99.9 ${fmt(latency.p999)} ms${result.held ? '' : '  (not held)'}`,
  );
  return result;
}

function skippedStep(system: SystemName, n: number, rate: number): FanoutStep {
  const latency = { count: 0, p50: NaN, p99: NaN, p999: NaN, max: NaN, mean: NaN };
  return { system, n, rate, sentRate: 0, deliveredPerSec: 0, deliveredFraction: 0, latency, reconnects: 0, errors: 0, held: false, skipped: true };
}

function fmt(ms: number): string {
  return Number.isFinite(ms) ? (ms < 10 ? ms.toFixed(2) : ms.toFixed(0)).padStart(6) : '     -';
}

/**
 * Highest rate with everything delivered and p99 under 50 ms: double past the highest held rate,
 * halve below a failure until one holds, then bisect (geometrically) between held and failed.
 */
export function nextProbe(results: Map<number, boolean>): number | null {
  const rates = [...results.keys()].sort((a, b) => a - b);
  const passed = rates.filter((r) => results.get(r));
  const best = passed.length ? passed[passed.length - 1]! : 0;
  const firstFail = rates.filter((r) => !results.get(r) && r > best)[0];
  if (firstFail === undefined) return best * 2;
  if (best === 0) {
    const half = Math.round(firstFail / 2 / 10) * 10;
    return half >= 10 ? half : null;
  }
  const mid = Math.round(Math.sqrt(best * firstFail) / 100) * 100;
  if (mid <= best || mid >= firstFail || firstFail / best < 1.15) return null;
  return mid;
}

async function withServer(ctx: BenchContext, system: SystemName, n: number): Promise<{ ep: Endpoint; stop: () => Promise<void> }> {
  const topic = `fan${n}x${Date.now() % 100000}`;
  if (system === 'relay') {
    const relay = await startRelay({ name: `fanout-n${n}`, cpuProf: ctx.cpuProf });
    return { ep: { system, url: relay.wsUrl, topic }, stop: () => relay.stop() };
  }
  if (system === 'uws') {
    const uws = await startBareUws();
    return { ep: { system, url: uws.wsUrl, topic }, stop: () => uws.stop() };
  }
  const peer = system === 'nats' || system === 'jetstream' ? ctx.peers.nats : ctx.peers.redis;
  if (!peer) throw new Error(`${system}: server not running`);
  const ep: Endpoint = { system, port: peer.port, topic };
  await (await loadDriver(system)).prepare?.(ep);
  return { ep, stop: async () => {} };
}

export async function runFanout(ctx: BenchContext): Promise<FanoutResult> {
  const f = ctx.cfg.fanout;
  const subs = [await forkWorker('fanout-sub-1', 'scenarios/fanout-worker.ts'), await forkWorker('fanout-sub-2', 'scenarios/fanout-worker.ts')];
  const pub = await forkWorker('fanout-pub', 'scenarios/fanout-worker.ts');
  const steps: FanoutStep[] = [];
  const maxHeld: FanoutResult['maxHeld'] = [];
  try {
    for (const system of ctx.systems) {
      const own = system === 'relay' || system === 'uws';
      const counts = own ? f.subscriberCounts : f.peerSubscriberCounts;
      const searchAt = own ? f.searchAt : f.peerSearchAt;
      for (const n of counts) {
        const server = await withServer(ctx, system, n);
        try {
          const procs = n >= 2 ? subs : subs.slice(0, 1);
          const shares = split(n, procs.length);
          let from = 0;
          await Promise.all(
            procs.map((w, i) => {
              const a = { endpoint: server.ep, from, count: shares[i]! };
              from += shares[i]!;
              return w.call('subs', a, 300_000);
            }),
          );
          await pub.call('pubOpen', { endpoint: server.ep });
          await sleep(200);
          const outcomes = new Map<number, boolean>();
          let saturated = false;
          for (const rate of f.rates) {
            if (saturated && ctx.profile === 'quick') {
              steps.push(skippedStep(system, n, rate));
              outcomes.set(rate, false);
              ctx.log(`  fanout ${system.padEnd(13)} N=${String(n).padEnd(4)} offered ${String(rate).padStart(6)}/s  skipped: a lower rate already saturated it`);
              continue;
            }
            const s = await fanoutStep(f, ctx.log, system, n, rate, pub, procs);
            saturated = s.deliveredFraction < 0.5 || !(s.latency.p99 < 1000);
            steps.push(s);
            outcomes.set(rate, s.held);
          }
          if (searchAt.includes(n)) {
            for (let i = 0; i < f.searchSteps; i++) {
              const probe = nextProbe(outcomes);
              if (probe === null || probe > 400_000) break;
              const s = await fanoutStep(f, ctx.log, system, n, probe, pub, procs);
              s.search = true;
              steps.push(s);
              outcomes.set(probe, s.held);
            }
            const held = [...outcomes].filter(([, ok]) => ok).map(([r]) => r);
            maxHeld.push({ system, n, rate: held.length ? Math.max(...held) : null, tried: [...outcomes.keys()].sort((a, b) => a - b) });
          }
        } finally {
          await Promise.all([...subs, pub].map((w) => w.call('close').catch(() => {})));
          await server.stop();
        }
      }
    }
  } finally {
    await Promise.all([...subs, pub].map((w) => w.stop()));
  }
  return { steps, maxHeld };
}
