import t from 'tap';
import type { Test } from 'tap';
import { startRelay, type TestRelay } from '../helpers/relay.js';
import { connectAgent, RpcError, WsRpc, untilDisconnected } from '../helpers/ws-client.js';

interface Delivery {
  messageId: number;
  agentId: string;
  state: 'queued' | 'pushed' | 'injected' | 'read';
  at: number;
}

type Agent = Awaited<ReturnType<typeof connectAgent>>;

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

async function deliveries(rpc: WsRpc, id: number): Promise<Delivery[]> {
  const r = await rpc.call('message/get', { id });
  return r.deliveries as Delivery[];
}

/** `agentId → state` for one message. */
async function states(rpc: WsRpc, id: number): Promise<Record<string, string>> {
  return Object.fromEntries((await deliveries(rpc, id)).map((d) => [d.agentId, d.state]));
}

/** Poll message/get until `cond` holds (the pushed state is written by a deferred write). */
async function pollStates(rpc: WsRpc, id: number, cond: (s: Record<string, string>) => boolean, what: string): Promise<Record<string, string>> {
  const deadline = Date.now() + 3000;
  for (;;) {
    const s = await states(rpc, id);
    if (cond(s)) return s;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(s)}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function offlineAgent(t: Test, relay: TestRelay, params: Record<string, unknown>): Promise<Agent> {
  const a = await connectAgent(t, relay.wsUrl, params);
  await a.rpc.call('agent/update', { status: 'offline' });
  await a.rpc.close();
  await untilDisconnected(t, relay.wsUrl, a.id);
  return a;
}

t.test('a connected recipient reaches pushed while an offline one stays queued until it resumes', async (t) => {
  const relay = await startRelay(t);
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const carol = await offlineAgent(t, relay, { id: 'carol' });

  const toCarol = await alice.rpc.call('message/send', { to: 'carol', body: 'for later' });
  const toBob = await alice.rpc.call('message/send', { to: 'bob', body: 'now' });

  const bobStates = await pollStates(observer, toBob.message.id, (s) => s.bob === 'pushed', 'bob pushed');
  t.same(bobStates, { bob: 'pushed' });
  const [d] = await deliveries(observer, toBob.message.id);
  t.equal(d!.messageId, toBob.message.id);
  t.ok(d!.at >= toBob.message.createdAt, 'the pushed time is not before the message');
  t.equal(bob.rpc.messages().length, 1, 'bob did get it on his socket');

  // The deferred write that recorded bob's push has run: carol's delivery is still queued.
  t.same(await states(observer, toCarol.message.id), { carol: 'queued' }, 'an offline recipient stays queued');

  const back = await WsRpc.connect(t, relay.wsUrl);
  await back.call('agent/register', { id: 'carol', agentToken: carol.token, since: carol.cursor });
  await back.until(() => back.messages().length === 1, 3000, 'carol gets the backlog');
  t.same(await pollStates(observer, toCarol.message.id, (s) => s.carol === 'pushed', 'carol pushed'), { carol: 'pushed' }, 'resuming pushes the backlog');
});

t.test('one fan-out message keeps a separate state for each recipient', async (t) => {
  const relay = await startRelay(t);
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  await connectAgent(t, relay.wsUrl, { id: 'bob', tags: ['team'] });
  // Online (not swept yet) but with no live socket: it is a recipient, nothing can be pushed to it.
  const dan = await connectAgent(t, relay.wsUrl, { id: 'dan', tags: ['team'] });
  await dan.rpc.close();
  await untilDisconnected(t, relay.wsUrl, 'dan');

  const sent = await alice.rpc.call('message/send', { to: 'tag:team', body: 'standup' });
  t.same([...sent.recipients].sort(), ['bob', 'dan']);
  const s = await pollStates(observer, sent.message.id, (x) => x.bob === 'pushed', 'bob pushed');
  t.same(s, { bob: 'pushed', dan: 'queued' });
  const ds = await deliveries(observer, sent.message.id);
  t.same(
    ds.map((d) => d.agentId),
    ['bob', 'dan'],
    'one delivery per recipient',
  );
  t.ok(ds.every((d) => d.messageId === sent.message.id));
});

t.test('ack injected then read move a delivery forward, and it never moves backwards', async (t) => {
  const relay = await startRelay(t);
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });

  const sent = await alice.rpc.call('message/send', { to: 'bob', body: 'do the thing' });
  const id = sent.message.id as number;
  await pollStates(observer, id, (s) => s.bob === 'pushed', 'bob pushed');
  const pushedAt = (await deliveries(observer, id))[0]!.at;

  const acked = await bob.rpc.call('message/ack', { id, state: 'injected' });
  t.equal(acked.delivery.state, 'injected');
  t.equal(acked.delivery.agentId, 'bob');
  t.equal(acked.delivery.messageId, id);
  t.ok(acked.delivery.at >= pushedAt, 'the injected time is not before the push');
  t.same(await states(observer, id), { bob: 'injected' }, 'message/get shows injected');

  const again = await bob.rpc.call('message/ack', { id, state: 'injected' });
  t.equal(again.delivery.state, 'injected', 'a repeated ack is harmless');
  t.equal(again.delivery.at, acked.delivery.at, 'and keeps the time the state was first reached');

  const read = await bob.rpc.call('message/read', { ids: [id] });
  t.equal(read.marked, 1);
  t.same(await states(observer, id), { bob: 'read' }, 'message/read moves it to read');
  const readAt = (await deliveries(observer, id))[0]!.at;

  const late = await bob.rpc.call('message/ack', { id, state: 'injected' });
  t.equal(late.delivery.state, 'read', 'an injected ack after read leaves it read');
  t.equal(late.delivery.at, readAt);
  t.same(await states(observer, id), { bob: 'read' });

  const reread = await bob.rpc.call('message/read', { ids: [id] });
  t.equal(reread.marked, 0, 'reading again marks nothing');

  // A resume re-pushes the message; the deferred "pushed" write must not pull it back from read.
  const back = await WsRpc.connect(t, relay.wsUrl);
  await back.call('agent/register', { id: 'bob', agentToken: bob.token, since: 0 });
  await back.until(() => back.messages().some((m) => m.id === id), 3000, 'the backlog re-push');
  await back.call('agent/heartbeat', {}); // a later commit: the deferred write has run by now
  t.same(await states(observer, id), { bob: 'read' }, 'a re-push after read leaves it read');
  t.equal((await deliveries(observer, id))[0]!.at, readAt);
});

