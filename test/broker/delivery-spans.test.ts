import Database from 'better-sqlite3';
import t from 'tap';
import { onPostgres, startRelay, type TestRelay } from '../helpers/relay.js';
import { connectAgent, WsRpc, untilDisconnected } from '../helpers/ws-client.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Delivery states are stored as ranges (a session's pushes, a poll's page, `read upTo`) plus
 * sparse exact marks, so a fan-out writes nothing per recipient. These tests pin the cases where a
 * range could claim too much: a gap while the agent was away, a resume that skips messages, a
 * filtered poll, a read marker past the newest message; and the cost: rows independent of N.
 */

type States = Record<string, string>;

async function states(rpc: WsRpc, id: number): Promise<States> {
  const r = await rpc.call('message/get', { id });
  return Object.fromEntries((r.deliveries as Array<{ agentId: string; state: string }>).map((d) => [d.agentId, d.state]));
}

async function poll(relay: TestRelay, agent: { id: string; token: string }, query: string): Promise<Array<{ id: number }>> {
  const res = await fetch(`${relay.url}/api/agents/${agent.id}/inbox?${query}`, { headers: { 'x-agent-token': agent.token }, signal: AbortSignal.timeout(10_000) });
  if (res.status !== 200) throw new Error(`inbox: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { messages: Array<{ id: number }> }).messages;
}

/** Rows in a table, read from the database file by a second connection (WAL: readers do not block). */
function count(relay: TestRelay, table: string): number {
  const db = new Database(relay.config.dbPath, { readonly: true, fileMustExist: true });
  try {
    return db.prepare(`SELECT count(*) FROM ${table}`).pluck().get() as number;
  } finally {
    db.close();
  }
}

t.test('a resume that skips messages leaves the skipped ones queued; everything after is pushed', async (t) => {
  const relay = await startRelay(t);
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });

  const m1 = (await alice.rpc.call('message/send', { to: 'bob', body: 'one' })).message.id as number;
  await bob.rpc.until(() => bob.rpc.messages().length === 1, 3000, 'bob gets m1');
  await bob.rpc.close();
  await untilDisconnected(t, relay.wsUrl, 'bob');

  const m2 = (await alice.rpc.call('message/send', { to: 'bob', body: 'two (away)' })).message.id as number;
  const m3 = (await alice.rpc.call('message/send', { to: 'bob', body: 'three (away)' })).message.id as number;
  const other = (await alice.rpc.call('message/send', { to: 'alice', body: 'not for bob' })).message.id as number;
  const m4 = (await alice.rpc.call('message/send', { to: 'bob', body: 'four (away)' })).message.id as number;

  // bob says he has seen up to m2 (say, through another client): the backlog is m3 and m4 only.
  const back = await WsRpc.connect(t, relay.wsUrl);
  await back.call('agent/register', { id: 'bob', agentToken: bob.token, since: m2 });
  await back.until(() => back.messages().length === 2, 3000, 'backlog m3, m4');
  const m5 = (await alice.rpc.call('message/send', { to: 'bob', body: 'five (live)' })).message.id as number;
  await back.until(() => back.messages().length === 3, 3000, 'live m5');

  await waitFor(async () => (await states(observer, m5)).bob === 'pushed', 'm5 pushed');
  t.same(await states(observer, m1), { bob: 'pushed' }, 'm1: pushed in the first session');
  t.same(await states(observer, m2), { bob: 'queued' }, 'm2: skipped by the resume cursor, never written to bob: queued');
  t.same(await states(observer, m3), { bob: 'pushed' }, 'm3: backlog');
  t.same(await states(observer, m4), { bob: 'pushed' }, 'm4: backlog');
  t.same(await states(observer, other), { alice: 'pushed' }, 'a message to someone else in the range is not bob’s');
  t.same(await states(observer, m5), { bob: 'pushed' }, 'm5: live');
});

t.test('a message sent while the agent had no socket stays queued even when live pushes resume around it', async (t) => {
  const relay = await startRelay(t);
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const before = (await alice.rpc.call('message/send', { to: 'bob', body: 'before' })).message.id as number;
  await bob.rpc.until(() => bob.rpc.messages().length === 1, 3000, 'bob gets it');
  await bob.rpc.close();
  await untilDisconnected(t, relay.wsUrl, 'bob');
  const away = (await alice.rpc.call('message/send', { to: 'bob', body: 'away' })).message.id as number;
  // Back without `since`: nothing is replayed, live pushes only.
  const back = await WsRpc.connect(t, relay.wsUrl);
  await back.call('agent/register', { id: 'bob', agentToken: bob.token });
  const after = (await alice.rpc.call('message/send', { to: 'bob', body: 'after' })).message.id as number;
  await back.until(() => back.messages().length === 1, 3000, 'live message');
  await waitFor(async () => (await states(observer, after)).bob === 'pushed', 'after pushed');
  t.same(await states(observer, before), { bob: 'pushed' });
  t.same(await states(observer, away), { bob: 'queued' }, 'never written to a socket: queued');
});

t.test('an unfiltered poll records its page as pushed; a filtered poll only what it returned', async (t) => {
  const relay = await startRelay(t);
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  const reg = (await (await fetch(`${relay.url}/api/agents`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ id: 'hook' }) })).json()) as {
    agentToken: string;
  };
  const hook = { id: 'hook', token: reg.agentToken };

  const ids: number[] = [];
  for (const channel of ['ci', 'ops', 'ci', 'ops']) ids.push((await alice.rpc.call('message/send', { to: 'hook', body: channel, channel })).message.id);
  const page = await poll(relay, hook, 'channel=ci');
  t.same(
    page.map((m) => m.id),
    [ids[0], ids[2]],
    'the filtered poll returns the ci messages',
  );
  await waitFor(async () => (await states(observer, ids[2]!)).hook === 'pushed', 'ci messages pushed');
  t.same(await Promise.all(ids.map(async (id) => (await states(observer, id)).hook)), ['pushed', 'queued', 'pushed', 'queued'], 'only what the filtered poll returned counts as pushed');

  const all = await poll(relay, hook, 'since=0&limit=3');
  t.same(
    all.map((m) => m.id),
    ids.slice(0, 3),
  );
  await waitFor(async () => (await states(observer, ids[1]!)).hook === 'pushed', 'page pushed');
  t.same(await Promise.all(ids.map(async (id) => (await states(observer, id)).hook)), ['pushed', 'pushed', 'pushed', 'queued'], 'an unfiltered page counts as pushed up to its last id, no further');
});

t.test('read upTo covers only messages that exist; single reads and the unread filter agree', async (t) => {
  const relay = await startRelay(t);
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const ids: number[] = [];
  for (let i = 0; i < 4; i++) ids.push((await alice.rpc.call('message/send', { to: 'bob', body: `m${i}` })).message.id);

  t.same(await bob.rpc.call('message/read', { ids: [ids[3]!, ids[3]!] }), { marked: 1 }, 'a single read counts once');
  t.same(await bob.rpc.call('message/read', { upTo: ids[3]! + 1000 }), { marked: 3 }, 'upTo counts the unread rest');
  t.same(await bob.rpc.call('message/read', { upTo: ids[3]! + 1000 }), { marked: 0 }, 'and again: nothing new');
  const later = (await alice.rpc.call('message/send', { to: 'bob', body: 'later' })).message.id as number;
  t.ok(later <= ids[3]! + 1000, 'the new message id is inside the earlier upTo');
  const unread = await bob.rpc.call('message/list', { unread: true });
  t.same(
    unread.messages.map((m: { id: number }) => m.id),
    [later],
    'a message sent after read upTo arrives unread',
  );
  t.same(await bob.rpc.call('message/read', { ids: [later] }), { marked: 1 });
  t.same((await bob.rpc.call('message/list', { unread: true })).messages, [], 'nothing unread');
  t.same((await alice.rpc.call('message/list', { agentId: 'alice', unread: true })).messages, [], 'alice has no inbox of bob’s');
  const d = await bob.rpc.call('message/get', { id: ids[0] });
  t.equal(d.deliveries[0].state, 'read');
});

t.test('a fan-out to 40 agents writes no row per recipient, and every recipient reads pushed', { skip: onPostgres && 'counts rows in the SQLite file' }, async (t) => {
  const relay = await startRelay(t);
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const sender = await connectAgent(t, relay.wsUrl, { id: 'sender' });
  const agents = [];
  for (let i = 0; i < 40; i++) agents.push(await connectAgent(t, relay.wsUrl, { id: `w${i}`, tags: ['crew'] }));
  const spansBefore = count(relay, 'delivery_spans');
  let last = 0;
  for (let i = 0; i < 50; i++) last = (await sender.rpc.call('message/send', { to: 'tag:crew', body: `fan ${i}` })).message.id;
  for (const a of agents) await a.rpc.until(() => a.rpc.messages().length === 50, 5000, `${a.id} gets all 50`);
  await waitFor(async () => Object.values(await states(observer, last)).every((s) => s === 'pushed'), 'last message pushed to all');
  const s = await states(observer, last - 25);
  t.equal(Object.keys(s).length, 40, 'forty recipients');
  t.ok(
    Object.values(s).every((x) => x === 'pushed'),
    'every recipient: pushed',
  );
  t.equal(count(relay, 'delivery_marks'), 0, 'no exact marks were needed');
  const spans = count(relay, 'delivery_spans') - spansBefore;
  t.ok(spans <= 40, `at most one span row per recipient for 50 messages (${spans}), not 2,000 rows`);
  t.comment(`figure: fan-out rows messages=50 recipients=40 span_rows=${spans} mark_rows=0`);
});

t.test('reading by ids moves the read-through cursor to just before the first unread message', async (t) => {
  const relay = await startRelay(t);
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const ids: number[] = [];
  for (let i = 0; i < 6; i++) {
    ids.push((await alice.rpc.call('message/send', { to: i === 2 ? 'alice' : 'bob', body: `m${i}` })).message.id);
  }
  const [b0, b1, other, b3, b4, b5] = ids as [number, number, number, number, number, number];
  const readThrough = () => relay.core.store.deliveries.readThrough('bob');
  const unread = async () => ((await bob.rpc.call('message/list', { unread: true })).messages as Array<{ id: number }>).map((m) => m.id);

  t.same(await bob.rpc.call('message/read', { ids: [b0, b1] }), { marked: 2 });
  t.equal(await readThrough(), b3 - 1, 'past both read messages and alice’s message between them, up to bob’s first unread');
  t.same(await bob.rpc.call('message/read', { ids: [b4] }), { marked: 1 });
  t.equal(await readThrough(), b3 - 1, 'a read past an unread message leaves the cursor where it was');
  t.same(await unread(), [b3, b5]);
  t.same(await bob.rpc.call('message/read', { ids: [b3, b5] }), { marked: 2 });
  t.equal(await readThrough(), b5, 'all read: the cursor is at the newest message');
  t.same(await unread(), []);
  const later = (await alice.rpc.call('message/send', { to: 'bob', body: 'later' })).message.id as number;
  t.same(await unread(), [later], 'a message sent afterwards arrives unread');

  const got = await bob.rpc.call('message/get', { id: b4 });
  const markedAt = got.deliveries[0].at as number;
  t.equal(got.deliveries[0].state, 'read');
  t.ok(markedAt <= Date.now() && markedAt >= got.message.createdAt, 'a message keeps the time it was read by id');
  t.not((await relay.core.store.deliveries.get('alice', other))?.state, 'read', 'alice’s message is untouched by bob’s cursor');
});

t.test('an agent’s inbox starts at its floor: the newest message when it was first registered', async (t) => {
  const relay = await startRelay(t);
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice', tags: ['crew'] });
  let last = 0;
  for (let i = 0; i < 5; i++) last = (await alice.rpc.call('message/send', { to: 'broadcast', body: `before ${i}` })).message.id;
  const carol = await connectAgent(t, relay.wsUrl, { id: 'carol', tags: ['crew'] });
  t.equal(relay.core.agents.inboxFloor('carol'), last, 'the floor is the newest message id at registration');
  const mine = (await alice.rpc.call('message/send', { to: 'tag:crew', body: 'after' })).message.id as number;
  t.same(
    (await carol.rpc.call('message/list', {})).messages.map((m: { id: number }) => m.id),
    [mine],
    'the inbox holds what came after',
  );
  t.same(
    (await carol.rpc.call('message/list', { unread: true })).messages.map((m: { id: number }) => m.id),
    [mine],
  );
  await carol.rpc.close();
  const again = await WsRpc.connect(t, relay.wsUrl);
  await again.call('agent/register', { id: 'carol', agentToken: carol.token });
  t.equal(relay.core.agents.inboxFloor('carol'), last, 're-registering keeps the floor');
  t.equal(relay.core.agents.inboxFloor('alice'), 0, 'the first agent on an empty store has floor 0');
});
