import t, { type Test } from 'tap';
import Database from 'better-sqlite3';
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ManualClock, startRelay, type TestRelay } from '../helpers/relay.js';

/**
 * Webhook ingress, POST /api/integrations/:name/events, over real HTTP against a real relay and
 * its real SQLite file. Every signature here is computed by the test itself from the published
 * specs (Standard Webhooks, GitHub X-Hub-Signature-256), never by the relay's own helpers, and the
 * signers are pinned to the specs' published test vectors first, so a relay that verifies the
 * wrong bytes, the wrong key or the wrong encoding fails here.
 */

// ---------------------------------------------------------------------------------------------
// Independent signers (node:crypto only).

/** Standard Webhooks: key = base64-decoded part after `whsec_`; HMAC-SHA256 over `id.ts.body`; `v1,<base64>`. */
function swSign(secret: string, id: string, ts: number | string, body: string | Buffer): string {
  if (!secret.startsWith('whsec_')) throw new Error('test signer: Standard Webhooks secrets start with whsec_');
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  return `v1,${createHmac('sha256', key).update(`${id}.${ts}.`).update(body).digest('base64')}`;
}

/** GitHub: `sha256=` + hex HMAC-SHA256 of the raw body, keyed with the secret string exactly as configured. */
function ghSign(secret: string | Buffer, body: string | Buffer): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

const nowSec = () => Math.floor(Date.now() / 1000);

function swHeaders(secret: string, body: string | Buffer, o: { id?: string; ts?: number; signedBody?: string | Buffer } = {}): Record<string, string> {
  const id = o.id ?? `msg_${randomUUID()}`;
  const ts = o.ts ?? nowSec();
  return { 'webhook-id': id, 'webhook-timestamp': String(ts), 'webhook-signature': swSign(secret, id, ts, o.signedBody ?? body) };
}

function ghHeaders(secret: string | Buffer, body: string | Buffer, o: { delivery?: string; signedBody?: string | Buffer } = {}): Record<string, string> {
  return { 'x-github-event': 'issues', 'x-github-delivery': o.delivery ?? randomUUID(), 'x-hub-signature-256': ghSign(secret, o.signedBody ?? body) };
}

const bearer = (secret: string) => ({ authorization: `Bearer ${secret}` });

// ---------------------------------------------------------------------------------------------
// Relay, HTTP and database helpers.

const AGENTS = ['oncall', 'dev-team'];

const whsec = () => `whsec_${randomBytes(32).toString('base64')}`;

interface Setup {
  relay: TestRelay;
  secrets: Record<string, string>;
}

async function relayWith(t: Test, integrations: Array<Record<string, unknown>>, overrides: Parameters<typeof startRelay>[1] = {}, opts: Parameters<typeof startRelay>[2] = {}): Promise<Setup> {
  const dir = t.testdir();
  const path = join(dir, 'integrations.json');
  writeFileSync(path, JSON.stringify({ integrations }));
  const relay = await startRelay(t, { integrationsPath: path, ...overrides }, { ...opts, dir });
  // A direct target must name a known agent (task/create refuses an unknown id): register the ones used here.
  for (const id of AGENTS) await rpc(relay, 'agent/register', { id });
  return { relay, secrets: Object.fromEntries(integrations.map((i) => [i.name as string, i.secret as string])) };
}

interface Reply {
  status: number;
  json: any;
  text: string;
}

