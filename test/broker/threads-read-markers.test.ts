import t from 'tap';
import type { Test } from 'tap';
import { startRelay } from '../helpers/relay.js';
import { connectAgent, RpcError, WsRpc } from '../helpers/ws-client.js';

async function rpcError(t: Test, p: Promise<unknown>): Promise<RpcError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof RpcError) return err;
    throw err;
  }
  t.fail('expected the call to be refused');
  throw new Error('call unexpectedly succeeded');
}

const ids = (r: { messages: Array<{ id: number }> }): number[] => r.messages.map((m) => m.id);

t.test('replies three levels deep share the root as threadId, and thread/get from any of them returns the thread in order', async (t) => {
  const relay = await startRelay(t);
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const observer = await WsRpc.connect(t, relay.wsUrl);

  const root = (await alice.rpc.call('message/send', { to: 'bob', body: 'root', subject: 'plan' })).message;
  t.equal(root.threadId, root.id, 'a root is its own thread');
  t.equal(root.replyTo, null);
  const other = (await alice.rpc.call('message/send', { to: 'bob', body: 'unrelated' })).message;
  const r1 = (await bob.rpc.call('message/send', { to: 'alice', body: 'reply 1', replyTo: root.id })).message;
  const r2 = (await alice.rpc.call('message/send', { to: 'bob', body: 'reply 2', replyTo: r1.id })).message;
  const sibling = (await observer.call('message/send', { to: 'alice', from: 'ext:ci', body: 'sibling', replyTo: root.id })).message;
  const r3 = (await bob.rpc.call('message/send', { to: 'alice', body: 'reply 3', replyTo: r2.id })).message;
  const otherReply = (await bob.rpc.call('message/send', { to: 'alice', body: 'other reply', replyTo: other.id })).message;

  t.same([r1.replyTo, r2.replyTo, r3.replyTo, sibling.replyTo], [root.id, r1.id, r2.id, root.id], 'replyTo names the direct parent');
  t.same([r1.threadId, r2.threadId, r3.threadId, sibling.threadId], [root.id, root.id, root.id, root.id], 'every level carries the root id');
  t.equal(otherReply.threadId, other.id);

  const expected = [root.id, r1.id, r2.id, sibling.id, r3.id];
  for (const [name, m] of [
    ['root', root],
    ['reply 1', r1],
    ['reply 2', r2],
    ['reply 3', r3],
    ['sibling', sibling],
  ] as const) {
    const th = await observer.call('thread/get', { id: m.id });
    t.equal(th.threadId, root.id, `thread/get from ${name}: threadId`);
    t.same(ids(th), expected, `thread/get from ${name}: every message, in order`);
  }
  const fromAgent = await bob.rpc.call('thread/get', { id: r3.id });
  t.same(
    fromAgent.messages.map((m: { body: string }) => m.body),
    ['root', 'reply 1', 'reply 2', 'sibling', 'reply 3'],
  );

  const th2 = await alice.rpc.call('thread/get', { id: otherReply.id });
  t.equal(th2.threadId, other.id);
  t.same(ids(th2), [other.id, otherReply.id], 'threads do not mix');

  // The pushed copy carries the thread too.
  await alice.rpc.until(() => alice.rpc.messages().some((m) => m.id === r3.id), 3000, 'alice gets reply 3');
  const pushed = alice.rpc.messages().find((m) => m.id === r3.id)!;
  t.equal(pushed.threadId, root.id);
  t.equal(pushed.replyTo, r2.id);

  const listed = await bob.rpc.call('message/list', { threadId: root.id });
  t.same(ids(listed), [root.id, r2.id], "message/list threadId filters bob's inbox to the thread");
});

