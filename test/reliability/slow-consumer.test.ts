import { join } from 'node:path';
import t from 'tap';
import WebSocket from 'ws';
import { createRelayClient, type WebSocketLike } from '../../clients/index.js';
import { CLOSE_CODES } from '../../protocol/close-codes.js';
import { spawnRelay } from '../helpers/relay-process.js';
import { connectAgent, type WsRpc } from '../helpers/ws-client.js';
import { figure, percentile, scrape, sleep, uniqueDir, until } from './support.js';

/**
 * Slow consumer: one subscriber stops reading among 50 fast ones while a publisher sends at a
 * steady rate (and a second one sends it large direct messages, so it reaches the limit in
 * seconds rather than minutes: the kernel's socket buffers hold megabytes before the relay's own
 * buffer starts to fill). The relay, a real process, must cut the slow socket at its backpressure
 * limit (4001), its memory must stay bounded (≤ 50 MiB growth), the fast subscribers' delivery
 * p99 must stay within 2× their p99 before the stall, and the slow one, reconnecting through the
 * client library, must get every message.
 */

const FAST = 50;
const LIMIT = 1024 * 1024;
const STEADY_EVERY_MS = 10;
const BULK_BYTES = 32 * 1024;
const BASELINE_MS = 5000;
const AFTER_CUT_MS = 3000;
t.setTimeout(240_000);

