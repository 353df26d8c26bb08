import { createHmac, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { CallbackPolicy } from '../../broker/domain/callbacks.js';
import { ManualClock, startRelay, type TestRelay } from '../helpers/relay.js';
import { connectAgent, type WsRpc } from '../helpers/ws-client.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Task lifecycle callbacks against real node:http receivers on 127.0.0.1: Standard Webhooks
 * signatures checked independently with node:crypto, retries on the injected clock with a fixed
 * jitter source (so every backoff delay is exact), Retry-After, timeouts, redirects not followed,
 * dead letters seen through task/get, per-task ordering, resume from the durable outbox after a
 * restart, and integration-signed callbacks of tasks created through webhook ingress.
 *
 * The dispatcher wakes itself with real timers, but due-ness is decided by the injected clock, so
 * nothing is attempted until the test moves the clock; the test then calls `relay.callbacks.run()`
 * and waits for what it expects to see (bounded safety nets, never timing assertions).
 */

const RELAY_SECRET = `whsec_${randomBytes(32).toString('base64')}`;
const OTHER_SECRET = `whsec_${randomBytes(32).toString('base64')}`;

/** base 1000 ms, fixed jitter 0.5: retry k (k = 1, 2, …) waits floor(0.5 · 1000 · 2^(k-1)) = 500, 1000, 2000 … */
const POLICY: Partial<CallbackPolicy> = { maxAttempts: 5, baseDelayMs: 1000, maxDelayMs: 60_000, timeoutMs: 200, random: () => 0.5 };
const delayAfter = (attempts: number): number => Math.floor(0.5 * Math.min(60_000, 1000 * 2 ** (attempts - 1)));

type Reply = { status: number; headers?: Record<string, string> } | 'hang';

interface Hit {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  json: any;
}

/** A real HTTP receiver that answers from a script (then `fallback`) and records every request. */
class Receiver {
  readonly hits: Hit[] = [];
  readonly script: Reply[] = [];
  fallback: Reply = { status: 200 };
  private constructor(
    readonly server: http.Server,
    readonly port: number,
  ) {}

  static async start(t: Test, port = 0): Promise<Receiver> {
    const server = http.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    const r = new Receiver(server, (server.address() as AddressInfo).port);
    server.on('request', (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        let json: unknown = null;
        try {
          json = JSON.parse(body.toString('utf8'));
        } catch {
          json = null;
        }
        r.hits.push({ path: req.url ?? '', headers: req.headers, body, json });
        const reply = r.script.shift() ?? r.fallback;
        if (reply === 'hang') return; // never answer: the relay's timeout must give up
        res.writeHead(reply.status, reply.headers ?? {});
        res.end('ok');
      });
    });
    t.teardown(() => r.close());
    return r;
  }

  url(path = '/hook'): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  close(): Promise<void> {
    if (!this.server.listening) return Promise.resolve();
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

/** Standard Webhooks, computed here with node:crypto rather than with the relay's own code. */
function verifySignature(secret: string, hit: Hit): boolean {
  const id = String(hit.headers['webhook-id'] ?? '');
  const ts = String(hit.headers['webhook-timestamp'] ?? '');
  const sig = String(hit.headers['webhook-signature'] ?? '');
  if (!id || !/^\d+$/.test(ts) || !sig) return false;
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  const expected = `v1,${createHmac('sha256', key).update(`${id}.${ts}.`).update(hit.body).digest('base64')}`;
  return sig.split(' ').some((s) => s === expected);
}

/**
 * One dispatcher pass, awaited, behind a safety net: a dispatcher that never settles (say, one that
 * retries without end) fails the test in seconds, and teardown then stops it. Never a timing assertion.
 */
async function pass(relay: { callbacks: { run(): Promise<void> } }, ms = 5000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const net = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`dispatcher pass did not finish within ${ms} ms`)), ms);
  });
  try {
    await Promise.race([relay.callbacks.run(), net]);
  } finally {
    clearTimeout(timer);
  }
}

