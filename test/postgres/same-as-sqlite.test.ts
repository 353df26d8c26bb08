import { join } from 'node:path';
import pg from 'pg';
import t, { type Test } from 'tap';
import type { NewMessage, Outcome, RelayStore, StoredAgent, TaskCreateInput, WriteOp } from '../../broker/domain/store-port.js';
import { SqliteStore } from '../../broker/store/store.js';
import { PostgresStore } from '../../broker/store-postgres/store.js';
import { resourcesOverlap } from '../../protocol/index.js';
import { startPostgres } from '../helpers/postgres.js';
import { seeded } from '../helpers/random.js';
import { newMessage, storedAgent } from '../helpers/records.js';

/*
 * The same batches on a SQLite store and a PostgreSQL store answer the same outcomes and leave
 * the same rows: every field, numbers as numbers, meta and event data with their keys in the
 * order sent, callback payloads byte for byte.
 */

const server = await startPostgres(t);

async function bothStores(tt: Test) {
  const sqlite = await SqliteStore.open({ path: join(tt.testdir(), 'relay.db'), synchronous: 'FULL', busyTimeoutMs: 1000, signedSources: ['gh'] });
  const postgres = await PostgresStore.open({ url: await server.freshDatabase(), signedSources: ['gh'] });
  tt.teardown(async () => {
    await sqlite.close();
    await postgres.close();
  });
  return { sqlite, postgres };
}

const at = 1_700_000_000_123;
// Meta with nested keys out of order: both stores must keep them as sent.
const msg = (over: Partial<NewMessage> = {}): NewMessage => newMessage({ createdAt: at, meta: { z: 1, a: { y: [1, 'two', null], b: true } }, ...over });
const input = (over: Partial<TaskCreateInput> = {}): TaskCreateInput => ({
  title: 'build',
  target: 'tag:ci',
  body: null,
  channel: null,
  dedupeKey: null,
  callbackUrl: 'https://example.test/hook',
  meta: { zeta: 'é"\n', alpha: 2 },
  ...over,
});
const agent = (id: string, over: Partial<StoredAgent> = {}): Omit<StoredAgent, 'inboxFloor'> => {
  const { inboxFloor: _f, ...a } = storedAgent(id, { registeredAt: at, lastSeenAt: at, meta: { m: 1, c: 2 }, tags: ['x', 'a'], ...over });
  return a;
};

