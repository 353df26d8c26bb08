import { join } from 'node:path';
import t from 'tap';
import { CLOSE_CODES } from '../../protocol/close-codes.js';
import { spawnTs } from '../helpers/child.js';
import { spawnRelay } from '../helpers/relay-process.js';
import { connectAgent, type WsRpc } from '../helpers/ws-client.js';
import { compareWindows, figure, ratios, scrape, sleep, uniqueDir, untilWithinTwice, type Windows } from './support.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Slow consumer: one subscriber stops reading among 50 fast ones while a publisher sends at a
 * steady rate and a second one sends the slow one large direct messages (so it reaches the limit
 * in seconds rather than minutes: the kernel's socket buffers hold megabytes before the relay's own
 * buffer starts to fill). Both send the same way throughout; in each of ROUNDS rounds the slow one
 * reads normally for a quiet window, then stops reading until the relay cuts it, then reads again,
 * reconnects and catches up. The relay, a real process, must cut the slow socket at its
 * backpressure limit (4001) every round, its memory must stay bounded (≤ 50 MiB growth in each
 * round, and ≤ 50 MiB after the last round over before the first), the fast
 * subscribers' delivery p99 while the slow one stalls and catches up must stay within 2× their
 * quiet p99 (median over rounds, as the fuzz and rate-limit tests compare; a miss is measured
 * again with ROUNDS fresh rounds, up to three times, as rate-limit does), and the slow one,
 * through the client library in a process of its own (slow-subscriber.ts), must get every
 * message once.
 * It runs alone (a .serial.ts file): another test file on the other core would be measured too.
 */

const FAST = 50;
const LIMIT = 1024 * 1024;
const STEADY_EVERY_MS = 10;
const BULK_BYTES = 32 * 1024;
// Five, not three: with three, the median still missed 2× in about one run of five, before and after
// the transport port alike (alone, at e662658: 2.01, 1.28, 1.16, 1.08; at 022cc84: 1.70, 1.49,
// 1.04, 1.12; in a CI run 2.24).
const ROUNDS = 5;
const QUIET_MS = 2000;
/** After catching up, the disturbed window stays open this long (replays and reconnects settle). */
const SETTLE_MS = 500;
t.setTimeout(240_000);

