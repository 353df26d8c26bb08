// `tsx bench/feed.ts [--rates 1000,3000] [--seconds 10]` (after `npm run build`): cross-node
// delivery on PostgreSQL (issue 18), at each offered rate, open-loop (each message stamped with its
// due send time), in two parts:
// 1. Store to store: one process applies sends through the relay's own group commit (CommitQueue)
//    into a PostgresStore, each answered once its own feed published it; a second process is
//    another node's PostgresStore following the change feed (broker/store-postgres/feed.ts), timing
//    each message to its publish there (NOTIFY, the log read, the decode).
// 2. Relay to relay: two relay processes (AGENT_RELAY_CLUSTER=on) on the database; a publisher on
//    node 1 sends message/send over a WebSocket, to a subscriber's socket on node 2 (cross-node)
//    and, in a second run, on node 1 (same node), timed to the message/new frame's arrival.
// 3. Fan-out across nodes: three relay nodes; a publisher on node 1 sends to `tag:` of N
//    subscribers (in three load-generator processes), all on node 1, then spread one third on
//    each node; deliveries per second and latency at each offered rate (`--fanout-rates`).
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { CommitQueue } from '../broker/domain/commit-queue.js';
import { createLogger } from '../broker/logger.js';
import { PostgresStore } from '../broker/store-postgres/store.js';
import { launchPostgres } from '../test/helpers/postgres.js';
import { sendOp } from '../test/helpers/records.js';
import { nowMs, sleep } from './lib/clock.js';
import { mergeHists, newHist, recordMs, summarize } from './lib/hist.js';
import { pace } from './lib/pacer.js';
import { stampAt } from './lib/payload.js';
import { forkWorker, runMain } from './lib/proc.js';
import { startRelay } from './lib/relay-proc.js';
import { RpcWs } from './lib/rpc-ws.js';
import { textTable } from './lib/table.js';
import { fanoutStep } from './scenarios/fanout.js';

const FANOUT_N = 100;

/** Part 3: N subscribers all on node 1, then spread over three nodes; the publisher on node 1. */
async function clusterFanout(url: string, rates: number[], durationMs: number): Promise<(string | number)[][]> {
  const env = { AGENT_RELAY_STORE: url, AGENT_RELAY_CLUSTER: 'on' };
  const nodes = [await startRelay({ name: 'fanout-1', env }), await startRelay({ name: 'fanout-2', env }), await startRelay({ name: 'fanout-3', env })];
  const subs = await Promise.all([0, 1, 2].map((i) => forkWorker(`fanout-sub-${i}`, 'scenarios/fanout-worker.ts')));
  const pub = await forkWorker('fanout-pub', 'scenarios/fanout-worker.ts');
  const rows: (string | number)[][] = [];
  try {
    for (const layout of ['one node', 'three nodes'] as const) {
      const topic = layout === 'one node' ? 'one' : 'three';
      const shares = [Math.ceil(FANOUT_N / 3), Math.ceil(FANOUT_N / 3), FANOUT_N - 2 * Math.ceil(FANOUT_N / 3)];
      let from = 0;
      for (const [i, w] of subs.entries()) {
        const node = layout === 'one node' ? nodes[0]! : nodes[i]!;
        await w.call('subs', { endpoint: { system: 'relay', url: node.wsUrl, topic }, from, count: shares[i]! }, 120_000);
        from += shares[i]!;
      }
      await pub.call('pubOpen', { endpoint: { system: 'relay', url: nodes[0]!.wsUrl, topic } });
      await sleep(500); // node 1 hears of the other nodes' registrations through the feed
      for (const rate of rates) {
        const st = await fanoutStep({ warmupMs: 1000, durationMs, drainMs: 5000 }, console.log, 'relay', FANOUT_N, rate, pub, subs);
        rows.push([layout, rate, st.sentRate, st.deliveredPerSec, `${(st.deliveredFraction * 100).toFixed(1)}%`, st.latency.p50, st.latency.p99, st.held ? 'yes' : 'no']);
      }
      await Promise.all([...subs, pub].map((w) => w.call('close')));
    }
  } finally {
    await Promise.all([...subs, pub].map((w) => w.stop()));
    for (const n of nodes) await n.stop();
  }
  return rows;
}

