// `tsx bench/feed.ts [--rates 1000,3000] [--seconds 10]`: cross-node delivery through the PostgreSQL
// change feed (issue 18), store to store. One process is a node's writer: sends paced open-loop
// at each offered rate, through the relay's own group commit (CommitQueue) into a PostgresStore,
// each answered once its own feed published it. Another process is a second node: a PostgresStore
// following the feed (broker/store-postgres/feed.ts), timing each message from its due send time to
// its publish there (NOTIFY, the log read, the decode). What a relay adds on top — the WebSocket
// frames at both ends — is in the fan-out scenario; this is the part a cluster adds.
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
import { textTable } from './lib/table.js';

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
    console.log(`load average at end ${loadavg()[0]!.toFixed(2)}`);
    await queue.close();
    await store.close();
    await follower.call('close');
  } finally {
    await follower.stop();
    await server.shutdown();
  }
}

runMain(main);