interface CallbackRow {
  webhookId: string;
  eventId: number;
  url: string;
  state: 'pending' | 'delivered' | 'dead';
  attempts: number;
  nextAt: number;
  lastStatus: number | null;
  lastError: string | null;
}

async function callbacksOf(rpc: WsRpc, taskId: number): Promise<CallbackRow[]> {
  const r = await rpc.call('task/get', { id: taskId });
  return r.callbacks as CallbackRow[];
}

/** Wait until the task's callback number `i` has been attempted `attempts` times, and return the rows. */
async function afterAttempt(rpc: WsRpc, taskId: number, i: number, attempts: number): Promise<CallbackRow[]> {
  let rows: CallbackRow[] = [];
  await waitFor(async () => {
    rows = await callbacksOf(rpc, taskId);
    return (rows[i]?.attempts ?? 0) >= attempts;
  }, `callback ${i} of task ${taskId} to be attempted ${attempts}×`);
  return rows;
}

async function setup(t: Test, policy: Partial<CallbackPolicy> = POLICY, dir?: string) {
  const clock = new ManualClock(1_700_000_000_700); // 0.7 s into a second: a 500 ms retry lands in the next one
  const relay = await startRelay(t, { allowPrivateCallbacks: true, callbackSecret: RELAY_SECRET }, { clock, callbackPolicy: policy, ...(dir ? { dir } : {}) });
  const boss = await connectAgent(t, relay.wsUrl, { id: 'boss' });
  const worker = await connectAgent(t, relay.wsUrl, { id: 'worker' });
  return { clock, relay, boss, worker };
}

async function createTask(rpc: WsRpc, callbackUrl: string, title = 'build it'): Promise<number> {
  const r = await rpc.call('task/create', { title, target: 'worker', callbackUrl });
  return r.task.id as number;
}

t.test('a 500 is retried on the backoff schedule of the injected clock, then a 200 delivers; one webhook-id, valid signatures', async (t) => {
  const { clock, relay, boss } = await setup(t);
  const rx = await Receiver.start(t);
  rx.script.push({ status: 500 });
  const t0 = clock.now();
  const taskId = await createTask(boss.rpc, rx.url());

  // The enqueue wakes the dispatcher: the first attempt is due at once.
  let rows = await afterAttempt(boss.rpc, taskId, 0, 1);
  t.equal(rx.hits.length, 1, 'first attempt reached the receiver');
  t.match(rows[0], { state: 'pending', attempts: 1, lastStatus: 500, lastError: null }, 'a 500 is a failure, retry pending');
  t.equal(rows[0]!.nextAt, t0 + delayAfter(1), 'retry scheduled exactly base·2^0·random = 500 ms later on the injected clock');

  clock.advance(delayAfter(1) - 1);
  await pass(relay);
  t.equal(rx.hits.length, 1, 'no attempt 1 ms before nextAt');
  t.equal((await callbacksOf(boss.rpc, taskId))[0]!.attempts, 1, 'attempt count unchanged before nextAt');

  clock.advance(1);
  await pass(relay);
  rows = await afterAttempt(boss.rpc, taskId, 0, 2);
  t.equal(rx.hits.length, 2, 'the retry happened at nextAt');
  t.match(rows[0], { state: 'delivered', attempts: 2, lastStatus: 200, lastError: null }, 'delivered on the 200');

  const [first, second] = rx.hits as [Hit, Hit];
  for (const hit of [first, second]) {
    t.ok(verifySignature(RELAY_SECRET, hit), 'signature verifies with the relay callback secret');
    t.notOk(verifySignature(OTHER_SECRET, hit), 'and not with another secret (the check can fail)');
    t.notOk(verifySignature(RELAY_SECRET, { ...hit, body: Buffer.concat([hit.body, Buffer.from(' ')]) }), 'a changed body does not verify');
    t.equal(hit.headers['content-type'], 'application/json');
    t.equal(hit.path, '/hook');
  }
  t.equal(first.headers['webhook-id'], second.headers['webhook-id'], 'every retry of one event carries the same webhook-id');
  t.equal(first.headers['webhook-id'], rows[0]!.webhookId, 'the webhook-id task/get reports');
  t.equal(first.headers['webhook-timestamp'], String(Math.floor(t0 / 1000)), 'timestamp of the first attempt from the injected clock');
  t.equal(second.headers['webhook-timestamp'], String(Math.floor((t0 + delayAfter(1)) / 1000)), 'retry re-timestamped (and re-signed) at its own attempt time');
  t.equal(first.body.toString(), second.body.toString(), 'same payload on the retry');
  t.match(first.json, { type: 'task.created', data: { task: { id: taskId, callbackUrl: rx.url() }, event: { kind: 'task.created', taskId, id: rows[0]!.eventId } } });
  t.equal(first.json.timestamp, new Date(t0).toISOString(), 'payload timestamp is the event time');
});

