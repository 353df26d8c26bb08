import { Agent, request } from 'node:http';
import { setPriority } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { FLOOD_RECONNECT_TOKENS } from '../../broker/transport/rate-limit.js';
import { spawnRelay } from '../helpers/relay-process.js';
import { startRelay, writeCounter } from '../helpers/relay.js';
import { connectAgent, WsRpc } from '../helpers/ws-client.js';
import { spawnTs, type TsChild } from '../helpers/child.js';
import { compareWindows, figure, probeWindow, ratios, sleep, uniqueDir, untilWithinTwice, type Windows } from './support.js';

/**
 * Rate limiting: a flooding client (its own process) is limited — -32005 answers and a 4003 close
 * on the WebSocket, 429 over HTTP — while another connection's latency holds: its p99 during the
 * flood stays within 2× its p99 without it. The relay is a real process too. HTTP is limited per
 * client address, so the HTTP bystanders call from 127.0.0.2-5 while the flood comes from 127.0.0.1.
 * Quiet and flooded windows alternate, so both see the same background load of a shared machine.
 */

const LIMIT = 200;
const FLOOD_PER_SEC = 4000;
// Latencies under 1 ms are scheduler noise on a shared 2-core box: the quiet p99 is floored there.
const FLOOR_MS = 1;
const ROUNDS = 8;
const BYSTANDERS = 4;
t.setTimeout(240_000);
const WINDOW_MS = 1000;

/** Alternate quiet and flooded windows of probing; returns each window's latencies. */
async function alternate(flooder: TsChild, probe: (ms: number) => Promise<number[]>): Promise<Windows & { seconds: number }> {
  // The flooder stands in for a client on another machine: at the lowest CPU priority, producing
  // the flood does not take the CPU from the relay or the probe on this shared 2-core box; the
  // relay still has to take every frame and request it sends.
  setPriority(flooder.pid, 19);
  const quiet: number[][] = [];
  const disturbed: number[][] = [];
  await probe(500);
  const started = performance.now();
  for (let r = 0; r < ROUNDS; r++) {
    quiet.push(await probe(WINDOW_MS));
    flooder.send('on\n');
    await sleep(200);
    disturbed.push(await probe(WINDOW_MS));
    flooder.send('off\n');
    await sleep(300);
  }
  flooder.send('quit\n');
  return { quiet, disturbed, seconds: (performance.now() - started) / 1000 };
}

async function probeHttp(port: number, from: string, ms: number): Promise<{ latencies: number[]; statuses: Record<number, number> }> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const latencies: number[] = [];
  const statuses: Record<number, number> = {};
  const end = Date.now() + ms;
  const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'agent/list' });
  while (Date.now() < end) {
    const t0 = performance.now();
    const status = await new Promise<number>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/rpc', method: 'POST', agent, localAddress: from, headers: { 'content-type': 'application/json' } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end(body);
    });
    latencies.push(performance.now() - t0);
    statuses[status] = (statuses[status] ?? 0) + 1;
    await sleep(10);
  }
  agent.destroy();
  return { latencies, statuses };
}

