import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { nowMs, sleep } from '../lib/clock.js';
import type { BenchContext } from '../lib/context.js';
import { mergeHists, summarize, type Latency } from '../lib/hist.js';
import { keepAliveAgent, registerHttp } from '../lib/http-client.js';
import { makeBody } from '../lib/payload.js';
import type { PaceResult } from '../lib/pacer.js';
import { forkWorker, split, type Worker } from '../lib/proc.js';
import { inParallel, RpcWs } from '../lib/rpc-ws.js';
import { startRelay, tempDbPath } from '../lib/relay-proc.js';

export interface HttpResult {
  ingress: { events: number; concurrency: number; eventsPerSec: number; outcomes: Record<string, number>; latency: Latency };
  longPoll: { waiters: number; rounds: number; wakes: number; latency: Latency };
  sse: { streams: number; rate: number; deliveredPerSec: number; deliveredFraction: number; latency: Latency };
  /** The same sends, seen by a 2-second poll, a long-poll and a WebSocket push. */
  compare: { rate: number; sends: number; poll: Latency; longPoll: Latency; push: Latency };
}

type Collected = { received: number; lastRecvMs: number; hist: string };

async function collect(workers: Worker[], mode: string): Promise<{ received: number; lastRecvMs: number; latency: Latency }> {
  const outs = await Promise.all(workers.map((w) => w.call<Collected>('collect', { mode })));
  return { received: outs.reduce((n, o) => n + o.received, 0), lastRecvMs: Math.max(...outs.map((o) => o.lastRecvMs)), latency: summarize(mergeHists(outs.map((o) => o.hist))) };
}

async function waitReceived(workers: Worker[], mode: string, expected: number, capMs: number): Promise<number> {
  const deadline = nowMs() + capMs;
  for (;;) {
    const got = (await Promise.all(workers.map((w) => w.call<{ received: number }>('stats', { mode })))).reduce((n, s) => n + s.received, 0);
    if (got >= expected || nowMs() > deadline) return got;
    await sleep(25);
  }
}

async function longPollsWaiting(url: string): Promise<number> {
  const r = await fetch(`${url}/metrics`);
  const m = /agent_relay_connections\{kind="long_poll"\} (\d+)/.exec(await r.text());
  return Number(m?.[1] ?? 0);
}