async function deliver(relay: TestRelay, name: string, body: string, headers: Record<string, string>): Promise<Reply> {
  const res = await fetch(`${relay.url}/api/integrations/${encodeURIComponent(name)}/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
  });
  const text = await res.text();
  let json: any = null;
  try {
    json = JSON.parse(text);
  } catch {
    /* left null: the assertions on json say what was expected */
  }
  return { status: res.status, json, text };
}

async function rpc(relay: TestRelay, method: string, params: Record<string, unknown>): Promise<any> {
  const res = await fetch(`${relay.url}/rpc`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(relay.config.token ? { authorization: `Bearer ${relay.config.token}` } : {}) },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
  });
  const reply = (await res.json()) as { result?: unknown; error?: unknown };
  if (reply.error) throw new Error(`${method} failed: ${JSON.stringify(reply.error)}`);
  return reply.result;
}

const TABLES = ['tasks', 'events', 'messages', 'delivery_marks', 'delivery_spans', 'webhook_receipts', 'outbox'] as const;
type Counts = Record<(typeof TABLES)[number], number>;

/** Row counts read through a separate read-only connection to the relay's database file. */
function counts(relay: TestRelay): Counts {
  const db = new Database(relay.config.dbPath, { readonly: true, fileMustExist: true });
  try {
    const out = {} as Counts;
    for (const table of TABLES) out[table] = (db.prepare(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n;
    return out;
  } finally {
    db.close();
  }
}

/** Send one delivery expected to be refused; assert status, error code and that no row was written. */
async function refused(
  t: Test,
  relay: TestRelay,
  what: string,
  name: string,
  body: string,
  headers: Record<string, string>,
  expect: { status: number; code?: number; message?: RegExp },
): Promise<Reply> {
  const before = counts(relay);
  const r = await deliver(relay, name, body, headers);
  t.equal(r.status, expect.status, `${what}: HTTP ${expect.status}`);
  if (expect.code !== undefined) t.equal(r.json?.error?.code, expect.code, `${what}: error code ${expect.code}`);
  if (expect.message) t.match(r.json?.error?.message ?? '', expect.message, `${what}: message says why`);
  t.notOk(r.json?.task, `${what}: no task in the answer`);
  t.same(counts(relay), before, `${what}: zero rows written`);
  return r;
}

const UNAUTHORIZED = -32001;
const NOT_FOUND = -32002;
const INVALID_PARAMS = -32602;
const PARSE_ERROR = -32700;

// ---------------------------------------------------------------------------------------------

t.test('the test signers reproduce the published vectors (Standard Webhooks spec, GitHub docs)', async (t) => {
  // https://github.com/standard-webhooks/standard-webhooks — the reference libraries' sign test.
  t.equal(swSign('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330, '{"test": 2432232314}'), 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=');
  // https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries — "Testing the webhook payload validation".
  t.equal(ghSign("It's a Secret to Everybody", 'Hello, World!'), 'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17');
});

t.test('the relay accepts the published vectors byte for byte (auth passes, then the body is judged)', async (t) => {
  // Clock pinned to the vector's timestamp so the 5-minute window admits it.
  const { relay } = await relayWith(
    t,
    [
      { name: 'svix', secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', target: 'oncall' },
      { name: 'gh', secret: "It's a Secret to Everybody", target: 'oncall' },
    ],
    {},
    { clock: new ManualClock(1614265330 * 1000) },
  );
  const sw = await refused(
    t,
    relay,
    'Standard Webhooks vector',
    'svix',
    '{"test": 2432232314}',
    { 'webhook-id': 'msg_p5jXN8AQM9LWM0D4loKWxJek', 'webhook-timestamp': '1614265330', 'webhook-signature': 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=' },
    { status: 400, code: INVALID_PARAMS, message: /title/ },
  );
  t.same(
    sw.json.error.data.issues.map((i: any) => i.path),
    ['title'],
    'authenticated; the vector body merely lacks a title',
  );
  await refused(
    t,
    relay,
    'GitHub vector',
    'gh',
    'Hello, World!',
    { 'x-github-delivery': randomUUID(), 'x-hub-signature-256': 'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17' },
    { status: 400, code: PARSE_ERROR },
  );
  // Control: the same vector one byte off is refused as unauthenticated, not judged.
  await refused(
    t,
    relay,
    'Standard Webhooks vector, body one byte off',
    'svix',
    '{"test": 2432232315}',
    { 'webhook-id': 'msg_p5jXN8AQM9LWM0D4loKWxJek', 'webhook-timestamp': '1614265330', 'webhook-signature': 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=' },
    { status: 401, code: UNAUTHORIZED },
  );
  await refused(
    t,
    relay,
    'GitHub vector, body one byte off',
    'gh',
    'Hello, World?',
    { 'x-github-delivery': randomUUID(), 'x-hub-signature-256': 'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17' },
    { status: 401, code: UNAUTHORIZED },
  );
});

t.test('each auth scheme creates a task with source = integration name and the integration defaults', async (t) => {
  const { relay, secrets } = await relayWith(t, [
    { name: 'alerts', secret: whsec(), target: 'oncall', channel: 'ops' },
    { name: 'github', secret: `gh-${randomBytes(24).toString('hex')}`, target: 'dev-team' },
  ]);

  // 1. Bearer secret. Fields the ingress does not map (source, from, claimable) cannot steer it.
  const b1 = JSON.stringify({ title: 'disk full on db1', body: 'free < 1%', dedupeKey: 'disk-db1', meta: { severity: 'critical', n: 3 }, source: 'evil', from: 'ext:evil' });
  const r1 = await deliver(relay, 'alerts', b1, bearer(secrets.alerts!));
  t.equal(r1.status, 201, 'bearer: 201 Created');
  t.equal(r1.json.created, true);
  t.equal(r1.json.duplicate, false);
  const task1 = r1.json.task;
  t.match(
    task1,
    {
      title: 'disk full on db1',
      body: 'free < 1%',
      dedupeKey: 'disk-db1',
      meta: { severity: 'critical', n: 3 },
      source: 'alerts',
      target: 'oncall',
      channel: 'ops',
      status: 'open',
      occurrences: 1,
    },
    'bearer: body fields mapped, source = integration, default target and channel applied',
  );

  // 2. Standard Webhooks; body target/channel override the defaults.
  const b2 = JSON.stringify({ title: 'latency high', target: 'tag:sre', channel: 'pager', action: 'trigger' });
  const r2 = await deliver(relay, 'alerts', b2, swHeaders(secrets.alerts!, b2));
  t.equal(r2.status, 201, 'Standard Webhooks: 201 Created');
  t.match(r2.json.task, { title: 'latency high', target: 'tag:sre', channel: 'pager', source: 'alerts', status: 'open', body: null, dedupeKey: null }, 'explicit target and channel win');

  // 3. GitHub X-Hub-Signature-256 + X-GitHub-Delivery, a plain (non-whsec) secret.
  const b3 = JSON.stringify({ title: 'issue opened: crash on start', meta: { repo: 'acme/app', issue: 42 } });
  const r3 = await deliver(relay, 'github', b3, ghHeaders(secrets.github!, b3));
  t.equal(r3.status, 201, 'GitHub: 201 Created');
  t.match(r3.json.task, { title: 'issue opened: crash on start', source: 'github', target: 'dev-team', channel: null, meta: { repo: 'acme/app', issue: 42 } });

  // 4. Multiple signatures in webhook-signature (key rotation): any matching v1 is enough.
  const b4 = JSON.stringify({ title: 'rotated key' });
  const h4 = swHeaders(secrets.alerts!, b4);
  h4['webhook-signature'] = `${swSign(whsec(), h4['webhook-id']!, h4['webhook-timestamp']!, b4)} ${h4['webhook-signature']}`;
  const r4 = await deliver(relay, 'alerts', b4, h4);
  t.equal(r4.status, 201, 'a signature list with one matching v1 entry is accepted');

  // What was answered is what was stored, read back through the public API.
  for (const r of [r1, r2, r3, r4]) {
    const got = await rpc(relay, 'task/get', { id: r.json.task.id });
    t.same(got.task, r.json.task, `task ${r.json.task.id} reads back as answered`);
    t.same(
      got.events.map((e: any) => e.kind),
      ['task.created'],
      `task ${r.json.task.id}: one task.created event`,
    );
    const msg = await rpc(relay, 'message/get', { id: got.task.messageId });
    t.match(msg.message, { taskId: got.task.id, to: got.task.target, claimable: true, from: `ext:${got.task.source}` }, `task ${r.json.task.id} announced to its target`);
  }
  const c = counts(relay);
  t.equal(c.tasks, 4);
  t.equal(c.webhook_receipts, 3, 'a receipt for each delivery that carried an id (Standard Webhooks x2, GitHub x1); none for bare bearer');
});

t.test('GitHub signatures use the configured secret string as the key, even a whsec_ one', async (t) => {
  const secret = whsec();
  const { relay } = await relayWith(t, [{ name: 'gh', secret, target: 'oncall' }]);
  const body = JSON.stringify({ title: 'push to main' });
  await refused(t, relay, 'GitHub signed with the base64-decoded key', 'gh', body, ghHeaders(Buffer.from(secret.slice(6), 'base64'), body), {
    status: 401,
    code: UNAUTHORIZED,
  });
  const ok = await deliver(relay, 'gh', body, ghHeaders(secret, body));
  t.equal(ok.status, 201, 'GitHub signed with the whole string "whsec_…" as typed into GitHub is accepted');
});

t.test('replays are answered as duplicates and write nothing', async (t) => {
  const { relay, secrets } = await relayWith(t, [
    { name: 'alerts', secret: whsec(), target: 'oncall' },
    { name: 'gh', secret: `gh-${randomBytes(24).toString('hex')}`, target: 'oncall' },
  ]);
  const s = secrets.alerts!;
  const body = JSON.stringify({ title: 'cpu hot', dedupeKey: 'cpu' });

  const first = swHeaders(s, body);
  const a = await deliver(relay, 'alerts', body, first);
  t.equal(a.status, 201);
  const taskId = a.json.task.id;

  // Byte-identical replay (a captured request resent).
  const same = await refused(t, relay, 'identical replay of a webhook-id', 'alerts', body, first, { status: 200 });
  t.same(same.json, { duplicate: true, taskId }, 'answered as a duplicate naming the task');
  // A sender retry: same webhook-id, fresh timestamp and signature (what the spec says retries look like).
  const retry = await refused(t, relay, 'retry of a webhook-id with a fresh signature', 'alerts', body, swHeaders(s, body, { id: first['webhook-id']! }), { status: 200 });
  t.same(retry.json, { duplicate: true, taskId });
  // Even with another body: the id is the idempotency key, so nothing new happens.
  const other = JSON.stringify({ title: 'something else entirely', dedupeKey: 'other' });
  const diff = await refused(t, relay, 'same webhook-id, different body', 'alerts', other, swHeaders(s, other, { id: first['webhook-id']! }), { status: 200 });
  t.same(diff.json, { duplicate: true, taskId });
  // A delivery already accepted is not judged again: a replay is a duplicate even if its body would now be refused.
  const junk = '{"title": ""';
  const stale = await refused(t, relay, 'same webhook-id, body no longer valid', 'alerts', junk, swHeaders(s, junk, { id: first['webhook-id']! }), { status: 200 });
  t.same(stale.json, { duplicate: true, taskId });
  // A replayed id with a bad signature is unauthenticated, not a duplicate: it learns nothing.
  const forged = await refused(
    t,
    relay,
    'known webhook-id with a bad signature',
    'alerts',
    body,
    { ...first, 'webhook-signature': swSign(whsec(), first['webhook-id']!, first['webhook-timestamp']!, body) },
    {
      status: 401,
      code: UNAUTHORIZED,
    },
  );
  t.notOk(forged.json?.taskId, 'no task id leaked to an unauthenticated caller');

  // Bearer auth that carries a webhook-id is replay-protected the same way.
  const bid = `msg_${randomUUID()}`;
  const b1 = await deliver(relay, 'alerts', body, { ...bearer(s), 'webhook-id': bid });
  t.equal(b1.status, 200, 'same dedupeKey, new delivery: deduplicated');
  t.equal(b1.json.created, false);
  t.equal(b1.json.task.occurrences, 2, 'a distinct delivery counts as an occurrence');
  const b2 = await refused(t, relay, 'bearer delivery replaying its webhook-id', 'alerts', body, { ...bearer(s), 'webhook-id': bid }, { status: 200 });
  t.same(b2.json, { duplicate: true, taskId });

  // GitHub: X-GitHub-Delivery is the replay key (GitHub's "redeliver" resends the same one).
  const gs = secrets.gh!;
  const gbody = JSON.stringify({ title: 'workflow failed', dedupeKey: 'wf' });
  const gh = ghHeaders(gs, gbody);
  const g1 = await deliver(relay, 'gh', gbody, gh);
  t.equal(g1.status, 201);
  const g2 = await refused(t, relay, 'replayed X-GitHub-Delivery', 'gh', gbody, gh, { status: 200 });
  t.same(g2.json, { duplicate: true, taskId: g1.json.task.id });

  const tasks = (await rpc(relay, 'task/list', {})).tasks;
  t.equal(tasks.length, 2, 'two tasks in all');
  t.equal(tasks.find((x: any) => x.id === taskId).occurrences, 2, 'replays did not add occurrences');
  t.equal(tasks.find((x: any) => x.id === g1.json.task.id).occurrences, 1);
});

t.test('action "resolve" with the same dedupeKey closes the task as done', async (t) => {
  const { relay, secrets } = await relayWith(t, [{ name: 'alerts', secret: whsec(), target: 'oncall' }]);
  const s = secrets.alerts!;
  const trigger = JSON.stringify({ title: 'disk full on db1', dedupeKey: 'disk-db1', action: 'trigger' });
  const resolve = JSON.stringify({ title: 'disk ok on db1', dedupeKey: 'disk-db1', action: 'resolve' });

  // A resolve that arrives before its trigger is 404 and burns neither rows nor its webhook-id.
  const early = swHeaders(s, resolve);
  await refused(t, relay, 'resolve with no open task', 'alerts', resolve, early, { status: 404, code: NOT_FOUND, message: /disk-db1/ });

  const a = await deliver(relay, 'alerts', trigger, swHeaders(s, trigger));
  t.equal(a.status, 201);
  const id = a.json.task.id;
  const a2 = await deliver(relay, 'alerts', trigger, swHeaders(s, trigger));
  t.equal(a2.json.task.occurrences, 2);

  // The sender retries the early resolve with the same webhook-id: now it lands.
  const r = await deliver(relay, 'alerts', resolve, swHeaders(s, resolve, { id: early['webhook-id']! }));
  t.equal(r.status, 200, 'resolve answers 200 (nothing created)');
  t.equal(r.json.created, false);
  t.equal(r.json.task.id, id, 'the matching task');
  t.equal(r.json.task.status, 'done');
  t.equal(r.json.task.progress, 100);
  t.type(r.json.task.closedAt, 'number');
  const got = await rpc(relay, 'task/get', { id });
  t.equal(got.task.status, 'done', 'stored as done');
  t.same(
    got.events.map((e: any) => e.kind),
    ['task.created', 'task.deduped', 'task.closed'],
  );
  t.equal(got.events[2].data.status, 'done');

  // Resolving again finds nothing open: 404, zero rows.
  await refused(t, relay, 'second resolve', 'alerts', resolve, swHeaders(s, resolve), { status: 404, code: NOT_FOUND });
  // A new trigger after the resolve is a new incident: a new task.
  const again = await deliver(relay, 'alerts', trigger, bearer(s));
  t.equal(again.status, 201);
  t.not(again.json.task.id, id, 'a closed task is not reopened by dedupe');
  t.equal(again.json.task.occurrences, 1);
});

t.test('bad deliveries are refused with zero rows written; signatures are checked before parsing', async (t) => {
  const { relay, secrets } = await relayWith(
    t,
    [
      { name: 'alerts', secret: whsec(), target: 'oncall', channel: 'ops' },
      { name: 'gh', secret: `gh-${randomBytes(24).toString('hex')}`, target: 'oncall' },
      { name: 'bare', secret: whsec() },
    ],
    { logLevel: 'trace' },
  );
  const s = secrets.alerts!;
  const gs = secrets.gh!;
  const good = JSON.stringify({ title: 'fine', dedupeKey: 'k1' });
  const tampered = JSON.stringify({ title: 'fine', dedupeKey: 'k2' });
  const U = { status: 401, code: UNAUTHORIZED };

  // Seed one task so "zero rows" is measured against a non-empty database.
  t.equal((await deliver(relay, 'alerts', good, swHeaders(s, good))).status, 201);

  // --- authentication
  await refused(t, relay, 'missing auth', 'alerts', good, {}, { ...U, message: /credentials/ });
  await refused(t, relay, 'wrong bearer secret', 'alerts', good, bearer(whsec()), U);
  await refused(t, relay, "another integration's secret as bearer", 'alerts', good, bearer(secrets.bare!), U);
  await refused(t, relay, 'bearer secret with a character dropped', 'alerts', good, bearer(s.slice(0, -1)), U);
  await refused(t, relay, 'Basic auth', 'alerts', good, { authorization: `Basic ${Buffer.from(`x:${s}`).toString('base64')}` }, U);
  await refused(t, relay, 'Standard Webhooks: tampered body', 'alerts', tampered, swHeaders(s, tampered, { signedBody: good }), U);
  await refused(t, relay, 'Standard Webhooks: trailing newline added', 'alerts', `${good}\n`, swHeaders(s, `${good}\n`, { signedBody: good }), U);
  await refused(t, relay, 'Standard Webhooks: wrong secret', 'alerts', good, swHeaders(whsec(), good), U);
  {
    const h = swHeaders(s, good);
    await refused(t, relay, 'Standard Webhooks: signature made for another webhook-id', 'alerts', good, { ...h, 'webhook-id': `msg_${randomUUID()}` }, U);
    await refused(t, relay, 'Standard Webhooks: signature made for another timestamp', 'alerts', good, { ...h, 'webhook-timestamp': String(Number(h['webhook-timestamp']) - 1) }, U);
    const { 'webhook-signature': _sig, ...noSig } = h;
    await refused(t, relay, 'Standard Webhooks: no webhook-signature', 'alerts', good, noSig, U);
    const { 'webhook-timestamp': _ts, ...noTs } = h;
    await refused(t, relay, 'Standard Webhooks: no webhook-timestamp', 'alerts', good, noTs, U);
    await refused(t, relay, 'Standard Webhooks: v1 prefix stripped', 'alerts', good, { ...h, 'webhook-signature': h['webhook-signature']!.slice(3) }, U);
  }
  await refused(t, relay, 'Standard Webhooks: stale timestamp (10 min old)', 'alerts', good, swHeaders(s, good, { ts: nowSec() - 600 }), { ...U, message: /timestamp/ });
  await refused(t, relay, 'Standard Webhooks: future timestamp (10 min ahead)', 'alerts', good, swHeaders(s, good, { ts: nowSec() + 600 }), { ...U, message: /timestamp/ });
  await refused(t, relay, 'Standard Webhooks: timestamp in milliseconds', 'alerts', good, swHeaders(s, good, { ts: Date.now() }), U);
  await refused(t, relay, 'GitHub: tampered body', 'gh', tampered, ghHeaders(gs, tampered, { signedBody: good }), U);
  await refused(t, relay, 'GitHub: wrong secret', 'gh', good, ghHeaders(`gh-${randomBytes(24).toString('hex')}`, good), U);
  await refused(t, relay, 'GitHub: sha1 X-Hub-Signature only', 'gh', good, { 'x-hub-signature': `sha1=${createHmac('sha1', gs).update(good).digest('hex')}`, 'x-github-delivery': randomUUID() }, U);
  await refused(t, relay, 'GitHub: uppercase hex', 'gh', good, { 'x-hub-signature-256': ghSign(gs, good).toUpperCase(), 'x-github-delivery': randomUUID() }, U);
  await refused(t, relay, "GitHub: signed with another integration's secret", 'gh', good, ghHeaders(s, good), U);

  // --- verification happens before parsing: bad bytes with a bad signature are 401, never 400.
  const notJson = '{"title": "unterminated';
  const badField = JSON.stringify({ title: 42 });
  await refused(t, relay, 'malformed JSON, bad Standard Webhooks signature', 'alerts', notJson, swHeaders(whsec(), notJson), U);
  await refused(t, relay, 'malformed JSON, no auth', 'alerts', notJson, {}, U);
  await refused(t, relay, 'malformed JSON, bad GitHub signature', 'gh', notJson, ghHeaders(`gh-${randomBytes(24).toString('hex')}`, notJson), U);
  await refused(t, relay, 'bad field, bad bearer', 'alerts', badField, bearer(whsec()), U);
  await refused(t, relay, 'bad field, stale timestamp', 'alerts', badField, swHeaders(s, badField, { ts: nowSec() - 600 }), U);

  // --- unknown integration
  await refused(t, relay, 'unknown integration', 'nope', good, swHeaders(s, good), { status: 404, code: NOT_FOUND, message: /nope/ });
  await refused(t, relay, 'unknown integration, bearer', 'nope', good, bearer(s), { status: 404, code: NOT_FOUND });
  await refused(t, relay, 'integration name of another case', 'ALERTS', good, bearer(s), { status: 404, code: NOT_FOUND });
  for (const raw of ['%ZZ', '%E0%A4%A', 'alerts%2F..']) {
    // A malformed percent-escape names no integration: 404, not an internal error.
    const before = counts(relay);
    const res = await fetch(`${relay.url}/api/integrations/${raw}/events`, { method: 'POST', headers: { 'content-type': 'application/json', ...bearer(s) }, body: good });
    const json = (await res.json()) as any;
    t.equal(res.status, 404, `path segment ${raw}: 404`);
    t.equal(json?.error?.code, NOT_FOUND, `path segment ${raw}: not found`);
    t.same(counts(relay), before, `path segment ${raw}: zero rows written`);
  }

  // --- authenticated but bad body: 400 naming the field, and the webhook-id is not burnt.
  const bad = async (what: string, body: string, field: string | RegExp, name = 'alerts') => {
    const h = name === 'gh' ? ghHeaders(gs, body) : swHeaders(secrets[name]!, body);
    const r = await refused(t, relay, what, name, body, h, { status: 400, code: INVALID_PARAMS, message: typeof field === 'string' ? new RegExp(`\\b${field}\\b`) : field });
    if (typeof field === 'string')
      t.ok(
        r.json?.error?.data?.issues?.some((i: any) => i.path === field),
        `${what}: issues name ${field}`,
      );
  };
  await bad('title missing', JSON.stringify({ body: 'x' }), 'title');
  await bad('title not a string', JSON.stringify({ title: 42 }), 'title');
  await bad('title empty', JSON.stringify({ title: '' }), 'title');
  await bad('title over 512 characters', JSON.stringify({ title: 'x'.repeat(513) }), 'title');
  await bad('target not an agent id / form', JSON.stringify({ title: 't', target: 'Not A Target!' }), 'target');
  await bad('channel not a string', JSON.stringify({ title: 't', channel: 7 }), 'channel');
  await bad('body not a string', JSON.stringify({ title: 't', body: { x: 1 } }), 'body');
  await bad('body over 256 KiB', JSON.stringify({ title: 't', body: 'b'.repeat(256 * 1024 + 1) }), 'body');
  await bad('dedupeKey empty', JSON.stringify({ title: 't', dedupeKey: '' }), 'dedupeKey');
  await bad('action unknown', JSON.stringify({ title: 't', action: 'acknowledge' }), 'action');
  await bad('lone surrogate in a meta value', JSON.stringify({ title: 't', meta: { note: 'x\ud800' } }), /^invalid params: meta\.note: contains a lone UTF-16 surrogate/);
  await bad('meta an array', JSON.stringify({ title: 't', meta: [1, 2] }), 'meta');
  await bad('callbackUrl not http(s)', JSON.stringify({ title: 't', callbackUrl: 'ftp://example.com/x' }), 'callbackUrl');
  await bad('resolve without dedupeKey', JSON.stringify({ title: 't', action: 'resolve' }), /dedupeKey/);
  await bad('no target and no integration default', JSON.stringify({ title: 't' }), /target/, 'bare');
  await bad('a JSON array', JSON.stringify([{ title: 't' }]), /invalid params/);
  await bad('GitHub: title missing', JSON.stringify({ action: 'opened', issue: { number: 1 } }), 'title', 'gh');
  await refused(t, relay, 'not JSON, valid signature', 'alerts', notJson, swHeaders(s, notJson), { status: 400, code: PARSE_ERROR, message: /JSON/ });
  await refused(t, relay, 'empty body, valid signature', 'alerts', '', swHeaders(s, ''), { status: 400, code: PARSE_ERROR });
  {
    // The webhook-id of a refused body is free for the corrected delivery.
    const id = `msg_${randomUUID()}`;
    const wrong = JSON.stringify({ title: '' });
    await refused(t, relay, 'bad body before its correction', 'alerts', wrong, swHeaders(s, wrong, { id }), { status: 400 });
    const right = JSON.stringify({ title: 'corrected' });
    const r = await deliver(relay, 'alerts', right, swHeaders(s, right, { id }));
    t.equal(r.status, 201, 'the corrected delivery under the same webhook-id is accepted');
  }

  // --- the size limit (default 1 MiB): just over is 413 with nothing written; exactly at it is served.
  const limit = relay.config.maxFrameBytes;
  const padded = (size: number) => {
    const head = JSON.stringify({ title: 'big', pad: '' });
    const json = `${head.slice(0, -2)}${'p'.repeat(size - head.length)}"}`;
    if (Buffer.byteLength(json) !== size) throw new Error('padding arithmetic');
    return json;
  };
  const over = padded(limit + 1);
  await refused(t, relay, 'body one byte over the limit, validly signed', 'alerts', over, swHeaders(s, over), { status: 413 });
  const huge = padded(limit * 3);
  await refused(t, relay, 'body three times the limit, validly signed', 'alerts', huge, swHeaders(s, huge), { status: 413 });
  const at = padded(limit);
  const atLimit = await deliver(relay, 'alerts', at, swHeaders(s, at));
  t.equal(atLimit.status, 201, 'a body of exactly the limit is served');

  // --- secrets never reach a log line, whatever was refused and why.
  const logs = relay.logText();
  t.ok(
    relay.logs.some((l) => l.msg === 'webhook refused'),
    'refusals were logged (the log is being captured)',
  );
  for (const [name, secret] of Object.entries(secrets)) {
    t.notOk(logs.includes(secret), `secret of ${name} not in the log`);
    if (secret.startsWith('whsec_')) t.notOk(logs.includes(secret.slice(6)), `key material of ${name} not in the log`);
  }
});