t.test('a subscriber that stops reading is cut at the backpressure limit; the others do not notice; it gets everything back', async (t) => {
  const relay = await spawnRelay(t, { dbPath: join(uniqueDir(t), 'relay.db'), env: { AGENT_RELAY_MAX_BACKPRESSURE_BYTES: String(LIMIT) } });

  // 50 fast subscribers on raw sockets, and the publishers.
  const fast: WsRpc[] = [];
  for (let i = 0; i < FAST; i++) fast.push((await connectAgent(t, relay.wsUrl, { id: `fast-${i}`, tags: ['sub'] })).rpc);
  const publisher = (await connectAgent(t, relay.wsUrl, { id: 'publisher' })).rpc;
  const bulk = (await connectAgent(t, relay.wsUrl, { id: 'bulk' })).rpc;

  // The slow subscriber uses the client library, whose sockets the test can stop reading.
  const sockets: WebSocket[] = [];
  const slow = createRelayClient({
    url: relay.url,
    agent: { id: 'slow', tags: ['sub'] },
    reconnect: { initialMs: 100, maxMs: 1000 },
    heartbeatMs: 0,
    createSocket: (url, protocols) => {
      const ws = new WebSocket(url, protocols);
      sockets.push(ws);
      return ws as unknown as WebSocketLike;
    },
  });
  t.teardown(() => slow.close());
  const slowIds: number[] = [];
  slow.on('message', (m) => slowIds.push(m.id));
  const slowCloses: number[] = [];
  slow.on('disconnected', (d) => slowCloses.push(d.code));
  await slow.connect();

  // Delivery latency at the fast subscribers: the body starts with the send time.
  let phase: 'baseline' | 'stall' | 'after' = 'baseline';
  const latency = { baseline: [] as number[], stall: [] as number[] };
  for (const rpc of fast) {
    rpc.ws.on('message', (data) => {
      const text = data.toString();
      const at = /"body":"(\d+\.\d+)\|/.exec(text);
      if (at && phase !== 'after') latency[phase].push(performance.now() - Number(at[1]));
    });
  }

  const toSlow = new Set<number>();
  let running = true;
  let bulkOn = false;
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
      if (bulkOn) toSlow.add((await bulk.call('message/send', { to: 'slow', body: big })).message.id);
      await sleep(20);
    }
  })();

  const gauge = (m: Map<string, number>, name: string) => m.get(name) ?? Number.NaN;
  await sleep(BASELINE_MS);
  const before = await scrape(relay.url);
  const rssBefore = gauge(before, 'agent_relay_process_process_resident_memory_bytes');
  const heapBefore = gauge(before, 'agent_relay_process_nodejs_heap_size_used_bytes');
  const wsBefore = gauge(before, 'agent_relay_connections{kind="ws"}');

  // The slow one stops reading.
  phase = 'stall';
  const stallAt = Date.now();
  const stalled = sockets.at(-1)!;
  (stalled as unknown as { _socket: { pause(): void } })._socket.pause();
  const idsBeforeStall = slowIds.length;
  bulkOn = true;
  let rssMax = rssBefore;
  let heapMax = heapBefore;
  let cutAfterMs = -1;
  const sentToSlowBeforeCut = { count: 0 };
  while (Date.now() - stallAt < 90_000) {
    await sleep(250);
    const m = await scrape(relay.url);
    rssMax = Math.max(rssMax, gauge(m, 'agent_relay_process_process_resident_memory_bytes'));
    heapMax = Math.max(heapMax, gauge(m, 'agent_relay_process_nodejs_heap_size_used_bytes'));
    if (gauge(m, 'agent_relay_connections{kind="ws"}') < wsBefore) {
      cutAfterMs = Date.now() - stallAt;
      sentToSlowBeforeCut.count = toSlow.size;
      break;
    }
  }
  t.ok(cutAfterMs >= 0, `the relay cut the slow socket (after ${cutAfterMs} ms of not reading)`);
  bulkOn = false;
  // The slow one reads again: it sees the cut, reconnects and replays its backlog from its cursor,
  // while the others carry on under the same steady load (still measured).
  (stalled as unknown as { _socket: { resume(): void } })._socket.resume();
  const resumedAt = Date.now();
  let caughtUpMs = -1;
  void until(() => [...toSlow].every((id) => slowIds.includes(id)), 60_000, 'catch-up').then(() => (caughtUpMs = Date.now() - resumedAt), () => undefined);
  await sleep(AFTER_CUT_MS);
  const after = await scrape(relay.url);
  rssMax = Math.max(rssMax, gauge(after, 'agent_relay_process_process_resident_memory_bytes'));
  heapMax = Math.max(heapMax, gauge(after, 'agent_relay_process_nodejs_heap_size_used_bytes'));
  phase = 'after';
  running = false;
  await Promise.all([steady, bulkLoop]);
  await until(() => [...toSlow].every((id) => slowIds.includes(id)), 60_000, 'the slow subscriber to catch up').catch((e: Error) => t.fail(e.message));

  const missing = [...toSlow].filter((id) => !slowIds.includes(id)).length;
  const duplicates = slowIds.length - new Set(slowIds).size;
  const p99Base = percentile(latency.baseline, 99);
  const p99Stall = percentile(latency.stall, 99);
  const growthMiB = (rssMax - rssBefore) / 2 ** 20;
  t.equal(slowCloses[0], CLOSE_CODES.slowConsumer, `the slow socket was closed with 4001 (closes seen: ${slowCloses.join(', ')})`);
  t.match(relay.stdout(), /slow consumer disconnected/, 'the relay logged the slow consumer');
  t.ok(growthMiB <= 50, `relay memory growth stayed bounded (${growthMiB.toFixed(1)} MiB RSS ≤ 50 MiB)`);
  t.ok(fast.every((rpc) => rpc.closeCode === null), 'no fast subscriber was disconnected');
  t.ok(p99Stall <= 2 * Math.max(p99Base, 1), `the fast subscribers' p99 stayed within 2× baseline (${p99Stall.toFixed(2)} ms vs ${p99Base.toFixed(2)} ms)`);
  t.equal(missing, 0, `the slow subscriber got every message after reconnecting (${toSlow.size})`);
  t.equal(duplicates, 0, 'and none twice');
  figure(t, 'slow-consumer', {
    fast: FAST,
    backpressure_limit_bytes: LIMIT,
    cut_after_ms: cutAfterMs,
    messages_to_slow_before_cut: sentToSlowBeforeCut.count,
    slow_closes: slowCloses.join('/'),
    slow_caught_up_ms: caughtUpMs,
    rss_before_mib: rssBefore / 2 ** 20,
    rss_growth_mib: growthMiB,
    heap_growth_mib: (heapMax - heapBefore) / 2 ** 20,
    fast_p99_baseline_ms: p99Base,
    fast_p99_stall_ms: p99Stall,
    ratio: p99Stall / Math.max(p99Base, 1),
    fast_samples: latency.baseline.length + latency.stall.length,
    slow_received: slowIds.length,
    slow_received_before_stall: idsBeforeStall,
    slow_missing: missing,
    slow_duplicates: duplicates,
  });
});