/** Batches planned on the outcomes so far (ids are read back from the SQLite answers). */
function* script(): Generator<WriteOp[], void, Outcome[]> {
  let o = yield [
    { op: 'agent.insert', at, agent: agent('bob'), maxAgents: 10, events: [{ kind: 'agent.online', agentId: 'bob', data: { client: 'x', resumed: false } }], bind: { node: 'n1' } },
    { op: 'agent.insert', at, agent: agent('carol'), maxAgents: 10, events: [] },
    { op: 'message.send', at, message: msg(), recipients: ['bob', 'carol'], task: null },
    { op: 'message.send', at, message: msg({ subject: 'S', body: 'second', channel: 'ops' }), recipients: ['bob'], task: null },
  ];
  const first = (o[2] as { value: { message: { id: number } } }).value.message.id;
  o = yield [
    { op: 'message.send', at: at + 1, message: msg({ replyTo: first, body: 'reply' }), recipients: ['carol'], task: null },
    { op: 'message.send', at: at + 1, message: msg({ claimable: true }), recipients: ['bob'], task: { ...input({ target: 'bob' }), source: 'alice' } },
    {
      op: 'task.create',
      at: at + 2,
      from: 'ext:gh',
      source: 'gh',
      input: input({ dedupeKey: 'k' }),
      action: 'trigger',
      announce: { from: 'ext:gh', recipients: ['bob'] },
      receipt: { integration: 'gh', deliveryId: 'd1' },
    },
    { op: 'task.create', at: at + 2, from: 'ext:gh', source: 'gh', input: input({ dedupeKey: 'k' }), action: 'trigger', announce: { unroutable: 'nobody' }, receipt: null },
    {
      op: 'task.create',
      at: at + 2,
      from: 'ext:gh',
      source: 'gh',
      input: input({ dedupeKey: 'k' }),
      action: 'trigger',
      announce: { from: 'ext:gh', recipients: [] },
      receipt: { integration: 'gh', deliveryId: 'd1' },
    },
    { op: 'message.send', at, message: msg({ replyTo: 99_999 }), recipients: [], task: null },
  ];
  const task = (o[2] as { value: { task: { id: number } } }).value.task.id;
  o = yield [
    { op: 'task.claim', at: at + 3, taskId: task, agentId: 'bob' },
    { op: 'task.claim', at: at + 3, taskId: task, agentId: 'carol' },
    {
      op: 'task.transition',
      at: at + 4,
      taskId: task,
      guard: { status: 'claimed', claimedBy: 'bob', attempts: 1 },
      status: 'in_progress',
      progress: 40,
      event: { kind: 'task.updated', agentId: 'bob', data: { progress: 40, note: 'half' } },
    },
    {
      op: 'task.transition',
      at: at + 4,
      taskId: task,
      guard: { status: 'claimed', claimedBy: 'bob', attempts: 1 },
      status: 'done',
      progress: 100,
      event: { kind: 'task.updated', agentId: 'bob', data: {} },
    },
    { op: 'delivery.ack', at: at + 5, agentId: 'bob', messageId: first, state: 'injected' },
    { op: 'delivery.ack', at: at + 5, agentId: 'dave', messageId: first, state: 'injected' },
    { op: 'delivery.span', at: at + 5, agentId: 'carol', rowId: null, first: 1, last: first + 1 },
    { op: 'delivery.mark', at: at + 6, agentId: 'carol', messageIds: [first + 2], state: 'pushed' },
    { op: 'delivery.read', at: at + 7, agentId: 'bob', ids: [first, first, 99], upTo: null },
    { op: 'delivery.read', at: at + 7, agentId: 'carol', ids: null, upTo: 1_000 },
    { op: 'agent.touch', at: at + 8, ids: ['bob', 'nobody'] },
    {
      op: 'agent.patch',
      at: at + 9,
      id: 'carol',
      expect: { tokenHash: 'h'.repeat(64), status: 'online' },
      patch: { label: 'C', meta: { q: 1, b: 2 }, lastSeenAt: at + 1, client: null },
      events: [],
      bind: { node: 'n2' },
    },
    { op: 'session.unbind', at: at + 9, agentId: 'bob', node: 'n1', epoch: 1 },
    { op: 'session.unbind', at: at + 9, agentId: 'carol', node: 'n1', epoch: 1 },
  ];
  o = yield [
    { op: 'lease.acquire', at: at + 10, agentId: 'bob', mode: 'exclusive', resources: ['src/**', 'db:main'], reason: 'migrating', ttlMs: 1000, maxHeld: 4 },
    { op: 'lease.acquire', at: at + 10, agentId: 'carol', mode: 'shared', resources: ['src/a/*.ts'], reason: null, ttlMs: 1000, maxHeld: 4 },
    { op: 'lease.acquire', at: at + 10, agentId: 'carol', mode: 'shared', resources: ['docs/**'], reason: null, ttlMs: 5000, maxHeld: 4 },
  ];
  const lease = (o[0] as { value: { lease: { id: number; token: number } } }).value.lease;
  o = yield [
    { op: 'lease.renew', at: at + 500, hold: { leaseId: lease.id, agentId: 'bob', token: lease.token }, ttlMs: null },
    { op: 'lease.renew', at: at + 500, hold: { leaseId: lease.id, agentId: 'bob', token: lease.token }, ttlMs: 2000 },
    { op: 'lease.expire', at: at + 1600 },
  ];
  const outbox = yield [];
  void outbox;
  const claimed = yield [{ op: 'message.send', at: at + 20, message: msg({ claimable: true }), recipients: ['carol'], task: { ...input({ target: 'carol', callbackUrl: null }), source: 'alice' } }];
  const t2 = (claimed[0] as { value: { task: { id: number } } }).value.task.id;
  yield [{ op: 'task.claim', at: at + 21, taskId: t2, agentId: 'carol' }];
  yield [
    {
      op: 'agent.offline',
      at: at + 22,
      id: 'carol',
      patch: { ready: false },
      reason: 'left',
      releases: [{ taskId: t2, attempts: 1, reason: 'owner carol went offline', by: null, announce: { from: 'ext:relay', recipients: ['bob'] } }],
    },
    { op: 'callback.lease', at: at + 23, limit: 10, leaseMs: 30_000 },
    { op: 'callback.attempt', at: at + 23, id: 1, epoch: 1, state: 'delivered', nextAt: at + 23, status: 200, error: null },
    { op: 'callback.attempt', at: at + 23, id: 2, epoch: 1, state: 'pending', nextAt: at + 1000, status: 500, error: 'HTTP 500' },
    { op: 'callback.attempt', at: at + 23, id: 2, epoch: 0, state: 'dead', nextAt: at + 1000, status: 500, error: 'a stale lease' },
  ];
  yield [{ op: 'prune', at: at + 100, cutoff: at + 1, offlineCutoff: at + 30 }];
}