t.test('429 with Retry-After: 2 schedules the next attempt 2 s later, not at the backoff delay', async (t) => {
  const { clock, relay, boss } = await setup(t);
  const rx = await Receiver.start(t);
  rx.script.push({ status: 429, headers: { 'retry-after': '2' } });
  const t0 = clock.now();
  const taskId = await createTask(boss.rpc, rx.url());

  let rows = await afterAttempt(boss.rpc, taskId, 0, 1);
  t.match(rows[0], { state: 'pending', attempts: 1, lastStatus: 429 });
  t.equal(rows[0]!.nextAt, t0 + 2000, 'nextAt = attempt time + Retry-After (2 s), not + 500 ms backoff');

  clock.advance(delayAfter(1)); // where plain backoff would have retried
  await pass(relay);
  clock.advance(2000 - delayAfter(1) - 1);
  await pass(relay);
  t.equal(rx.hits.length, 1, 'no attempt before Retry-After elapsed');

  clock.advance(1);
  await pass(relay);
  rows = await afterAttempt(boss.rpc, taskId, 0, 2);
  t.equal(rx.hits.length, 2);
  t.match(rows[0], { state: 'delivered', attempts: 2, lastStatus: 200 });
  t.equal(rx.hits[0]!.headers['webhook-id'], rx.hits[1]!.headers['webhook-id'], 'same webhook-id on the retry');
  t.ok(
    rx.hits.every((h) => verifySignature(RELAY_SECRET, h)),
    'both attempts signed',
  );
});

t.test('a receiver that never answers times out (timeoutMs) and counts as a failure', async (t) => {
  const { clock, relay, boss } = await setup(t);
  const rx = await Receiver.start(t);
  rx.script.push('hang');
  const t0 = clock.now();
  const taskId = await createTask(boss.rpc, rx.url());

  let rows = await afterAttempt(boss.rpc, taskId, 0, 1);
  t.equal(rx.hits.length, 1, 'the request arrived and was left hanging');
  t.match(rows[0], { state: 'pending', attempts: 1, lastStatus: null, lastError: /no answer within 200 ms/ }, 'timeout recorded as the error');
  t.equal(rows[0]!.nextAt, t0 + delayAfter(1), 'retried on the ordinary backoff');

  clock.advance(delayAfter(1));
  await pass(relay);
  rows = await afterAttempt(boss.rpc, taskId, 0, 2);
  t.match(rows[0], { state: 'delivered', attempts: 2, lastStatus: 200, lastError: null });
  t.equal(rx.hits.length, 2);
  t.equal(rx.hits[0]!.headers['webhook-id'], rx.hits[1]!.headers['webhook-id']);
});