t.test('a flooding WebSocket is limited (-32005, then close 4003) without hurting another connection’s latency', async (t) => {
  const relay = await spawnRelay(t, { dbPath: join(uniqueDir(t), 'relay.db'), env: { AGENT_RELAY_RATE_LIMIT: String(LIMIT), AGENT_RELAY_RATE_BURST: String(LIMIT) } });
  // Several bystander connections probe at once: more samples per window (each stays well under
  // its own rate limit), so a window's p99 is not just its slowest call or two.
  const bystanders = await Promise.all(Array.from({ length: BYSTANDERS }, () => WsRpc.connect(t, relay.wsUrl)));
  const measure = async () => {
    const flooder = spawnTs(t, 'test/reliability/flooder.ts', { args: ['ws', relay.url, '60', String(FLOOD_PER_SEC)] });
    const windows = await alternate(flooder, (ms) => probeWindow(bystanders, ms));
    const exit = await flooder.exited;
    t.equal(exit.code, 0, `the flooder ran (${flooder.stderr().trim()})`);
    const stats = JSON.parse(flooder.stdout().trim()) as { sent: number; answered: number; limited: number; closes: Record<string, number>; connections: number };
    return { windows, stats, c: compareWindows(windows, FLOOR_MS) };
  };
  const runs = await untilWithinTwice(t, measure);
  // The limiter's own claims are checked on the first measurement; the latency claim on the last.
  const { windows, stats } = runs[0]!;
  const c = runs.at(-1)!.c;
  // One burst, then the rate: reconnecting after a 4003 close buys a few frames, not a fresh
  // burst (before, each of some 50 reconnections got one, and the flood was served 7x the rate).
  const bound = Math.ceil(LIMIT + FLOOD_RECONNECT_TOKENS * stats.connections + LIMIT * windows.seconds);
  t.ok(stats.limited > 0, `the flooder got -32005 answers (${stats.limited})`);
  // Once per flooded window at least: a flood that keeps going while the bucket refills is closed.
  t.ok((stats.closes['4003'] ?? 0) >= ROUNDS, `and its connections were closed with 4003 (${stats.closes['4003'] ?? 0} times in ${ROUNDS} flooded windows)`);
  t.ok(stats.answered <= bound, `it was served no more than one burst + rate × time (+ ${FLOOD_RECONNECT_TOKENS} per reconnection; ${stats.connections} connections) (${stats.answered} ≤ ${bound})`);
  t.ok(
    bystanders.every((b) => b.closeCode === null),
    'the other connections stayed open',
  );
  t.ok(c.ratio <= 2, `the other connection’s p99 stayed within 2× the quiet p99 (${ratios(runs)})`);
  figure(t, 'rate-limit-ws', {
    limit_per_s: LIMIT,
    flood_sent: stats.sent,
    flood_served: stats.answered,
    flood_served_bound: bound,
    flood_limited: stats.limited,
    closes_4003: stats.closes['4003'] ?? 0,
    flood_connections: stats.connections,
    bystander_p99_quiet_ms: c.p99Quiet,
    bystander_p99_flood_ms: c.p99Disturbed,
    pooled_p99_quiet_ms: c.pooledQuiet,
    pooled_p99_flood_ms: c.pooledDisturbed,
    ratio: c.ratio,
  });
});

t.test('an HTTP flood from one address gets 429 without hurting a client at another address', async (t) => {
  const relay = await spawnRelay(t, { dbPath: join(uniqueDir(t), 'relay.db'), env: { AGENT_RELAY_HTTP_RATE_LIMIT: String(LIMIT), AGENT_RELAY_HTTP_RATE_BURST: String(LIMIT) } });
  const statuses: Record<number, number> = {};
  // As on the WebSocket, several bystanders, each from its own address (HTTP is limited per address).
  const addresses = Array.from({ length: BYSTANDERS }, (_, i) => `127.0.0.${i + 2}`);
  const probe = async (ms: number) => {
    const results = await Promise.all(addresses.map((from) => probeHttp(relay.port, from, ms)));
    for (const r of results) for (const [k, v] of Object.entries(r.statuses)) statuses[Number(k)] = (statuses[Number(k)] ?? 0) + v;
    return results.flatMap((r) => r.latencies);
  };
  const measure = async () => {
    const flooder = spawnTs(t, 'test/reliability/flooder.ts', { args: ['http', relay.url, '60', String(FLOOD_PER_SEC / 4)] });
    const windows = await alternate(flooder, probe);
    const exit = await flooder.exited;
    t.equal(exit.code, 0, `the flooder ran (${flooder.stderr().trim()})`);
    const stats = JSON.parse(flooder.stdout().trim()) as { sent: number; http: Record<string, number> };
    return { windows, stats, c: compareWindows(windows, FLOOR_MS) };
  };
  const runs = await untilWithinTwice(t, measure);
  const { windows, stats } = runs[0]!;
  const c = runs.at(-1)!.c;
  const bound = Math.ceil(LIMIT + LIMIT * windows.seconds);
  t.ok((stats.http['429'] ?? 0) > 0, `the flood got 429s (${stats.http['429'] ?? 0} of ${stats.sent})`);
  t.ok((stats.http['200'] ?? 0) <= bound, `the flood was served no more than burst + rate × time (${stats.http['200'] ?? 0} ≤ ${bound})`);
  t.same(Object.keys(statuses), ['200'], `the other addresses were never limited (${JSON.stringify(statuses)})`);
  t.ok(c.ratio <= 2, `its p99 stayed within 2× the quiet p99 (${ratios(runs)})`);
  figure(t, 'rate-limit-http', {
    limit_per_s: LIMIT,
    flood_sent: stats.sent,
    flood_200: stats.http['200'] ?? 0,
    flood_200_bound: bound,
    flood_429: stats.http['429'] ?? 0,
    bystander_statuses: JSON.stringify(statuses),
    bystander_p99_quiet_ms: c.p99Quiet,
    bystander_p99_flood_ms: c.p99Disturbed,
    pooled_p99_quiet_ms: c.pooledQuiet,
    pooled_p99_flood_ms: c.pooledDisturbed,
    ratio: c.ratio,
  });
});