t.test('a subscriber that stops reading is cut at the backpressure limit; the others do not notice; it gets everything back', async (t) => {
  const relay = await spawnRelay(t, { dbPath: join(uniqueDir(t), 'relay.db'), env: { AGENT_RELAY_MAX_BACKPRESSURE_BYTES: String(LIMIT) } });

  // 50 fast subscribers on raw sockets, and the publishers.
  const fast: WsRpc[] = [];
  for (let i = 0; i < FAST; i++) fast.push((await connectAgent(t, relay.wsUrl, { id: `fast-${i}`, tags: ['sub'] })).rpc);
  const publisher = (await connectAgent(t, relay.wsUrl, { id: 'publisher' })).rpc;
  const bulk = (await connectAgent(t, relay.wsUrl, { id: 'bulk' })).rpc;

  // The slow subscriber uses the client library, in a process of its own (slow-subscriber.ts):
  // its catch-up, megabytes parsed at once, used to run on the event loop that measures the fast
  // subscribers, and their "disturbed" p99 measured the test more than the relay.
  const slowIds: number[] = [];
  const slowSeen = new Set<number>();
  const slowCloses: number[] = [];
  const slow = spawnTs(t, 'test/reliability/slow-subscriber.ts', { args: [relay.url] });
  let partial = '';
  slow.onStdout((chunk) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      if (line.startsWith('m ')) {
        const id = Number(line.slice(2));
        slowIds.push(id);
        slowSeen.add(id);
      } else if (line.startsWith('c ')) slowCloses.push(Number(line.slice(2)));
    }
  });
  await waitFor(() => /^ready$/m.test(slow.stdout()), 'the slow subscriber to connect', 20_000);
  t.teardown(() => slow.send('quit\n'));

  // Delivery latency at the fast subscribers, into the open window: the body starts with the send time.
  let window: number[] | null = null;
  for (const rpc of fast) {
    rpc.ws.on('message', (data) => {
      const at = /"body":"(\d+\.\d+)\|/.exec(data.toString());
      if (at && window) window.push(performance.now() - Number(at[1]));
    });
  }

  const toSlow = new Set<number>();
  let running = true;
  const padding = 'p'.repeat(1024);
  const steady = (async () => {
    while (running) {
      const next = performance.now() + STEADY_EVERY_MS;
      const r = await publisher.call('message/send', { to: 'tag:sub', body: `${performance.now().toFixed(3)}|${padding}` });
      toSlow.add(r.message.id);
      await sleep(Math.max(0, next - performance.now()));
    }
  })();
  const big = 'b'.repeat(BULK_BYTES);
  const bulkLoop = (async () => {
    while (running) {
      toSlow.add((await bulk.call('message/send', { to: 'slow', body: big })).message.id);
      await sleep(20);
    }
  })();

  const gauge = (m: Map<string, number>, name: string) => m.get(name) ?? Number.NaN;
  const rss = (m: Map<string, number>) => gauge(m, 'agent_relay_process_resident_memory_bytes');
  const heap = (m: Map<string, number>) => gauge(m, 'agent_relay_nodejs_heap_size_used_bytes');
  const wsCount = (m: Map<string, number>) => gauge(m, 'agent_relay_connections{kind="ws"}');
  let rssBefore = Number.NaN;
  let heapBefore = Number.NaN;
  let rssMax = 0;
  // Per round: the peak while the slow one stalls and catches up, over the RSS just before it
  // stalled. That is the growth one slow consumer causes; the peak over the whole run also counts
  // the garbage of earlier rounds that V8 has not collected yet (heap used rises ~10 MiB a round,
  // then falls at a major GC).
  const roundGrowthMiB: number[] = [];
  let roundBefore = 0;
  let roundPeak = 0;
  let heapMax = 0;
  const cutAfterMs: number[] = [];
  const caughtUpMs: number[] = [];
  const sentBeforeCut: number[] = [];
  const rssAfterRound: number[] = [];
  const idsBeforeStall = { count: 0 };

  let roundsRun = 0;
  /** ROUNDS rounds of quiet and stalled windows; `stop` when the relay did not cut or the slow one did not catch up. */
  const measure = async () => {
    const windows: Windows = { quiet: [], disturbed: [] };
    for (let round = 0; round < ROUNDS; round++) {
      roundsRun++;
      window = [];
      windows.quiet.push(window);
      await sleep(QUIET_MS);
      const before = await scrape(relay.url);
      roundBefore = rss(before);
      roundPeak = roundBefore;
      if (roundsRun === 1) {
        rssBefore = rss(before);
        heapBefore = heap(before);
        idsBeforeStall.count = slowIds.length;
      }

      // The slow one stops reading.
      window = [];
      windows.disturbed.push(window);
      const stallAt = Date.now();
      slow.send('pause\n');
      let cut = false;
      while (!cut && Date.now() - stallAt < 90_000) {
        await sleep(250);
        const m = await scrape(relay.url);
        rssMax = Math.max(rssMax, rss(m));
        roundPeak = Math.max(roundPeak, rss(m));
        heapMax = Math.max(heapMax, heap(m));
        cut = wsCount(m) < wsCount(before);
      }
      if (!cut) return { c: compareWindows(windows), windows, stop: true };
      cutAfterMs.push(Date.now() - stallAt);
      sentBeforeCut.push(toSlow.size);

      // It reads again: it sees the cut, reconnects and replays its backlog from its cursor, while
      // the others carry on under the same load (still measured).
      slow.send('resume\n');
      const resumedAt = Date.now();
      const owed = [...toSlow];
      const caughtUp = await waitFor(() => owed.every((id) => slowSeen.has(id)), 'catch-up', 60_000).then(
        () => true,
        () => false,
      );
      if (!caughtUp) return { c: compareWindows(windows), windows, stop: true };
      caughtUpMs.push(Date.now() - resumedAt);
      await sleep(SETTLE_MS);
      const after = await scrape(relay.url);
      rssMax = Math.max(rssMax, rss(after));
      roundPeak = Math.max(roundPeak, rss(after));
      roundGrowthMiB.push((roundPeak - roundBefore) / 2 ** 20);
      heapMax = Math.max(heapMax, heap(after));
      rssAfterRound.push(rss(after) / 2 ** 20);
    }
    return { c: compareWindows(windows), windows, stop: false };
  };
  const runs = await untilWithinTwice(t, measure);
  const { c, windows } = runs.at(-1)!;
  window = null;
  running = false;
  await Promise.all([steady, bulkLoop]);
  await waitFor(() => [...toSlow].every((id) => slowSeen.has(id)), 'the slow subscriber to catch up', 60_000).catch((e: Error) => t.fail(e.message));

  const missing = [...toSlow].filter((id) => !slowSeen.has(id)).length;
  const duplicates = slowIds.length - slowSeen.size;
  const growthMiB = (rssMax - rssBefore) / 2 ** 20;
  t.equal(cutAfterMs.length, roundsRun, `the relay cut the slow socket in every round (after ${cutAfterMs.join(', ')} ms of not reading)`);
  t.equal(caughtUpMs.length, roundsRun, `and it caught up every round (in ${caughtUpMs.join(', ')} ms)`);
  t.same(slowCloses, Array(roundsRun).fill(CLOSE_CODES.slowConsumer), `the slow socket was closed with 4001 each time (closes seen: ${slowCloses.join(', ')})`);
  t.match(relay.stdout(), /slow consumer disconnected/, 'the relay logged the slow consumer');
  const worstRound = Math.max(...roundGrowthMiB);
  const endGrowthMiB = (rssAfterRound.at(-1)! * 2 ** 20 - rssBefore) / 2 ** 20;
  t.ok(worstRound <= 50, `relay memory growth while the slow one stalled and caught up stayed bounded (${roundGrowthMiB.map((x) => x.toFixed(1)).join(', ')} MiB RSS per round ≤ 50 MiB)`);
  t.ok(endGrowthMiB <= 50, `and did not add up over the rounds (${endGrowthMiB.toFixed(1)} MiB RSS after the last round over before the first ≤ 50 MiB; peak ${growthMiB.toFixed(1)} MiB)`);
  t.ok(
    fast.every((rpc) => rpc.closeCode === null),
    'no fast subscriber was disconnected',
  );
  t.ok(c.ratio <= 2, `the fast subscribers' p99 stayed within 2× the quiet p99 (${ratios(runs)})`);
  t.equal(missing, 0, `the slow subscriber got every message after reconnecting (${toSlow.size})`);
  t.equal(duplicates, 0, 'and none twice');
  figure(t, 'slow-consumer', {
    fast: FAST,
    rounds: roundsRun,
    backpressure_limit_bytes: LIMIT,
    cut_after_ms: cutAfterMs.join('/'),
    messages_to_slow_before_cut: sentBeforeCut.join('/'),
    slow_closes: slowCloses.join('/'),
    slow_caught_up_ms: caughtUpMs.join('/'),
    rss_before_mib: rssBefore / 2 ** 20,
    rss_growth_mib: growthMiB,
    rss_growth_per_round_mib: roundGrowthMiB.map((x) => x.toFixed(1)).join('/'),
    rss_growth_at_end_mib: endGrowthMiB,
    rss_after_round_mib: rssAfterRound.map((x) => x.toFixed(1)).join('/'),
    heap_growth_mib: (heapMax - heapBefore) / 2 ** 20,
    fast_p99_quiet_ms: c.p99Quiet,
    fast_p99_stall_ms: c.p99Disturbed,
    pooled_p99_quiet_ms: c.pooledQuiet,
    pooled_p99_stall_ms: c.pooledDisturbed,
    ratio: c.ratio,
    fast_samples: windows.quiet.flat().length + windows.disturbed.flat().length,
    slow_received: slowIds.length,
    slow_received_before_stall: idsBeforeStall.count,
    slow_missing: missing,
    slow_duplicates: duplicates,
  });
});