t.test('a 302 is not followed (the target gets zero hits), counts as a failure, and after maxAttempts the callback is a dead letter', async (t) => {
  const { clock, relay, boss } = await setup(t, { ...POLICY, maxAttempts: 3 });
  const elsewhere = await Receiver.start(t);
  const rx = await Receiver.start(t);
  rx.fallback = { status: 302, headers: { location: elsewhere.url('/stolen') } };
  const t0 = clock.now();
  const taskId = await createTask(boss.rpc, rx.url());

  let rows = await afterAttempt(boss.rpc, taskId, 0, 1);
  t.match(rows[0], { state: 'pending', attempts: 1, lastStatus: 302, lastError: 'redirect not followed' });
  t.equal(rows[0]!.nextAt, t0 + 500);

  clock.advance(500);
  await pass(relay);
  rows = await afterAttempt(boss.rpc, taskId, 0, 2);
  t.match(rows[0], { state: 'pending', attempts: 2, lastStatus: 302 });
  t.equal(rows[0]!.nextAt, t0 + 500 + 1000, 'second retry waits base·2^1·random = 1000 ms');

  clock.advance(999);
  await pass(relay);
  t.equal(rx.hits.length, 2, 'not before nextAt');
  clock.advance(1);
  await pass(relay);
  rows = await afterAttempt(boss.rpc, taskId, 0, 3);
  t.match(rows[0], { state: 'dead', attempts: 3, lastStatus: 302, lastError: 'redirect not followed' }, 'dead letter after 3 attempts, visible in task/get');
  t.equal(rx.hits.length, 3);
  t.equal(new Set(rx.hits.map((h) => h.headers['webhook-id'])).size, 1, 'all three attempts carry one webhook-id');
  t.ok(rx.hits.every((h) => verifySignature(RELAY_SECRET, h)));

  // Given up means given up: however far the clock moves, nothing more is sent.
  clock.advance(60 * 60_000);
  await pass(relay);
  await pass(relay);
  t.equal(rx.hits.length, 3, 'no attempt after the dead letter');
  t.match((await callbacksOf(boss.rpc, taskId))[0], { state: 'dead', attempts: 3 });
  t.equal(elsewhere.hits.length, 0, 'the redirect target was never contacted');
  t.ok(
    relay.logs.some((l) => l.msg === 'callback dead-lettered' && l.taskId === taskId),
    'the dead letter is logged',
  );
});

t.test('callbacks of one task arrive in event order, a failing head holding the rest back', async (t) => {
  const { clock, relay, boss, worker } = await setup(t);
  const rx = await Receiver.start(t);
  rx.script.push({ status: 503 });
  const taskId = await createTask(boss.rpc, rx.url());
  await afterAttempt(boss.rpc, taskId, 0, 1); // task.created failed once: the head is pending

  const { claimToken } = await worker.rpc.call('task/claim', { id: taskId });
  await worker.rpc.call('task/update', { id: taskId, claimToken, progress: 40, note: 'halfway' });
  await worker.rpc.call('task/update', { id: taskId, claimToken, status: 'done' });

  let rows = await callbacksOf(boss.rpc, taskId);
  t.equal(rows.length, 4, 'four events, four outbox rows');
  t.same(
    rows.map((r) => r.attempts),
    [1, 0, 0, 0],
    'later events wait behind the pending head, though due',
  );
  await pass(relay);
  t.equal(rx.hits.length, 1, 'still nothing sent past the head');

  clock.advance(delayAfter(1));
  await pass(relay);
  await waitFor(() => rx.hits.length >= 5, 'the retried head and the three queued callbacks');
  rows = await afterAttempt(boss.rpc, taskId, 3, 1);
  t.same(
    rows.map((r) => r.state),
    ['delivered', 'delivered', 'delivered', 'delivered'],
  );
  t.same(
    rows.map((r) => r.attempts),
    [2, 1, 1, 1],
  );
  const delivered = rx.hits.slice(1);
  t.same(
    delivered.map((h) => h.json.type),
    ['task.created', 'task.claimed', 'task.updated', 'task.closed'],
    'arrived in event order',
  );
  const eventIds = delivered.map((h) => h.json.data.event.id as number);
  t.same(
    eventIds,
    [...eventIds].sort((a, b) => a - b),
    'event ids ascending',
  );
  t.same(
    delivered.map((h) => h.headers['webhook-id']),
    rows.map((r) => r.webhookId),
    'each with its own webhook-id, as task/get lists them',
  );
  t.ok(rx.hits.every((h) => verifySignature(RELAY_SECRET, h)));
  t.match(delivered[3]!.json.data, { task: { status: 'done' }, event: { kind: 'task.closed', data: { status: 'done' } } });
  t.equal(rx.hits.length, 5, 'nothing sent twice');
});

