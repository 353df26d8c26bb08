import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { setPriority } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { startRelay } from '../helpers/relay.js';
import { WsRpc } from '../helpers/ws-client.js';
import { spawnTs } from '../helpers/child.js';
import { compareWindows, figure, LONG, probeWindow, seedFromEnv, sleep, uniqueDir, type Windows } from './support.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Fuzz: fast-check frames (fuzz-client.ts, its own process) against a relay running in this
 * process — malformed JSON, wrong types, bad and huge ids, unknown methods, invalid params, empty
 * and oversize batches, deep nesting, __proto__ and constructor keys, binary and oversize frames —
 * over the WebSocket, then the same over POST /rpc, the REST routes and webhook ingress. Each
 * answer must carry the JSON-RPC code (and id) the spec and contract give, or be silence for
 * notifications. Here: the relay stays up, Object.prototype is untouched, nothing forged was
 * written, nothing was logged as an internal error, and a probe call's p99 while the fuzzer runs
 * stays within 2× its p99 in the quiet windows between, each p99 taken over all the windows' samples
 * pooled (see compareWindows: a window's own p99 is its one longest pause).
 *
 * CI: 10,000 WebSocket frames + 10,000 HTTP requests; RELAY_LONG_TESTS=1: 1,000,000 of each.
 */

const WS_FRAMES = LONG ? 1_000_000 : 10_000;
const HTTP = LONG ? { rpc: 400_000, rest: 300_000, ingress: 300_000 } : { rpc: 4_000, rest: 3_000, ingress: 3_000 };
const MAX_FRAME = 64 * 1024;
const PROBES = 4;
// A p99 over calls means something only when pauses touch under 1% of them: each pause (a 3–6 ms
// minor GC in this process, about two a second while fuzzing) delays one call per probe. At a 10 ms
// gap the probes made ~360 calls a second, 2% of them in a pause, so the p99 was the pause length
// (ratios 0.9–3.0 from run to run); at 2 ms they make ~1,800, 0.4% in a pause (0.85–0.95).
const PROBE_GAP_MS = 2;
t.setTimeout(LONG ? 6 * 3600_000 : 300_000);

function prototypeSnapshot(): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const [name, proto] of [
    ['Object', Object.prototype],
    ['Array', Array.prototype],
    ['Function', Function.prototype],
    ['String', String.prototype],
  ] as const) {
    for (const key of Reflect.ownKeys(proto)) {
      const d = Object.getOwnPropertyDescriptor(proto, key)!;
      out.set(`${name}.${String(key)}`, d.value ?? d.get);
    }
  }
  return out;
}

