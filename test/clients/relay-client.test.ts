import net from 'node:net';
import t, { type Test } from 'tap';
import { createRelayClient, reconnectDelay, RelayClosedError, RelayDisconnectedError, RelayRpcError, RelayTimeoutError, type RelayClient } from '../../clients/index.js';
import type { Message } from '../../protocol/index.js';
import { startRelay } from '../helpers/relay.js';
import { connectAgent } from '../helpers/ws-client.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';

/** Resolve when `cond` holds, checking after each event of the client (bounded). */
function until(client: RelayClient, cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  return new Promise((resolve, reject) => {
    if (cond()) return resolve();
    const events = ['message', 'ready', 'disconnected', 'task', 'lease', 'agent', 'event', 'closed'] as const;
    const check = () => {
      if (!cond()) return;
      cleanup();
      resolve();
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out waiting for ${what}`));
    }, timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      for (const e of events) client.off(e, check);
    };
    for (const e of events) client.on(e, check);
  });
}

function client(t: Test, opts: Parameters<typeof createRelayClient>[0]): RelayClient {
  const c = createRelayClient(opts);
  t.teardown(() => c.close());
  return c;
}

t.test('backoff stays within [cap/2, cap) and never exceeds maxMs', async (t) => {
  const policy = { initialMs: 100, maxMs: 5000 };
  const outside: string[] = [];
  for (let attempt = 0; attempt < 40; attempt++) {
    const cap = Math.min(5000, 100 * 2 ** attempt);
    const low = reconnectDelay(attempt, { ...policy, random: () => 0 });
    const high = reconnectDelay(attempt, { ...policy, random: () => 0.999999 });
    if (low < Math.floor(cap / 2) || high >= cap || high > 5000) outside.push(`attempt ${attempt}: ${low}..${high} outside [${cap / 2}, ${cap})`);
  }
  t.same(outside, [], 'every attempt within its bounds');
  t.equal(reconnectDelay(0, { ...policy, random: () => 0 }), 50, 'first retry waits at least half the initial delay');
  t.equal(reconnectDelay(100, { ...policy, random: () => 0.5 }), 3750, 'huge attempt numbers stay at the ceiling');
});

t.test('two clients talk; messages arrive as events and through the async iterator', async (t) => {
  const relay = await startRelay(t);
  const alice = client(t, { url: relay.url, agent: { id: 'alice', label: 'Alice', tags: ['dev'] } });
  const bob = client(t, { url: relay.url, agent: { id: 'bob' } });
  await Promise.all([alice.connect(), bob.connect()]);
  t.equal(alice.agent?.label, 'Alice');
  t.ok(alice.agentToken, 'the relay issued an agent token');

  const iterator = bob.messages();
  const sent = await alice.send('bob', 'hello bob', { subject: 'greeting' });
  t.same(sent.recipients, ['bob']);
  const first = await iterator.next();
  t.equal(first.value?.body, 'hello bob');
  t.equal(first.value?.from, 'alice');

  const got: Message[] = [];
  alice.on('message', (m) => got.push(m));
  const reply = await bob.send('alice', 'hi alice', { replyTo: first.value!.id });
  await until(alice, () => got.length === 1, 'the reply');
  t.equal(got[0]!.threadId, first.value!.threadId, 'the reply joined the thread');
  t.equal(got[0]!.id, reply.message.id);

  await bob.close();
  t.same(await iterator.next(), { value: undefined, done: true }, 'the iterator ends when the client closes');
});

t.test('a relay restart loses nothing and duplicates nothing for the application', async (t) => {
  const dir = t.testdir();
  let relay = await startRelay(t, {}, { dir });
  const proxy = await startTcpProxy(t, relay.port);
  const alice = client(t, { url: `http://127.0.0.1:${proxy.port}`, agent: { id: 'alice' }, reconnect: { initialMs: 400, maxMs: 800 } });
  await alice.connect();
  const received: number[] = [];
  alice.on('message', (m) => received.push(Number(m.body)));
  const readies: boolean[] = [];
  alice.on('ready', (r) => readies.push(r.reconnected));

  const sender = await connectAgent(t, relay.wsUrl, { id: 'sender' });
  for (let i = 1; i <= 5; i++) await sender.rpc.call('message/send', { to: 'alice', body: String(i) });
  await until(alice, () => received.length === 5, 'messages before the restart');
  await sender.rpc.close();

  await relay.close();
  relay = await startRelay(t, {}, { dir });
  proxy.retarget(relay.port);
  // Sent while alice is still waiting to reconnect: must arrive as the backlog.
  const sender2 = await connectAgent(t, relay.wsUrl, { id: 'sender', agentToken: sender.token });
  for (let i = 6; i <= 10; i++) await sender2.rpc.call('message/send', { to: 'alice', body: String(i) });
  await until(alice, () => readies.length === 1, 'the reconnect', 10_000);
  for (let i = 11; i <= 12; i++) await sender2.rpc.call('message/send', { to: 'alice', body: String(i) });
  await until(alice, () => received.length >= 12, 'every message');
  t.same(received, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], 'each message once, in order');
  t.same(readies, [true], 'ready fired again as a reconnect');
  t.equal(alice.cursor >= 12, true, 'the cursor followed the deliveries');
});

t.test('a network drop is survived; calls made meanwhile wait and then succeed', async (t) => {
  const relay = await startRelay(t);
  const proxy = await startTcpProxy(t, relay.port);
  const alice = client(t, { url: `http://127.0.0.1:${proxy.port}`, agent: { id: 'alice' }, reconnect: { initialMs: 200, maxMs: 400 } });
  await alice.connect();
  const received: string[] = [];
  alice.on('message', (m) => received.push(m.body));
  const disconnects: boolean[] = [];
  alice.on('disconnected', (d) => disconnects.push(d.willReconnect));

  const sender = await connectAgent(t, relay.wsUrl, { id: 'sender' });
  await sender.rpc.call('message/send', { to: 'alice', body: 'before' });
  await until(alice, () => received.length === 1, 'first message');

  proxy.pause(true);
  proxy.cut();
  await until(alice, () => disconnects.length === 1, 'the drop');
  await sender.rpc.call('message/send', { to: 'alice', body: 'during' });
  const pendingCall = alice.call('agent/list', {});
  proxy.pause(false);
  const listed = await pendingCall;
  t.ok(
    listed.agents.some((a) => a.id === 'alice'),
    'the call made while disconnected ran after the reconnect',
  );
  await until(alice, () => received.length === 2, 'the message sent during the drop');
  t.same(received, ['before', 'during']);
  t.same(disconnects, [true]);
});

t.test('typed errors', async (t) => {
  const relay = await startRelay(t);
  const alice = client(t, { url: relay.url, agent: { id: 'alice' } });
  const bob = client(t, { url: relay.url, agent: { id: 'bob' } });
  await Promise.all([alice.connect(), bob.connect()]);

  const err = await alice.call('task/get', { id: 999 }).catch((e: unknown) => e);
  t.type(err, RelayRpcError);
  t.equal((err as RelayRpcError).kind, 'notFound');
  t.equal((err as RelayRpcError).code, -32002);
  t.equal((err as RelayRpcError).method, 'task/get');

  const { task } = await alice.call('task/create', { title: 'fix it', target: 'bob' });
  await alice.call('task/claim', { id: task.id });
  const conflict = (await bob.call('task/claim', { id: task.id }).catch((e: unknown) => e)) as RelayRpcError;
  t.equal(conflict.kind, 'conflict');
  t.match(conflict.message, /alice/, 'the conflict names the owner');

  const bad = (await alice.call('message/send', { to: '', body: 'x' }).catch((e: unknown) => e)) as RelayRpcError;
  t.equal(bad.kind, 'invalidParams');
  t.match(bad.message, /to/);

  // Unreachable relay: connect() fails with a message saying where.
  const closedPort = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  const lost = client(t, { url: `http://127.0.0.1:${closedPort}`, agent: { id: 'carol' } });
  const refused = await lost.connect().catch((e: unknown) => e);
  t.type(refused, RelayDisconnectedError);
  t.match((refused as Error).message, `relay not reachable at ws://127.0.0.1:${closedPort}/rpc`);
  const afterClose = await lost.call('agent/list', {}).catch((e: unknown) => e);
  t.type(afterClose, RelayDisconnectedError, 'calls after a failed connect fail with the same reason');
});

t.test('calls while disconnected: fail at once, or wait bounded by the call timeout', async (t) => {
  const relay = await startRelay(t);
  const proxy = await startTcpProxy(t, relay.port);
  const failing = client(t, { url: `http://127.0.0.1:${proxy.port}`, agent: { id: 'f' }, whenDisconnected: 'fail', reconnect: { initialMs: 5000, maxMs: 5000 } });
  const waiting = client(t, { url: `http://127.0.0.1:${proxy.port}`, agent: { id: 'w' }, callTimeoutMs: 300, reconnect: { initialMs: 5000, maxMs: 5000 } });
  await Promise.all([failing.connect(), waiting.connect()]);
  proxy.pause(true);
  proxy.cut();
  await until(failing, () => !failing.connected, 'f disconnected');
  await until(waiting, () => !waiting.connected, 'w disconnected');
  t.type(await failing.call('agent/list', {}).catch((e: unknown) => e), RelayDisconnectedError);
  const timedOut = await waiting.call('agent/list', {}).catch((e: unknown) => e);
  t.type(timedOut, RelayTimeoutError);
  t.match((timedOut as Error).message, /still not connected/);
});

t.test('a wrong agent token or a replaced session closes the client for good', async (t) => {
  const relay = await startRelay(t);
  const first = client(t, { url: relay.url, agent: { id: 'alice' } });
  await first.connect();

  const impostor = client(t, { url: relay.url, agent: { id: 'alice' }, agentToken: 'not-the-token' });
  const refused = await impostor.connect().catch((e: unknown) => e);
  t.type(refused, RelayRpcError);
  t.equal((refused as RelayRpcError).kind, 'unauthorized');

  const closed = new Promise<Error | null>((resolve) => first.once('closed', resolve));
  const second = client(t, { url: relay.url, agent: { id: 'alice' }, agentToken: first.agentToken! });
  await second.connect();
  const reason = await closed;
  t.type(reason, RelayClosedError, 'the older session was replaced and does not fight back');
  t.equal((reason as RelayClosedError).closeCode, 4502);
  t.ok(second.connected);
});

t.test('heartbeats keep lastSeen moving; close({leave}) takes the agent offline at once', async (t) => {
  const relay = await startRelay(t);
  const alice = client(t, { url: relay.url, agent: { id: 'alice' }, heartbeatMs: 50 });
  await alice.connect();
  const firstSeen = alice.agent!.lastSeenAt;
  await new Promise((r) => setTimeout(r, 300));
  const { agents } = await alice.call('agent/list', {});
  t.ok(agents.find((a) => a.id === 'alice')!.lastSeenAt > firstSeen, 'lastSeen advanced by heartbeats');

  const observer = client(t, { url: relay.url, observe: ['agents'] });
  await observer.connect();
  const updates: string[] = [];
  observer.on('agent', (a) => updates.push(`${a.id}:${a.status}`));
  await alice.close({ leave: true });
  await until(observer, () => updates.includes('alice:offline'), 'alice offline');
  t.pass('the observer saw alice leave');
});

t.test("lease changes reach the holder and 'leases' observers as 'lease' events, typed calls included", async (t) => {
  const relay = await startRelay(t);
  const alice = client(t, { url: relay.url, agent: { id: 'alice' } });
  await alice.connect();
  const observer = client(t, { url: relay.url, observe: ['leases'] });
  await observer.connect();
  const seen: string[] = [];
  const mine: string[] = [];
  observer.on('lease', ({ lease, event }) => seen.push(`${event.kind}:${lease.id}`));
  alice.on('lease', ({ event }) => mine.push(event.kind));
  const { lease, token } = await alice.call('lease/acquire', { resources: ['src/**'], reason: 'refactor' });
  const renewed = await alice.call('lease/renew', { leaseId: lease.id, token });
  await alice.call('lease/release', { leaseId: lease.id, token: renewed.token });
  await until(observer, () => seen.length === 3, 'three lease events');
  t.same(seen, [`lease.acquired:${lease.id}`, `lease.renewed:${lease.id}`, `lease.released:${lease.id}`]);
  await until(alice, () => mine.length === 3, 'the holder hears them too');
});

t.test('observers resume the message feed by cursor across a restart', async (t) => {
  const dir = t.testdir();
  let relay = await startRelay(t, {}, { dir });
  const proxy = await startTcpProxy(t, relay.port);
  const watcher = client(t, { url: `http://127.0.0.1:${proxy.port}`, observe: ['messages'], reconnect: { initialMs: 400, maxMs: 800 } });
  await watcher.connect();
  const seen: string[] = [];
  watcher.on('message', (m) => seen.push(m.body));
  const a = await connectAgent(t, relay.wsUrl, { id: 'a' });
  await a.rpc.call('message/send', { to: 'broadcast', body: 'one' });
  await until(watcher, () => seen.length === 1, 'one');
  await a.rpc.close();
  await relay.close();
  relay = await startRelay(t, {}, { dir });
  proxy.retarget(relay.port);
  const a2 = await connectAgent(t, relay.wsUrl, { id: 'a', agentToken: a.token });
  await a2.rpc.call('message/send', { to: 'broadcast', body: 'two' });
  await until(watcher, () => seen.length === 2, 'two, sent while the watcher was away', 10_000);
  await a2.rpc.call('message/send', { to: 'broadcast', body: 'three' });
  await until(watcher, () => seen.length === 3, 'three');
  t.same(seen, ['one', 'two', 'three']);
});