t.test('pending callbacks survive a restart: delivered exactly once each, with their original webhook-ids', async (t) => {
  const dir = t.testdir();
  // Find a free port, then leave it closed: the receiver is down while the events happen.
  const probe = await Receiver.start(t);
  const port = probe.port;
  await probe.close();
  const url = `http://127.0.0.1:${port}/hook`;

  const first = await setup(t, POLICY, dir);
  const t0 = first.clock.now();
  const taskId = await createTask(first.boss.rpc, url);
  let rows = await afterAttempt(first.boss.rpc, taskId, 0, 1);
  t.match(rows[0], { state: 'pending', attempts: 1, lastStatus: null, lastError: /ECONNREFUSED/ }, 'receiver down: connection refused, retry pending');
  const { claimToken } = await first.worker.rpc.call('task/claim', { id: taskId });
  await first.worker.rpc.call('task/update', { id: taskId, claimToken, status: 'done' });
  rows = await callbacksOf(first.boss.rpc, taskId);
  t.same(
    rows.map((r) => [r.state, r.attempts]),
    [
      ['pending', 1],
      ['pending', 0],
      ['pending', 0],
    ],
  );
  const webhookIds = rows.map((r) => r.webhookId);
  t.equal(new Set(webhookIds).size, 3, 'three distinct webhook-ids');
  await first.relay.close();

  const rx = await Receiver.start(t, port);
  const clock = first.clock; // the same time line continues
  const relay = await startRelay(t, { allowPrivateCallbacks: true, callbackSecret: RELAY_SECRET }, { dir, clock, callbackPolicy: POLICY });
  const observer = await connectAgent(t, relay.wsUrl, { id: 'observer' });
  rows = await callbacksOf(observer.rpc, taskId);
  t.same(
    rows.map((r) => r.webhookId),
    webhookIds,
    'the outbox came back from disk',
  );
  t.equal(rows[0]!.nextAt, t0 + delayAfter(1), 'with its schedule');
  await pass(relay);
  t.equal(rx.hits.length, 0, 'nothing sent before the head is due');

  clock.advance(delayAfter(1));
  await pass(relay);
  rows = await afterAttempt(observer.rpc, taskId, 2, 1);
  t.same(
    rows.map((r) => r.state),
    ['delivered', 'delivered', 'delivered'],
  );
  t.same(
    rx.hits.map((h) => h.headers['webhook-id']),
    webhookIds,
    'each delivered once, in order, with its original webhook-id',
  );
  t.same(
    rx.hits.map((h) => h.json.type),
    ['task.created', 'task.claimed', 'task.closed'],
  );
  t.ok(rx.hits.every((h) => verifySignature(RELAY_SECRET, h)));

  clock.advance(60 * 60_000);
  await pass(relay);
  t.equal(rx.hits.length, 3, 'exactly once: nothing re-sent later');
});