/** Part 2: publish on node 1 to the agent `to` whose socket is `subscriber`, timed to the frame's arrival. */
async function relayRun(publisher: RpcWs, subscriber: RpcWs, to: string, rate: number, durationMs: number): Promise<(string | number)[]> {
  const hist = newHist();
  let arrived = 0;
  subscriber.onNote = (text) => {
    const at = text.indexOf('"body":"');
    const stamp = at < 0 ? null : stampAt(text, at + 8);
    if (!stamp?.measured) return;
    arrived++;
    recordMs(hist, nowMs() - stamp.ms);
  };
  const r = await pace({ rate, warmupMs: 1000, durationMs, maxInflight: 2000, send: (body) => publisher.call('message/send', { to, body }) });
  await sleep(1000);
  const l = summarize(hist);
  return [rate, r.measuredSent, arrived, l.p50, l.p99, l.p999, r.errors];
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { rates: { type: 'string' }, seconds: { type: 'string' }, 'fanout-rates': { type: 'string' } } });
  const rates = (values.rates ?? '1000,3000').split(',').map(Number);
  const fanoutRates = (values['fanout-rates'] ?? '250,500,1000,2000').split(',').map(Number);
  const durationMs = Number(values.seconds ?? 10) * 1000;
  console.log(`bench/feed: rates ${rates.join(', ')} msgs/s, ${durationMs / 1000} s each; load average at start ${loadavg()[0]!.toFixed(2)}`);
  const server = await launchPostgres();
  const follower = await forkWorker('feed-follower', 'scenarios/feed-follower.ts');
  try {
    const url = await server.freshDatabase();
    const store = await PostgresStore.open({ url });
    await follower.call('open', { url });
    const queue = new CommitQueue(store, createLogger('silent'), {});
    const rows: (string | number)[][] = [];
    for (const rate of rates) {
      await follower.call('reset');
      const acks = newHist();
      const r = await pace({
        rate,
        warmupMs: 1000,
        durationMs,
        maxInflight: 5000,
        send: (body) =>
          queue.apply(sendOp({ body }, ['sink']), () => {
            const stamp = stampAt(body, 0);
            if (stamp?.measured) recordMs(acks, nowMs() - stamp.ms);
          }),
      });
      await sleep(1000); // the last ones reach the other node
      const remote = await follower.call<{ published: number; hist: string }>('collect');
      const ack = summarize(acks);
      const cross = summarize(mergeHists([remote.hist]));
      rows.push([rate, r.measuredSent, ack.p50, ack.p99, remote.published, cross.p50, cross.p99, cross.p999, r.skipped]);
    }
    console.log(
      textTable({
        title: 'Cross-node delivery through the change feed (ms from the due send time)',
        headers: ['offered msgs/s', 'sent', 'ack p50', 'ack p99', 'published on the other node', 'p50', 'p99', 'p99.9', 'held back'],
        rows,
      }),
    );
    await queue.close();
    await store.close();
    await follower.call('close');

    const env = { AGENT_RELAY_STORE: await server.freshDatabase(), AGENT_RELAY_CLUSTER: 'on' };
    const one = await startRelay({ name: 'cluster-1', env });
    const two = await startRelay({ name: 'cluster-2', env });
    try {
      const relayRows: (string | number)[][] = [];
      for (const [where, relay, to] of [
        ['node 2 (cross-node)', two, 'sink-2'],
        ['node 1 (same node)', one, 'sink-1'],
      ] as const) {
        const subscriber = await RpcWs.connect(relay.wsUrl);
        await subscriber.call('agent/register', { id: to });
        const publisher = await RpcWs.connect(one.wsUrl);
        await publisher.call('agent/register', { id: `publisher-${to}` });
        await sleep(200); // node 1 hears of the registration through the feed
        for (const rate of rates) relayRows.push([where, ...(await relayRun(publisher, subscriber, to, rate, durationMs))]);
        await publisher.close();
        await subscriber.close();
      }
      console.log(
        textTable({
          title: 'Relay to relay: message/send on node 1 to a socket on node 2 or node 1 (ms from the due send time to the frame)',
          headers: ['subscriber on', 'offered msgs/s', 'sent', 'arrived', 'p50', 'p99', 'p99.9', 'errors'],
          rows: relayRows,
        }),
      );
    } finally {
      await one.stop();
      await two.stop();
    }
    const fanout = await clusterFanout(await server.freshDatabase(), fanoutRates, Math.min(durationMs, 5000));
    console.log(
      textTable({
        title: `Fan-out across nodes: a publisher on node 1 to tag: of ${FANOUT_N} subscribers, all on node 1 or a third on each of three nodes (ms from the due send time)`,
        headers: ['subscribers on', 'offered msgs/s', 'sent/s', 'deliveries/s', 'delivered', 'p50', 'p99', 'held (all, p99 < 50 ms)'],
        rows: fanout,
      }),
    );
    console.log(`load average at end ${loadavg()[0]!.toFixed(2)}`);
  } finally {
    await follower.stop();
    await server.shutdown();
  }
}

runMain(main);