t.test('replying to a missing message is refused with -32002 and nothing is stored', async (t) => {
  const relay = await startRelay(t);
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const first = (await alice.rpc.call('message/send', { to: 'bob', body: 'first' })).message;

  const err = await rpcError(t, alice.rpc.call('message/send', { to: 'bob', body: 'orphan', replyTo: first.id + 100 }));
  t.equal(err.code, -32002);
  t.match(err.message, /replyTo/, 'the error names the field');

  const missingThread = await rpcError(t, alice.rpc.call('thread/get', { id: first.id + 100 }));
  t.equal(missingThread.code, -32002, 'thread/get of a missing id');

  const inbox = await bob.rpc.call('message/list', {});
  t.same(ids(inbox), [first.id], 'the refused reply was not stored');
  const observer = await WsRpc.connect(t, relay.wsUrl);
  t.same(ids(await observer.call('message/list', {})), [first.id], 'anywhere');
});

t.test('read markers are per agent: one agent reading a broadcast does not hide it from another', async (t) => {
  const relay = await startRelay(t);
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const carol = await connectAgent(t, relay.wsUrl, { id: 'carol' });
  const observer = await WsRpc.connect(t, relay.wsUrl);

  const m = (await alice.rpc.call('message/send', { to: 'broadcast', body: 'all hands' })).message;
  const m2 = (await alice.rpc.call('message/send', { to: 'broadcast', body: 'second' })).message;

  t.same(ids(await bob.rpc.call('message/list', { unread: true })), [m.id, m2.id]);
  t.same(ids(await carol.rpc.call('message/list', { unread: true })), [m.id, m2.id]);

  t.equal((await bob.rpc.call('message/read', { ids: [m.id] })).marked, 1);
  t.same(ids(await bob.rpc.call('message/list', { unread: true })), [m2.id], 'bob no longer sees it as unread');
  t.same(ids(await carol.rpc.call('message/list', { unread: true })), [m.id, m2.id], 'carol still does');
  t.equal((await rpcError(t, observer.call('message/list', { agentId: 'carol', unread: true }))).code, -32001, "an observer may not look at carol's inbox (read rule)");
  t.same(ids(await bob.rpc.call('message/list', {})), [m.id, m2.id], 'read messages still list without unread');

  // The sender is no recipient: reading its own broadcast marks nothing and touches nobody.
  t.equal((await alice.rpc.call('message/read', { ids: [m.id, m2.id] })).marked, 0);
  t.equal((await alice.rpc.call('message/read', { upTo: m2.id })).marked, 0);
  t.same(ids(await carol.rpc.call('message/list', { unread: true })), [m.id, m2.id]);

  t.equal((await carol.rpc.call('message/read', { upTo: m2.id })).marked, 2);
  t.same(ids(await carol.rpc.call('message/list', { unread: true })), []);
  t.same(ids(await bob.rpc.call('message/list', { unread: true })), [m2.id], "carol's read-all did not touch bob");

  const got = await observer.call('message/get', { id: m2.id });
  const stateOf = Object.fromEntries(got.deliveries.map((d: { agentId: string; state: string }) => [d.agentId, d.state]));
  t.equal(stateOf.carol, 'read');
  t.not(stateOf.bob, 'read');

  const anon = await rpcError(t, observer.call('message/list', { unread: true }));
  t.equal(anon.code, -32602, 'unread needs an agent');
  t.match(anon.message, /unread/);
});