t.test('tasks created through webhook ingress get callbacks signed with the integration secret', async (t) => {
  const rx = await Receiver.start(t);
  const integrationSecret = `whsec_${randomBytes(32).toString('base64')}`;
  const dir = t.testdir();
  const file = join(dir, 'integrations.json');
  writeFileSync(file, JSON.stringify({ integrations: [{ name: 'ci', secret: integrationSecret, target: 'worker', callbackUrl: rx.url('/ci') }] }));
  const clock = new ManualClock(1_700_000_000_000);
  const relay: TestRelay = await startRelay(t, { allowPrivateCallbacks: true, callbackSecret: RELAY_SECRET, integrationsPath: file }, { dir, clock, callbackPolicy: POLICY });
  const worker = await connectAgent(t, relay.wsUrl, { id: 'worker' });

  const denied = await fetch(`${relay.url}/api/integrations/ci/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${RELAY_SECRET}`, 'content-type': 'application/json' },
    body: JSON.stringify({ title: 'nope' }),
  });
  t.equal(denied.status, 401, 'ingress needs the integration secret');

  const res = await fetch(`${relay.url}/api/integrations/ci/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${integrationSecret}`, 'content-type': 'application/json' },
    body: JSON.stringify({ title: 'build failed on main', dedupeKey: 'main-build' }),
  });
  t.equal(res.status, 201);
  const created = (await res.json()) as any;
  const taskId = created.task.id as number;
  t.match(created.task, { source: 'ci', target: 'worker', callbackUrl: rx.url('/ci') }, 'the integration’s callbackUrl applies');

  await worker.rpc.call('task/claim', { id: taskId });
  await afterAttempt(worker.rpc, taskId, 1, 1);
  t.equal(rx.hits.length, 2);
  t.same(
    rx.hits.map((h) => h.json.type),
    ['task.created', 'task.claimed'],
  );
  for (const hit of rx.hits) {
    t.equal(hit.path, '/ci');
    t.ok(verifySignature(integrationSecret, hit), 'signed with the integration secret');
    t.notOk(verifySignature(RELAY_SECRET, hit), 'not with the relay callback secret');
  }
  t.match(rx.hits[0]!.json.data.task, { id: taskId, source: 'ci' });
});

t.test("an integration's callbackSecret signs its callbacks instead of its ingress secret", async (t) => {
  const rx = await Receiver.start(t);
  const ingressSecret = `whsec_${randomBytes(32).toString('base64')}`;
  const callbackSecret = `whsec_${randomBytes(32).toString('base64')}`;
  const dir = t.testdir();
  const file = join(dir, 'integrations.json');
  writeFileSync(file, JSON.stringify({ integrations: [{ name: 'ci', secret: ingressSecret, callbackSecret, target: 'worker', callbackUrl: rx.url('/ci') }] }));
  const clock = new ManualClock(1_700_000_000_000);
  const relay: TestRelay = await startRelay(t, { allowPrivateCallbacks: true, integrationsPath: file }, { dir, clock, callbackPolicy: POLICY });
  const worker = await connectAgent(t, relay.wsUrl, { id: 'worker' });
  const res = await fetch(`${relay.url}/api/integrations/ci/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ingressSecret}`, 'content-type': 'application/json' },
    body: JSON.stringify({ title: 'build failed on main' }),
  });
  t.equal(res.status, 201, 'ingress still takes the ingress secret');
  const taskId = ((await res.json()) as any).task.id as number;
  await afterAttempt(worker.rpc, taskId, 0, 1);
  t.equal(rx.hits.length, 1);
  t.ok(verifySignature(callbackSecret, rx.hits[0]!), 'signed with the callbackSecret');
  t.notOk(verifySignature(ingressSecret, rx.hits[0]!), 'not with the ingress secret: a callback cannot pass as an ingress delivery');
  const replayed = await fetch(`${relay.url}/api/integrations/ci/events`, {
    method: 'POST',
    headers: {
      'webhook-id': String(rx.hits[0]!.headers['webhook-id']),
      'webhook-timestamp': String(rx.hits[0]!.headers['webhook-timestamp']),
      'webhook-signature': String(rx.hits[0]!.headers['webhook-signature']),
      'content-type': 'application/json',
    },
    body: rx.hits[0]!.body.toString('utf8'),
  });
  t.equal(replayed.status, 401, 'the callback replayed to the ingress is refused');
});