async function reads(s: RelayStore) {
  const list = { since: 0, limit: 100, channel: null, threadId: null };
  const messages = await s.messages.all(list);
  return {
    messages,
    inboxBob: await s.messages.inbox('bob', { ...list, floor: 0, unread: true, readThrough: await s.deliveries.readThrough('bob') }),
    deliveries: await Promise.all(messages.map((m) => s.deliveries.forMessage(m.id))),
    spans: [await s.deliveries.latestSpan('carol', 'pushed'), await s.deliveries.latestSpan('carol', 'read')],
    tasks: await s.tasks.list({ status: null, target: null, channel: null, claimedBy: null, since: 0, limit: 100 }),
    counts: await s.tasks.countByStatus(),
    events: await s.events.list({ since: 0, kind: null, taskId: null, limit: 1000 }),
    eventMax: await s.events.maxId(),
    outbox: [...(await s.outbox.ofTask(1)), ...(await s.outbox.ofTask(2)), ...(await s.outbox.ofTask(3))],
    due: await s.outbox.due(at + 10_000, 10),
    nextDue: await s.outbox.nextDueAt(),
    depth: await s.outbox.depthByState(),
    agents: await s.agents.all(),
    meta: await s.agents.metaOf('bob'),
    leases: await s.leases.list({ now: at, since: 0, holder: null }),
    sessions: (await s.sessions.all()).sort((x, y) => x.agentId.localeCompare(y.agentId)),
    lease1: await s.leases.get(1),
    expired: await s.leases.expired(at + 100_000),
    receipt: await s.receipts.seen('gh', 'd1'),
    prunedThrough: await s.prunedThrough(),
  };
}

/** JSON text of every meta and data object: their key order must match too (t.strictSame ignores it). */
function jsonTexts(v: unknown, out: string[] = []): string[] {
  if (Array.isArray(v)) for (const x of v) jsonTexts(x, out);
  else if (v && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      if ((k === 'meta' || k === 'data') && x && typeof x === 'object') out.push(JSON.stringify(x));
      else jsonTexts(x, out);
    }
  }
  return out;
}

t.test('every op of the port: the same outcomes and the same rows as SQLite', async (t) => {
  const { sqlite, postgres } = await bothStores(t);
  const steps = script();
  let step = steps.next(undefined as unknown as Outcome[]);
  let batch = 0;
  const sameReads = async (when: string) => {
    const [ra, rb] = [await reads(sqlite), await reads(postgres)];
    for (const key of Object.keys(ra) as (keyof typeof ra)[]) t.strictSame(rb[key], ra[key], `reads ${when}: ${key}`);
    t.same(
      rb.outbox.map((e) => e.payload),
      ra.outbox.map((e) => e.payload),
      `callback payloads byte for byte (${ra.outbox.length})`,
    );
    t.same(jsonTexts(rb), jsonTexts(ra), `reads ${when}: meta and data keys in the order sent`);
    return ra;
  };
  while (!step.done) {
    const ops = step.value;
    if (ops[0]?.op === 'prune') {
      const before = await sameReads('before the prune');
      const counts = `${before.messages.length} messages, ${before.tasks.length} tasks, ${before.events.length} events, ${before.outbox.length} callbacks, ${before.agents.length} agents`;
      t.ok(before.messages.length >= 6 && before.outbox.length >= 4 && before.events.length >= 10, `with rows of every kind to compare: ${counts}`);
    }
    const [a, b] = [await sqlite.apply(ops), await postgres.apply(ops)];
    t.strictSame(b, a, `batch ${++batch}: ${ops.map((o) => o.op).join(', ') || 'none'}`);
    t.same(jsonTexts(b), jsonTexts(a), `batch ${batch}: meta and data keys in the order sent`);
    step = steps.next(a);
  }
  await sameReads('after the prune');
});

t.test('lease overlap decided in SQL equals protocol/lease-patterns.ts', async (t) => {
  const url = await server.freshDatabase();
  const store = await PostgresStore.open({ url });
  await store.close();
  const rand = seeded(18);
  const pick = <T>(xs: readonly T[]) => xs[rand(xs.length)]!;
  const segment = () => pick(['a', 'b', 'ab', '*', 'a*', '*b', 'a*b', '**', 'x.ts', '*.ts', 'x*', '*x*']);
  const resource = () => (rand(10) === 0 ? pick(['db:main', 'db:other', 'port:1']) : Array.from({ length: 1 + rand(3) }, segment).join('/'));
  const pairs = Array.from({ length: 1500 }, () => [resource(), resource()] as const).filter(([a, b]) => !/\*\*[^/]|[^/]\*\*/.test(a + b));
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  t.teardown(() => client.end());
  const { rows } = await client.query<{ a: string; b: string; o: boolean }>('SELECT a, b, relay_resources_overlap(a, b) AS o FROM unnest($1::text[], $2::text[]) AS p(a, b)', [
    pairs.map((p) => p[0]),
    pairs.map((p) => p[1]),
  ]);
  const differ = rows.filter((r) => r.o !== resourcesOverlap(r.a, r.b));
  t.same(differ, [], `${rows.length} pairs, ${rows.filter((r) => r.o).length} overlapping: SQL and TypeScript agree on every one`);
});