t.test('message/list pages an inbox by since and limit and returns the last id as cursor', async (t) => {
  const relay = await startRelay(t);
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  await connectAgent(t, relay.wsUrl, { id: 'carol' });
  const observer = await WsRpc.connect(t, relay.wsUrl);

  const toBob: number[] = [];
  const toCarol: number[] = [];
  for (let i = 0; i < 5; i++) {
    toBob.push((await alice.rpc.call('message/send', { to: 'bob', body: `b${i}` })).message.id);
    toCarol.push((await alice.rpc.call('message/send', { to: 'carol', body: `c${i}` })).message.id);
  }

  const all = await bob.rpc.call('message/list', {});
  t.same(ids(all), toBob, "bob's inbox holds only his messages, in order");
  t.equal(all.cursor, toBob[4]);

  const p1 = await bob.rpc.call('message/list', { limit: 2 });
  t.same(ids(p1), toBob.slice(0, 2));
  t.equal(p1.cursor, toBob[1]);
  const p2 = await bob.rpc.call('message/list', { since: p1.cursor, limit: 2 });
  t.same(ids(p2), toBob.slice(2, 4));
  t.equal(p2.cursor, toBob[3]);
  const p3 = await bob.rpc.call('message/list', { since: p2.cursor, limit: 2 });
  t.same(ids(p3), toBob.slice(4));
  t.equal(p3.cursor, toBob[4]);
  const p4 = await bob.rpc.call('message/list', { since: p3.cursor, limit: 2 });
  t.same(ids(p4), [], 'nothing after the end');
  t.equal(p4.cursor, toBob[4], 'an empty page returns the since given');

  const mid = await bob.rpc.call('message/list', { since: toCarol[1] });
  t.same(ids(mid), toBob.slice(2), 'since may be any id, not only one of the inbox');

  const everything = await observer.call('message/list', { limit: 3 });
  t.same(ids(everything), [toBob[0], toCarol[0], toBob[1]], 'an observer without agentId pages every message');
  t.equal(everything.cursor, toBob[1]);
  const bobsByName = await bob.rpc.call('message/list', { agentId: 'bob', since: toBob[3] });
  t.same(ids(bobsByName), [toBob[4]], 'an agent may name its own inbox');

  const later = (await alice.rpc.call('message/send', { to: 'bob', body: 'later' })).message.id;
  const resumed = await bob.rpc.call('message/list', { since: p4.cursor });
  t.same(ids(resumed), [later], 'the cursor resumes exactly after what was seen');
  t.equal(resumed.cursor, later);

  const unknown = await rpcError(t, observer.call('message/list', { agentId: 'nobody' }));
  t.equal(unknown.code, -32001, "an unknown agent's inbox: the same -32001 as a foreign one");
  const tooBig = await rpcError(t, bob.rpc.call('message/list', { limit: 0 }));
  t.equal(tooBig.code, -32602);
  t.match(tooBig.message, /limit/);
});

t.test('message/list filters by channel, threadId and unread, alone and combined', async (t) => {
  const relay = await startRelay(t);
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const carol = await connectAgent(t, relay.wsUrl, { id: 'carol' });
  const send = async (p: Record<string, unknown>) => (await alice.rpc.call('message/send', { body: 'x', ...p })).message.id as number;

  const a = await send({ to: 'bob', channel: 'dev' });
  const b = await send({ to: 'bob', channel: 'ops' });
  const c = await send({ to: 'bob' });
  const carolDev = await send({ to: 'carol', channel: 'dev' });
  const d = await send({ to: 'bob', channel: 'dev', replyTo: a });
  const e = await send({ to: 'bob', replyTo: b });
  const f = await send({ to: 'broadcast', channel: 'dev' });

  const list = async (p: Record<string, unknown>) => ids(await bob.rpc.call('message/list', p));
  t.same(await list({}), [a, b, c, d, e, f]);
  t.same(await list({ channel: 'dev' }), [a, d, f], 'channel dev');
  t.same(await list({ channel: 'ops' }), [b]);
  t.same(await list({ channel: 'nowhere' }), []);
  t.same(await list({ threadId: a }), [a, d], 'thread of a');
  t.same(await list({ threadId: b }), [b, e], 'thread of b: a reply without a channel is still in it');
  t.same(await list({ threadId: b, channel: 'ops' }), [b], 'thread and channel');
  t.same(await list({ channel: 'dev', since: a }), [d, f], 'channel and since');
  t.same(await list({ channel: 'dev', limit: 2 }), [a, d], 'channel and limit');
  t.same(ids(await carol.rpc.call('message/list', { channel: 'dev' })), [carolDev, f]);

  t.equal((await bob.rpc.call('message/read', { ids: [a, e] })).marked, 2);
  t.same(await list({ unread: true }), [b, c, d, f], 'unread');
  t.same(await list({ unread: true, channel: 'dev' }), [d, f], 'unread and channel');
  t.same(await list({ unread: true, threadId: b }), [b], 'unread and thread');
  t.same(await list({ unread: true, threadId: a, channel: 'dev' }), [d], 'unread, thread and channel');
  t.same(await list({ unread: true, since: c, limit: 1 }), [d], 'unread, since and limit');
  const page = await bob.rpc.call('message/list', { unread: true, channel: 'dev', since: d });
  t.same(ids(page), [f]);
  t.equal(page.cursor, f);
  t.same(await list({ unread: false }), [a, b, c, d, e, f], 'unread false lists everything');
});