export async function runHttp(ctx: BenchContext): Promise<HttpResult> {
  const h = ctx.cfg.http;
  const secret = `whsec_${randomBytes(32).toString('base64')}`;
  const integrations = join(dirname(tempDbPath('http-config')), 'integrations.json');
  writeFileSync(integrations, JSON.stringify({ integrations: [{ name: 'bench', secret, target: 'cap:nobody' }] }));
  const relay = await startRelay({ name: 'http', env: { AGENT_RELAY_INTEGRATIONS: integrations }, cpuProf: ctx.cpuProf });
  const workers = [await forkWorker('http-1', 'scenarios/http-worker.ts'), await forkWorker('http-2', 'scenarios/http-worker.ts')];
  const pub = await forkWorker('http-pub', 'scenarios/fanout-worker.ts');
  const agent = keepAliveAgent(64);
  try {
    // ---- webhook ingress: signed, 1 in 10 a replayed webhook-id, dedupe keys repeating
    const shares = split(h.ingressEvents, workers.length);
    const outs = await Promise.all(
      workers.map((w, i) =>
        w.call<{ status: Record<string, number>; startMs: number; endMs: number; hist: string }>(
          'ingress',
          {
            url: relay.url,
            name: 'bench',
            secret,
            from: i * shares[0]!,
            count: shares[i],
            concurrency: Math.ceil(h.ingressConcurrency / workers.length),
            distinctKeys: 500,
            replayEvery: 10,
            tag: `w${i}`,
          },
          600_000,
        ),
      ),
    );
    const outcomes: Record<string, number> = {};
    for (const o of outs) for (const [k, v] of Object.entries(o.status)) outcomes[k] = (outcomes[k] ?? 0) + v;
    const ingressSec = (Math.max(...outs.map((o) => o.endMs)) - Math.min(...outs.map((o) => o.startMs))) / 1000;
    const ingress = {
      events: h.ingressEvents,
      concurrency: h.ingressConcurrency,
      eventsPerSec: Math.round(h.ingressEvents / ingressSec),
      outcomes,
      latency: summarize(mergeHists(outs.map((o) => o.hist))),
    };
    ctx.log(`  webhook ingress: ${ingress.eventsPerSec} events/s (${JSON.stringify(outcomes)}), p50 ${ingress.latency.p50} ms p99 ${ingress.latency.p99} ms`);

    // ---- long-polls woken by sends
    const lp = await inParallel(h.longPolls, 32, (i) => registerHttp(relay.url, agent, { id: `lp-${i}`, tags: ['lp'] }));
    const lpShares = split(lp.length, workers.length);
    await Promise.all(workers.map((w, i) => w.call('longPolls', { url: relay.url, agents: lp.slice(i ? lpShares[0] : 0, i ? undefined : lpShares[0]) })));
    const sender = await RpcWs.connect(relay.wsUrl);
    let waiting = 0;
    for (let t = 0; t < 100 && (waiting = await longPollsWaiting(relay.url)) < h.longPolls; t++) await sleep(100);
    for (let r = 0; r < h.longPollRounds; r++) {
      await sender.call('message/send', { to: 'tag:lp', body: makeBody('T', nowMs()), from: 'ext:bench-sender' });
      await waitReceived(workers, 'longpoll', h.longPolls * (r + 1), 15_000);
      for (let t = 0; t < 100 && (await longPollsWaiting(relay.url)) < h.longPolls; t++) await sleep(20);
    }
    const lpOut = await collect(workers, 'longpoll');
    const longPoll = { waiters: waiting, rounds: h.longPollRounds, wakes: lpOut.received, latency: lpOut.latency };
    ctx.log(`  ${waiting} long-polls woken by a send, ${h.longPollRounds} rounds: ${lpOut.received} wakes, p50 ${lpOut.latency.p50} ms p99 ${lpOut.latency.p99} ms`);
    await Promise.all(workers.map((w) => w.call('stopAll')));

    // ---- SSE fan-out
    const sseAgents = await inParallel(h.sseStreams, 32, (i) => registerHttp(relay.url, agent, { id: `sse-${i}`, tags: ['sse'] }));
    const sseShares = split(sseAgents.length, workers.length);
    await Promise.all(workers.map((w, i) => w.call('sse', { url: relay.url, agents: sseAgents.slice(i ? sseShares[0] : 0, i ? undefined : sseShares[0]) })));
    await pub.call('pubOpen', { endpoint: { system: 'relay', url: relay.wsUrl, topic: 'sse' } });
    const pr = await pub.call<PaceResult>('pubRun', { rate: h.sseRate, warmupMs: 500, durationMs: h.sseMs, maxInflight: 2000 }, 120_000);
    const sseExpected = pr.measuredSent * h.sseStreams;
    await waitReceived(workers, 'sse', sseExpected, 5000);
    const sseOut = await collect(workers, 'sse');
    const sse = {
      streams: h.sseStreams,
      rate: h.sseRate,
      deliveredPerSec: Math.round(sseOut.received / Math.max(h.sseMs / 1000, (sseOut.lastRecvMs - pr.measureStartMs) / 1000)),
      deliveredFraction: Math.round((sseOut.received / Math.max(1, sseExpected)) * 10000) / 10000,
      latency: sseOut.latency,
    };
    ctx.log(
      `  SSE fan-out ${h.sseStreams} streams at ${h.sseRate} msgs/s: ${sse.deliveredPerSec} events/s delivered (${(sse.deliveredFraction * 100).toFixed(1)}%), p50 ${sse.latency.p50} ms p99 ${sse.latency.p99} ms p99.9 ${sse.latency.p999} ms`,
    );
    await Promise.all(workers.map((w) => w.call('stopAll')));

    // ---- 2 s poll vs long-poll vs push, same sends
    const [poll, long, push] = await Promise.all(['cmp-poll', 'cmp-long', 'cmp-push'].map((id) => registerHttp(relay.url, agent, { id, tags: ['cmp'] })));
    await workers[0]!.call('compare', { url: relay.url, wsUrl: relay.wsUrl, poll, long, push, pollEveryMs: 2000 });
    await sleep(300);
    await pub.call('pubOpen', { endpoint: { system: 'relay', url: relay.wsUrl, topic: 'cmp' } });
    const cr = await pub.call<PaceResult>('pubRun', { rate: h.compareRate, warmupMs: 0, durationMs: h.compareMs, maxInflight: 100 }, 120_000);
    await sleep(2500);
    const [p, l, s] = await Promise.all(['poll', 'long', 'push'].map((m) => collect(workers.slice(0, 1), m)));
    const compare = { rate: h.compareRate, sends: cr.measuredSent, poll: p!.latency, longPoll: l!.latency, push: s!.latency };
    ctx.log(
      `  ${cr.measuredSent} sends seen by: 2 s poll p50 ${compare.poll.p50} ms p99 ${compare.poll.p99} ms (${p!.received}); long-poll p50 ${compare.longPoll.p50} ms p99 ${compare.longPoll.p99} ms (${l!.received}); push p50 ${compare.push.p50} ms p99 ${compare.push.p99} ms (${s!.received})`,
    );
    await Promise.all(workers.map((w) => w.call('stopAll')));
    await sender.close();
    return { ingress, longPoll, sse, compare };
  } finally {
    agent.destroy();
    await Promise.all([...workers, pub].map((w) => w.stop()));
    await relay.stop();
  }
}