t.test(`fuzz: ${WS_FRAMES} WebSocket frames and ${HTTP.rpc + HTTP.rest + HTTP.ingress} HTTP requests get the right answers; the relay is unharmed`, async (t) => {
  const seed = seedFromEnv();
  t.comment(`seed ${seed} (replay with RELAY_TEST_SEED=${seed})`);
  const dir = uniqueDir(t);
  const secret = `whsec_${randomBytes(24).toString('base64')}`;
  writeFileSync(join(dir, 'integrations.json'), JSON.stringify({ integrations: [{ name: 'fz', secret, target: 'broadcast' }] }));
  const relay = await startRelay(
    t,
    {
      maxFrameBytes: MAX_FRAME,
      rateLimitPerSec: 1_000_000,
      rateBurst: 1_000_000,
      httpRateLimitPerSec: 10_000_000,
      httpRateBurst: 10_000_000,
      integrationsPath: join(dir, 'integrations.json'),
      logLevel: 'warn',
    },
    { dir },
  );
  const protoBefore = prototypeSnapshot();
  // Several probe connections: more samples per window, so a window's p99 is not its one slowest call.
  const probes = await Promise.all(Array.from({ length: PROBES }, () => WsRpc.connect(t, relay.wsUrl)));

  const fuzzer = spawnTs(t, 'test/reliability/fuzz-client.ts', {
    env: {
      FUZZ_CONFIG: JSON.stringify({
        wsUrl: relay.wsUrl,
        httpUrl: relay.url,
        seed,
        wsFrames: WS_FRAMES,
        httpFrames: HTTP.rpc,
        restCases: HTTP.rest,
        ingressCases: HTTP.ingress,
        maxFrameBytes: MAX_FRAME,
        integration: 'fz',
        secret,
      }),
    },
  });
  // An outside client: it should not win CPU from the relay and the probe on a shared 2-core box.
  setPriority(fuzzer.pid, 10);
  let exited = false;
  void fuzzer.exited.then(() => (exited = true));
  await waitFor(() => fuzzer.stdout().includes('ready') || exited, 'the fuzzer to connect', 30_000);

  // Alternate quiet and fuzzed windows of probe calls until the fuzzer is done.
  const windows: Windows = { quiet: [], disturbed: [] };
  const probeFor = (ms: number) => probeWindow(probes, ms, PROBE_GAP_MS);
  await probeFor(300);
  const started = Date.now();
  while (!exited) {
    fuzzer.send('off\n');
    await sleep(50);
    windows.quiet.push(await probeFor(1000));
    fuzzer.send('on\n');
    await sleep(50);
    windows.disturbed.push(await probeFor(1000));
  }
  const elapsed = Date.now() - started;
  const exit = await fuzzer.exited;
  const lines = fuzzer.stdout().trim().split('\n');
  const summary = JSON.parse(lines.at(-1)!) as {
    fatal?: string;
    checked: number;
    wsChecked: number;
    wsMs: number;
    stray: number;
    mismatchCount: number;
    mismatches: unknown[];
    counts: Record<string, number>;
  };
  t.equal(exit.code, 0, `the fuzzer finished${summary.fatal ? `: ${summary.fatal}` : ''} ${fuzzer.stderr().slice(0, 500)}`);
  const total = WS_FRAMES + HTTP.rpc + HTTP.rest + HTTP.ingress;
  t.equal(summary.checked, total, `every case was sent and checked (${summary.checked})`);
  t.equal(summary.mismatchCount, 0, 'every answer carried the right code and id, or was correctly silent');
  t.same(summary.mismatches, [], 'mismatches (first 25)');
  t.equal(summary.stray, 0, 'no answer arrived that nothing asked for');

  // The relay is unharmed: prototypes, liveness, nothing forged stored, nothing internal.
  const protoAfter = prototypeSnapshot();
  const changed = [...new Set([...protoBefore.keys(), ...protoAfter.keys()])].filter((k) => protoBefore.get(k) !== protoAfter.get(k));
  t.same(changed, [], 'Object, Array, Function and String prototypes are untouched');
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'no polluted property on a fresh object');
  t.equal(Object.getPrototypeOf({}), Object.prototype, 'a fresh object still has Object.prototype');
  const fresh = await WsRpc.connect(t, relay.wsUrl);
  const reg = await fresh.call('agent/register', { id: 'after-fuzz' });
  const sent = await fresh.call('message/send', { to: 'after-fuzz', body: 'still here' });
  t.ok(reg.agentToken && sent.message.id > 0, 'the relay still registers agents and stores messages');
  const health = await fetch(`${relay.url}/healthz`);
  t.equal(health.status, 200, '/healthz is 200');
  await health.text();
  t.ok(
    probes.every((p) => p.closeCode === null),
    'no probe connection was dropped',
  );
  const store = relay.core.store;
  const forged = (await store.messages.all({ since: 0, limit: 1000, channel: null, threadId: null })).filter((m) => m.body === 'forged' || m.body === 'x').length;
  t.equal(forged, 0, 'no refused message/send was stored');
  t.equal(relay.core.agents.size, 1, 'no agent was registered by the fuzz (only the one registered after it)');
  const internal = relay.logs.filter((l) => Number(l.level) >= 50);
  t.same(
    internal.map((l) => l.msg),
    [],
    'nothing was logged as an error (no internal error answered)',
  );

  const c = compareWindows(windows);
  t.ok(
    c.pooledRatio <= 2,
    `the probe’s p99 while fuzzing stayed within 2× its quiet p99 (${c.pooledDisturbed.toFixed(2)} ms vs ${c.pooledQuiet.toFixed(2)} ms over ${c.samplesDisturbed} and ${c.samplesQuiet} calls)`,
  );
  const cats = summary.counts;
  const sum = (prefix: string) =>
    Object.entries(cats)
      .filter(([k]) => k.startsWith(prefix))
      .reduce((n, [, v]) => n + v, 0);
  figure(t, 'fuzz', {
    seed,
    ws_frames: summary.wsChecked,
    http_requests: summary.checked - summary.wsChecked,
    mismatches: summary.mismatchCount,
    stray: summary.stray,
    malformed_json: cats['malformed-json'] ?? 0,
    deep_nesting: cats['deep-nesting'] ?? 0,
    batches: cats.batch ?? 0,
    empty_batches: cats['empty-batch'] ?? 0,
    oversize_batches: cats['oversize-batch'] ?? 0,
    oversize_frames: (cats['oversize-frame'] ?? 0) + (cats['http-oversize'] ?? 0),
    binary_frames: cats['binary-frame'] ?? 0,
    rest_cases: sum('rest-'),
    ingress_cases: sum('ingress-'),
    prototype_changes: changed.length,
    relay_alive: health.status === 200,
    probe_p99_quiet_ms: c.pooledQuiet,
    probe_p99_fuzzing_ms: c.pooledDisturbed,
    ratio: c.pooledRatio,
    window_p99_median_quiet_ms: c.p99Quiet,
    window_p99_median_fuzzing_ms: c.p99Disturbed,
    ws_frames_per_s: Math.round(summary.wsChecked / (summary.wsMs / 1000)),
    elapsed_s: Math.round(elapsed / 1000),
  });
});