t.test('the 5-minute window is exactly ±300 s around the relay clock', async (t) => {
  const clock = new ManualClock(1_700_000_000_000);
  const now = 1_700_000_000;
  const { relay, secrets } = await relayWith(t, [{ name: 'alerts', secret: whsec(), target: 'oncall' }], {}, { clock });
  const s = secrets.alerts!;
  const body = (n: number) => JSON.stringify({ title: `edge ${n}` });
  for (const delta of [-300, 300, 0]) {
    const r = await deliver(relay, 'alerts', body(delta), swHeaders(s, body(delta), { ts: now + delta }));
    t.equal(r.status, 201, `timestamp ${delta >= 0 ? '+' : ''}${delta} s: accepted`);
  }
  for (const delta of [-301, 301, -86_400, 86_400]) {
    await refused(t, relay, `timestamp ${delta > 0 ? '+' : ''}${delta} s`, 'alerts', body(delta), swHeaders(s, body(delta), { ts: now + delta }), {
      status: 401,
      code: UNAUTHORIZED,
      message: /timestamp/,
    });
  }
  // The window follows the relay's clock: a delivery signed 6 minutes "ago" becomes valid only when the clock says so.
  clock.advance(-6 * 60_000);
  const r = await deliver(relay, 'alerts', body(1), swHeaders(s, body(1), { ts: now - 360 }));
  t.equal(r.status, 201, 'accepted once the relay clock is within the window');
});

t.test('with a relay token configured, ingress still authenticates by the integration secret alone', async (t) => {
  // GitHub and Standard Webhooks senders cannot add the relay token: the integration secret is the credential.
  const token = `relay-${randomBytes(16).toString('hex')}`;
  const { relay, secrets } = await relayWith(t, [{ name: 'gh', secret: `gh-${randomBytes(24).toString('hex')}`, target: 'broadcast' }], { token });
  const body = JSON.stringify({ title: 'release published' });
  const ok = await deliver(relay, 'gh', body, ghHeaders(secrets.gh!, body));
  t.equal(ok.status, 201, 'GitHub-signed delivery without the relay token is accepted');
  t.equal(ok.json.task.source, 'gh');
  await refused(t, relay, 'no credentials at all', 'gh', body, {}, { status: 401, code: UNAUTHORIZED });
  await refused(t, relay, 'tampered body', 'gh', `${body} `, ghHeaders(secrets.gh!, `${body} `, { signedBody: body }), { status: 401, code: UNAUTHORIZED });
  t.notOk(relay.logText().includes(token), 'the relay token is not logged');
  t.notOk(relay.logText().includes(secrets.gh!), 'the integration secret is not logged');
});
