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
  const { values } = parseArgs({ options: { rates: { type: 'string' }, seconds: { type: 'string' } } });
  const rates = (values.rates ?? '1000,3000').split(',').map(Number);
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
    console.log(`load average at end ${loadavg()[0]!.toFixed(2)}`);
  } finally {
    await follower.stop();
    await server.shutdown();
  }
}

runMain(main);