t.test('a burst from one connection does not run ahead of another connection’s frame', async (t) => {
  const relay = await startRelay(t, { rateLimitPerSec: 1_000_000, rateBurst: 1_000_000 }, { dir: uniqueDir(t) });
  const burst = await WsRpc.connect(t, relay.wsUrl);
  const other = await WsRpc.connect(t, relay.wsUrl);
  const BURST = 3000;
  let answered = 0;
  burst.ws.on('message', () => answered++);
  const frame = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'agent/list' });
  for (let i = 0; i < BURST; i++) burst.ws.send(frame);
  const ahead = await other.call('agent/list', {}).then(() => answered);
  await burst.until(() => answered === BURST, 20_000, 'the whole burst');
  t.ok(ahead < BURST / 2, `the other connection was answered after ${ahead} of the burst’s ${BURST} frames, not after all of them`);
  figure(t, 'fair-dispatch', { burst: BURST, burst_answers_before_other: ahead });
});

t.test('frames waiting their turn are bounded: past the backpressure limit the connection is closed with 4003', async (t) => {
  const relay = await startRelay(t, { rateLimitPerSec: 1_000_000, rateBurst: 1_000_000, maxBackpressureBytes: 64 * 1024 }, { dir: uniqueDir(t) });
  const pipeliner = await WsRpc.connect(t, relay.wsUrl);
  const other = await WsRpc.connect(t, relay.wsUrl);
  // 4 MB of requests in one go: they cannot all start in one turn, and cannot all wait either.
  const frame = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'agent/list', params: { tag: 'x'.repeat(60) } });
  const pad = JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'message/list', params: { channel: 'c'.repeat(64) } });
  for (let i = 0; i < 20_000; i++) pipeliner.ws.send(i % 2 ? frame : pad);
  const code = await Promise.race([pipeliner.closed, sleep(10_000).then(() => -1)]);
  t.equal(code, 4003, 'the connection was closed with 4003 (reconnect and slow down)');
  t.same(await other.call('agent/list', {}), { agents: [] }, 'others are served');
  figure(t, 'waiting-frames-bound', { frames_sent: 20_000, close_code: code });
});

t.test('a burst spread over turns for fairness still shares group commits', async (t) => {
  const sends = writeCounter('message.send');
  const relay = await startRelay(t, { rateLimitPerSec: 1_000_000, rateBurst: 1_000_000 }, { dir: uniqueDir(t), observeCommit: sends.observeCommit });
  const a = await connectAgent(t, relay.wsUrl, { id: 'pipeliner' });
  const N = 320;
  // All written in one go: they arrive together, and start 32 per turn.
  await Promise.all(Array.from({ length: N }, (_, i) => a.rpc.call('message/send', { to: 'pipeliner', body: `b${i}` })));
  const batches = sends.perCommit;
  t.equal(sends.total(), N, 'every send was committed');
  // Without the held commit every turn's 32 frames would commit on their own (never more than 32).
  t.ok(Math.max(...batches) > 32, `${N} pipelined sends shared ${batches.length} commits (${batches.join(', ')}), not one per turn of 32`);
  figure(t, 'fair-dispatch-group-commit', { sends: N, commits: batches.length, largest_commit: Math.max(...batches) });
});