t.test('message/read marks by ids and up to an id, counting only newly read messages of the caller', async (t) => {
  const relay = await startRelay(t);
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const carol = await connectAgent(t, relay.wsUrl, { id: 'carol' });
  const observer = await WsRpc.connect(t, relay.wsUrl);

  const m: number[] = [];
  const toCarol: number[] = [];
  for (let i = 0; i < 5; i++) {
    m.push((await alice.rpc.call('message/send', { to: 'bob', body: `m${i}` })).message.id);
    toCarol.push((await alice.rpc.call('message/send', { to: 'carol', body: `c${i}` })).message.id);
  }
  const unread = async () => ids(await bob.rpc.call('message/list', { unread: true }));

  t.equal((await bob.rpc.call('message/read', { ids: [m[1], m[3]] })).marked, 2, 'ids');
  t.same(await unread(), [m[0], m[2], m[4]]);
  t.equal((await bob.rpc.call('message/read', { ids: [m[1]] })).marked, 0, 'an already read id counts nothing');
  t.equal((await bob.rpc.call('message/read', { ids: [toCarol[0], toCarol[1]] })).marked, 0, "ids outside the caller's inbox count nothing");
  t.same(ids(await carol.rpc.call('message/list', { unread: true })), toCarol, "and leave carol's unread alone");
  t.equal((await bob.rpc.call('message/read', { ids: [m[4] + 1000] })).marked, 0, 'an unknown id counts nothing');

  t.equal((await bob.rpc.call('message/read', { upTo: m[2] })).marked, 2, 'upTo marks m0 and m2, inclusive, skipping the read m1');
  t.same(await unread(), [m[4]]);
  t.same(ids(await carol.rpc.call('message/list', { unread: true })), toCarol, "upTo is per agent: carol's messages below it stay unread");

  t.equal((await bob.rpc.call('message/read', { upTo: toCarol[4] })).marked, 1, 'upTo beyond the last message');
  t.same(await unread(), []);

  const late = (await alice.rpc.call('message/send', { to: 'bob', body: 'late' })).message.id;
  const late2 = (await alice.rpc.call('message/send', { to: 'bob', body: 'late2' })).message.id;
  t.same(await unread(), [late, late2], 'a new message after upTo is unread');
  t.equal((await bob.rpc.call('message/read', { ids: [late2], upTo: late })).marked, 2, 'ids and upTo together, each counted once');
  t.same(await unread(), []);

  const neither = await rpcError(t, bob.rpc.call('message/read', {}));
  t.equal(neither.code, -32602, 'neither ids nor upTo');
  t.match(neither.message, /ids/);
  const empty = await rpcError(t, bob.rpc.call('message/read', { ids: [] }));
  t.equal(empty.code, -32602, 'an empty ids list');
  const anon = await rpcError(t, observer.call('message/read', { upTo: late2 }));
  t.equal(anon.code, -32004, 'an observer has no read markers');
});
