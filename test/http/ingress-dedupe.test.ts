import t, { type Test } from 'tap';
import Database from 'better-sqlite3';
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startRelay, type TestRelay } from '../helpers/relay.js';

/**
 * Webhook ingress under concurrency: dedupe by (source, dedupeKey) and replay refusal by delivery
 * id hold when many deliveries race, over real HTTP into a real relay and its SQLite file. The
 * signatures are computed here from the specs (Standard Webhooks, GitHub), not by the relay.
 */

// ---------------------------------------------------------------------------------------------
// Independent signers and helpers (node:crypto only).

function swSign(secret: string, id: string, ts: number | string, body: string): string {
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  return `v1,${createHmac('sha256', key).update(`${id}.${ts}.`).update(body).digest('base64')}`;
}

function ghSign(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

const nowSec = () => Math.floor(Date.now() / 1000);
const whsec = () => `whsec_${randomBytes(32).toString('base64')}`;

type Scheme = 'bearer' | 'bearer+id' | 'standard' | 'github';

interface Delivery {
  integration: string;
  key: string;
  body: string;
  scheme: Scheme;
  /** webhook-id or X-GitHub-Delivery; none for plain bearer. */
  id: string | null;
}

/** Headers for a delivery, signed now (a retry of the same id gets a fresh timestamp and signature). */
function headersFor(d: Delivery, secret: string): Record<string, string> {
  switch (d.scheme) {
    case 'bearer':
      return { authorization: `Bearer ${secret}` };
    case 'bearer+id':
      return { authorization: `Bearer ${secret}`, 'webhook-id': d.id! };
    case 'standard': {
      const ts = nowSec();
      return { 'webhook-id': d.id!, 'webhook-timestamp': String(ts), 'webhook-signature': swSign(secret, d.id!, ts, d.body) };
    }
    case 'github':
      return { 'x-github-event': 'check_run', 'x-github-delivery': d.id!, 'x-hub-signature-256': ghSign(secret, d.body) };
  }
}

async function relayWith(t: Test, integrations: Array<{ name: string; secret: string; target?: string }>): Promise<TestRelay> {
  const dir = t.testdir();
  const path = join(dir, 'integrations.json');
  writeFileSync(path, JSON.stringify({ integrations }));
  const relay = await startRelay(t, { integrationsPath: path }, { dir });
  // A direct target must name a known agent.
  await rpc(relay, 'agent/register', { id: 'oncall' });
  return relay;
}

interface Reply {
  status: number;
  json: any;
}

async function deliver(relay: TestRelay, d: Delivery, secret: string): Promise<Reply> {
  const res = await fetch(`${relay.url}/api/integrations/${d.integration}/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headersFor(d, secret) },
    body: d.body,
  });
  const text = await res.text();
  let json: any = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = { unparsable: text };
  }
  return { status: res.status, json };
}

/** Every delivery of a batch in flight at once; batches one after another (2 cores). */
async function fire(relay: TestRelay, deliveries: Delivery[], secrets: Record<string, string>, batch: number): Promise<Reply[]> {
  const out: Reply[] = [];
  for (let i = 0; i < deliveries.length; i += batch) {
    out.push(...(await Promise.all(deliveries.slice(i, i + batch).map((d) => deliver(relay, d, secrets[d.integration]!)))));
  }
  return out;
}

async function rpc(relay: TestRelay, method: string, params: Record<string, unknown>): Promise<any> {
  const res = await fetch(`${relay.url}/rpc`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
  });
  const reply = (await res.json()) as { result?: unknown; error?: unknown };
  if (reply.error) throw new Error(`${method} failed: ${JSON.stringify(reply.error)}`);
  return reply.result;
}

interface Snapshot {
  tasks: number;
  messages: number;
  receipts: number;
  /** Task events by kind (agent presence events are not this test's business). */
  events: Record<string, number>;
}

/** Row counts through a separate read-only connection to the relay's database file. */
function snapshot(relay: TestRelay): Snapshot {
  const db = new Database(relay.config.dbPath, { readonly: true, fileMustExist: true });
  try {
    const n = (sql: string) => (db.prepare(sql).get() as { n: number }).n;
    const events: Record<string, number> = {};
    for (const r of db.prepare('SELECT kind, COUNT(*) AS n FROM events WHERE task_id IS NOT NULL GROUP BY kind').all() as Array<{ kind: string; n: number }>) events[r.kind] = r.n;
    return {
      tasks: n('SELECT COUNT(*) AS n FROM tasks'),
      messages: n('SELECT COUNT(*) AS n FROM messages'),
      receipts: n('SELECT COUNT(*) AS n FROM webhook_receipts'),
      events,
    };
  } finally {
    db.close();
  }
}

const SCHEMES: Scheme[] = ['bearer', 'standard', 'github', 'bearer+id'];

function makeDelivery(integration: string, key: string, scheme: Scheme, title = `alert ${key}`): Delivery {
  return {
    integration,
    key,
    body: JSON.stringify({ title, dedupeKey: key, meta: { nonce: randomUUID() } }),
    scheme,
    id: scheme === 'bearer' ? null : scheme === 'github' ? randomUUID() : `msg_${randomUUID()}`,
  };
}

// ---------------------------------------------------------------------------------------------

t.test('1,000 concurrent deliveries over 50 dedupe keys make exactly 50 tasks with 1,000 occurrences', async (t) => {
  const secrets = { alerts: whsec() };
  const relay = await relayWith(t, [{ name: 'alerts', secret: secrets.alerts, target: 'oncall' }]);
  const KEYS = 50;
  const N = 1000;
  const BATCH = 200;
  // Delivery i: key i % 50, scheme i % 4 — every batch of 200 races four deliveries of each of the 50 keys,
  // the first batch racing every key's creation.
  const deliveries = Array.from({ length: N }, (_, i) => makeDelivery('alerts', `k${i % KEYS}`, SCHEMES[i % SCHEMES.length]!));
  const withId = deliveries.filter((d) => d.id !== null).length;

  const replies = await fire(relay, deliveries, secrets, BATCH);

  const statuses: Record<number, number> = {};
  for (const r of replies) statuses[r.status] = (statuses[r.status] ?? 0) + 1;
  t.same(statuses, { 201: KEYS, 200: N - KEYS }, '50 answered 201 created, 950 answered 200 deduplicated, nothing refused');
  t.equal(replies.filter((r) => r.json?.duplicate === false).length, N, 'no delivery was mistaken for a replay');
  t.equal(replies.filter((r) => r.json?.created === true).length, KEYS, 'exactly 50 creates');

  // Per key: one task, one creator, and each delivery saw its own occurrence count 1..20.
  const byKey = new Map<string, Reply[]>();
  deliveries.forEach((d, i) => {
    byKey.set(d.key, [...(byKey.get(d.key) ?? []), replies[i]!]);
  });
  let perKeyOk = 0;
  for (const [key, rs] of byKey) {
    const ids = new Set(rs.map((r) => r.json?.task?.id));
    const seen = rs.map((r) => r.json?.task?.occurrences as number).sort((a, b) => a - b);
    const creators = rs.filter((r) => r.json?.created === true);
    if (
      ids.size === 1 &&
      creators.length === 1 &&
      creators[0]!.json.task.occurrences === 1 &&
      seen.every((n, i) => n === i + 1) &&
      rs.every((r) => r.json.task.dedupeKey === key && r.json.task.source === 'alerts')
    ) {
      perKeyOk++;
    } else {
      t.fail(`key ${key}: task ids ${[...ids].join(',')}, creators ${creators.length}, occurrences seen ${seen.join(',')}`);
    }
  }
  t.equal(perKeyOk, KEYS, 'every key: one task, one creator, occurrences 1..20 each seen once');

  // What the database holds.
  const snap = snapshot(relay);
  t.equal(snap.tasks, KEYS, 'exactly 50 task rows');
  t.same(snap.events, { 'task.created': KEYS, 'task.deduped': N - KEYS }, 'one created event per task, one deduped event per other delivery');
  t.equal(snap.messages, KEYS, 'each task announced once');
  t.equal(snap.receipts, withId, 'one receipt per delivery that carried an id');
  const tasks = (await rpc(relay, 'task/list', { limit: 1000 })).tasks as any[];
  t.equal(tasks.length, KEYS, 'task/list shows 50 tasks');
  t.equal(
    tasks.reduce((sum, x) => sum + x.occurrences, 0),
    N,
    'occurrences sum to 1,000',
  );
  t.ok(
    tasks.every((x) => x.occurrences === N / KEYS && x.status === 'open' && x.source === 'alerts'),
    'each task: 20 occurrences, open, source alerts',
  );
  t.same(new Set(tasks.map((x) => x.dedupeKey)), new Set(Array.from({ length: KEYS }, (_, i) => `k${i}`)), 'one task per key');

  // Replay storm: every delivery that carried an id is sent again, concurrently, freshly signed. All duplicates.
  const replayable = deliveries.filter((d) => d.id !== null);
  const taskOfKey = new Map(tasks.map((x) => [x.dedupeKey as string, x.id as number]));
  const again = await fire(relay, replayable, secrets, BATCH);
  t.equal(again.filter((r) => r.status === 200 && r.json?.duplicate === true).length, replayable.length, `all ${replayable.length} replays answered as duplicates`);
  t.equal(again.filter((r, i) => r.json?.taskId === taskOfKey.get(replayable[i]!.key)).length, replayable.length, 'each duplicate names the task its first delivery landed on');
  t.same(snapshot(relay), snap, 'the replay storm wrote nothing');
  const after = (await rpc(relay, 'task/list', { limit: 1000 })).tasks as any[];
  t.equal(
    after.reduce((sum, x) => sum + x.occurrences, 0),
    N,
    'occurrences still sum to 1,000',
  );
});

t.test('100 concurrent copies of one webhook-id (and one X-GitHub-Delivery) count once', async (t) => {
  const secrets = { alerts: whsec() };
  const relay = await relayWith(t, [{ name: 'alerts', secret: secrets.alerts, target: 'oncall' }]);
  const seed = await deliver(relay, makeDelivery('alerts', 'disk', 'bearer'), secrets.alerts);
  t.equal(seed.status, 201);
  const taskId = seed.json.task.id;

  for (const scheme of ['standard', 'github', 'bearer+id'] as const) {
    const before = snapshot(relay);
    const d = makeDelivery('alerts', 'disk', scheme);
    const replies = await fire(
      relay,
      Array.from({ length: 100 }, () => d),
      secrets,
      100,
    );
    const fresh = replies.filter((r) => r.json?.duplicate === false);
    const dups = replies.filter((r) => r.status === 200 && r.json?.duplicate === true && r.json.taskId === taskId);
    t.equal(fresh.length, 1, `${scheme}: exactly one copy is processed`);
    t.equal(fresh[0]?.json?.created, false, `${scheme}: as a dedupe of the open task`);
    t.equal(dups.length, 99, `${scheme}: the 99 others are duplicates naming the task`);
    const after = snapshot(relay);
    t.equal(after.tasks, before.tasks, `${scheme}: no task created`);
    t.equal(after.receipts, before.receipts + 1, `${scheme}: one receipt`);
    t.equal(after.events['task.deduped'] ?? 0, (before.events['task.deduped'] ?? 0) + 1, `${scheme}: one occurrence event`);
  }
  const got = await rpc(relay, 'task/get', { id: taskId });
  t.equal(got.task.occurrences, 4, 'seed + one per id: 4 occurrences, not 301');
});

t.test('dedupe is per source: the same dedupeKey from two integrations makes two tasks', async (t) => {
  const secrets = { grafana: whsec(), datadog: whsec() };
  const relay = await relayWith(t, [
    { name: 'grafana', secret: secrets.grafana, target: 'oncall' },
    { name: 'datadog', secret: secrets.datadog, target: 'oncall' },
  ]);

  // Same dedupeKey, and even the same webhook-id: receipts are per integration too.
  const sharedId = `msg_${randomUUID()}`;
  const g: Delivery = { ...makeDelivery('grafana', 'latency', 'standard'), id: sharedId };
  const d: Delivery = { ...makeDelivery('datadog', 'latency', 'standard'), id: sharedId };
  const [rg, rd] = await Promise.all([deliver(relay, g, secrets.grafana), deliver(relay, d, secrets.datadog)]);
  t.equal(rg.status, 201, 'grafana: created');
  t.equal(rd.status, 201, 'datadog: created, not a duplicate of grafana');
  t.not(rg.json.task.id, rd.json.task.id, 'two tasks');
  t.equal(rg.json.task.source, 'grafana');
  t.equal(rd.json.task.source, 'datadog');
  t.equal(snapshot(relay).tasks, 2);

  // 100 concurrent deliveries split over both integrations: each integration's task takes only its own.
  const mixed = Array.from({ length: 100 }, (_, i) => makeDelivery(i % 2 ? 'datadog' : 'grafana', 'latency', SCHEMES[i % SCHEMES.length]!));
  const replies = await fire(relay, mixed, secrets, 100);
  t.equal(replies.filter((r) => r.status === 200 && r.json?.created === false).length, 100, 'all 100 deduplicated');
  t.ok(
    replies.every((r, i) => r.json?.task?.id === (mixed[i]!.integration === 'grafana' ? rg.json.task.id : rd.json.task.id)),
    "each delivery landed on its own integration's task",
  );
  let tasks = (await rpc(relay, 'task/list', {})).tasks as any[];
  t.equal(tasks.length, 2, 'still two tasks');
  t.equal(tasks.find((x) => x.source === 'grafana').occurrences, 51);
  t.equal(tasks.find((x) => x.source === 'datadog').occurrences, 51);

  // A resolve from one integration closes only its own task.
  const resolve = JSON.stringify({ title: 'latency ok', dedupeKey: 'latency', action: 'resolve' });
  const r = await deliver(relay, { integration: 'datadog', key: 'latency', body: resolve, scheme: 'github', id: randomUUID() }, secrets.datadog);
  t.equal(r.status, 200);
  t.equal(r.json.task.id, rd.json.task.id, 'datadog resolved its own task');
  tasks = (await rpc(relay, 'task/list', {})).tasks as any[];
  t.equal(tasks.find((x) => x.source === 'datadog').status, 'done');
  t.equal(tasks.find((x) => x.source === 'grafana').status, 'open', "grafana's task is untouched");
});