t.test('a re-push after injected leaves the delivery injected', async (t) => {
  const relay = await startRelay(t);
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const sent = await alice.rpc.call('message/send', { to: 'bob', body: 'hi' });
  const id = sent.message.id as number;
  await bob.rpc.until(() => bob.rpc.messages().length === 1, 3000, 'bob gets it');
  // No waiting for the pushed state: whichever order the writes land in, injected must win.
  const acked = await bob.rpc.call('message/ack', { id, state: 'injected' });
  t.equal(acked.delivery.state, 'injected');

  const back = await WsRpc.connect(t, relay.wsUrl);
  await back.call('agent/register', { id: 'bob', agentToken: bob.token, since: 0 });
  await back.until(() => back.messages().some((m) => m.id === id), 3000, 'the backlog re-push');
  await back.call('agent/heartbeat', {});
  t.same(await states(observer, id), { bob: 'injected' });
});

t.test('acking a message that was not delivered to you is refused with -32002', async (t) => {
  const relay = await startRelay(t);
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const carol = await connectAgent(t, relay.wsUrl, { id: 'carol' });
  const sent = await alice.rpc.call('message/send', { to: 'bob', body: 'only for bob' });
  const id = sent.message.id as number;
  await pollStates(observer, id, (s) => s.bob === 'pushed', 'bob pushed');

  const notYours = await rpcError(t, carol.rpc.call('message/ack', { id, state: 'injected' }));
  t.equal(notYours.code, -32002, 'another agent');
  t.match(notYours.message, /carol/);

  const sender = await rpcError(t, alice.rpc.call('message/ack', { id, state: 'injected' }));
  t.equal(sender.code, -32002, 'the sender is not a recipient');

  const missing = await rpcError(t, bob.rpc.call('message/ack', { id: id + 1000, state: 'injected' }));
  t.equal(missing.code, -32002, 'a message that does not exist');

  const anon = await rpcError(t, observer.call('message/ack', { id, state: 'injected' }));
  t.equal(anon.code, -32004, 'an observer has no deliveries to ack');

  const backwards = await rpcError(t, bob.rpc.call('message/ack', { id, state: 'queued' }));
  t.equal(backwards.code, -32602, 'ack cannot name a state below injected');
  t.match(backwards.message, /state/);

  t.same(await states(observer, id), { bob: 'pushed' }, 'nothing changed');
  t.same(await deliveries(observer, id).then((ds) => ds.map((d) => d.agentId)), ['bob'], 'no delivery was created for carol or alice');
});
