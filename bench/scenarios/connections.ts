import { sleep } from '../lib/clock.js';
import type { BenchContext } from '../lib/context.js';
import { mergeHists, summarize, type Latency } from '../lib/hist.js';
import { forkWorker, procStats, split } from '../lib/proc.js';
import { Inspector } from '../lib/inspector.js';
import { startRelay } from '../lib/relay-proc.js';

export interface ConnectionsResult {
  connections: number;
  connectPerSec: number;
  rssBaselineMiB: number;
  rssConnectedMiB: number;
  /** Marginal relay memory (RSS, after a full GC) per idle registered connection, bytes. */
  bytesPerConnection: number;
  /** Of which live JavaScript heap, bytes. */
  heapBytesPerConnection: number;
  /** RSS growth before the GC (what a process monitor shows right after the connection storm), bytes. */
  bytesPerConnectionBeforeGc: number;
  /** Relay CPU with every agent connected and silent, % of one core. */
  idleCpuPct: number;
  heartbeatEveryMs: number;
  heartbeatsPerSec: number;
  heartbeatCpuPct: number;
  /** Relay CPU time per heartbeat, µs (heartbeat CPU minus idle CPU). */
  cpuUsPerHeartbeat: number;
  heartbeatLatency: Latency;
  heartbeatErrors: number;
  closedByRelay: number;
  /** % of a core 10,000 agents heartbeating every 30 s (the client default) would cost. */
  projected10kAt30sPct: number;
}

/** Connections opened before the memory baseline is taken. */
export const WARM_CONNECTIONS = 200;

export async function runConnections(ctx: BenchContext): Promise<ConnectionsResult> {
  const c = ctx.cfg.connections;
  const relay = await startRelay({ name: 'connections', cpuProf: ctx.cpuProf, inspect: true });
  const inspector = await Inspector.attach(relay.logPath);
  const settle = async () => {
    await inspector.collectGarbage();
    await sleep(500);
    await inspector.collectGarbage();
    return { ...procStats(relay.pid), heap: await inspector.heapUsed() };
  };
  const workers = await Promise.all([1, 2, 3, 4].map((i) => forkWorker(`conn-${i}`, 'scenarios/conn-worker.ts')));
  try {
    // Warm the relay's code paths with a few connections, then measure the marginal cost of the rest.
    await workers[0]!.call('idle', { url: relay.wsUrl, prefix: 'warm', count: WARM_CONNECTIONS, concurrency: 50 });
    await sleep(1000);
    const base = await settle();
    const shares = split(c.count - WARM_CONNECTIONS, workers.length);
    const t0 = performance.now();
    await Promise.all(workers.map((w, i) => w.call('idle', { url: relay.wsUrl, prefix: `idle${i}`, count: shares[i], concurrency: 100 }, 600_000)));
    const connectPerSec = Math.round((c.count - WARM_CONNECTIONS) / ((performance.now() - t0) / 1000));
    await sleep(1000);
    const beforeGc = procStats(relay.pid);
    const connected = await settle();
    const added = c.count - WARM_CONNECTIONS;
    const bytesPerConnection = Math.round((connected.rssBytes - base.rssBytes) / added);
    const heapBytesPerConnection = Math.round((connected.heap - base.heap) / added);
    const bytesPerConnectionBeforeGc = Math.round((beforeGc.rssBytes - base.rssBytes) / added);
    ctx.log(
      `  ${c.count} agents connected and registered (${connectPerSec}/s); relay RSS after GC ${(base.rssBytes / 2 ** 20).toFixed(0)} → ${(connected.rssBytes / 2 ** 20).toFixed(0)} MiB: ${(bytesPerConnection / 1024).toFixed(1)} KiB per connection (JS heap ${(heapBytesPerConnection / 1024).toFixed(1)} KiB; before GC ${(bytesPerConnectionBeforeGc / 1024).toFixed(1)} KiB)`,
    );

    const i0 = procStats(relay.pid);
    await sleep(c.measureMs);
    const i1 = procStats(relay.pid);
    const idleCpuPct = ((i1.cpuSec - i0.cpuSec) / (c.measureMs / 1000)) * 100;

    await Promise.all(workers.map((w) => w.call('heartbeat', { everyMs: c.heartbeatEveryMs })));
    await sleep(Math.min(1000, c.heartbeatEveryMs / 2));
    const h0 = procStats(relay.pid);
    const t1 = performance.now();
    await sleep(c.measureMs);
    const h1 = procStats(relay.pid);
    const sec = (performance.now() - t1) / 1000;
    const outs = await Promise.all(workers.map((w) => w.call<{ heartbeats: number; errors: number; hist: string; closedByRelay: number }>('stopHeartbeat')));
    const heartbeatsPerSec = Math.round(c.count / (c.heartbeatEveryMs / 1000));
    const heartbeatCpuPct = ((h1.cpuSec - h0.cpuSec) / sec) * 100;
    const cpuUsPerHeartbeat = Math.max(0, Math.round((((heartbeatCpuPct - idleCpuPct) / 100) * 1e6) / heartbeatsPerSec));
    const r: ConnectionsResult = {
      connections: c.count,
      connectPerSec,
      rssBaselineMiB: Math.round(base.rssBytes / 2 ** 20),
      rssConnectedMiB: Math.round(connected.rssBytes / 2 ** 20),
      bytesPerConnection,
      heapBytesPerConnection,
      bytesPerConnectionBeforeGc,
      idleCpuPct: Math.round(idleCpuPct * 10) / 10,
      heartbeatEveryMs: c.heartbeatEveryMs,
      heartbeatsPerSec,
      heartbeatCpuPct: Math.round(heartbeatCpuPct * 10) / 10,
      cpuUsPerHeartbeat,
      heartbeatLatency: summarize(mergeHists(outs.map((o) => o.hist))),
      heartbeatErrors: outs.reduce((n, o) => n + o.errors, 0),
      closedByRelay: outs.reduce((n, o) => n + o.closedByRelay, 0),
      projected10kAt30sPct: Math.round((((10_000 / 30) * cpuUsPerHeartbeat) / 1e4) * 10) / 10,
    };
    ctx.log(
      `  idle CPU ${r.idleCpuPct}% of a core; heartbeats ${r.heartbeatsPerSec}/s cost ${r.heartbeatCpuPct}% (${r.cpuUsPerHeartbeat} µs each, p50 ${r.heartbeatLatency.p50} ms p99 ${r.heartbeatLatency.p99} ms); 10,000 agents every 30 s ≈ ${r.projected10kAt30sPct}% of a core${r.closedByRelay ? `; ${r.closedByRelay} closed by the relay` : ''}`,
    );
    return r;
  } finally {
    await Promise.all(workers.map((w) => w.call('close').catch(() => {})));
    await Promise.all(workers.map((w) => w.stop()));
    inspector.close();
    await relay.stop();
  }
}
