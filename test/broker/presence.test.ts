import t from 'tap';
import { startRelay } from '../helpers/relay.js';
import { connectAgent, rpcErrorOf, WsRpc } from '../helpers/ws-client.js';
import { waitFor } from '../helpers/wait.js';

const TTL = 300;
const FAST = { staleTtlMs: TTL, presenceIntervalMs: 50 };

async function statusOf(rpc: WsRpc, id: string): Promise<string | undefined> {
  const { agents } = await rpc.call('agent/list', {});
  return agents.find((a: any) => a.id === id)?.status;
}

t.test('a dropped agent goes offline after the TTL and its unfinished tasks are released and announced again', async (t) => {
  const relay = await startRelay(t, FAST);
  const w1 = await connectAgent(t, relay.wsUrl, { id: 'w1', tags: ['workers'] });
  const w2 = await connectAgent(t, relay.wsUrl, { id: 'w2', tags: ['workers'] });
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const fanout = (await observer.call('task/create', { title: 'fan-out task', target: 'tag:workers', from: 'ext:ci' })).task;
  const direct = (await observer.call('task/create', { title: 'direct task', target: 'w2', from: 'ext:ci' })).task;
  const finished = (await observer.call('task/create', { title: 'finished task', target: 'tag:workers', from: 'ext:ci' })).task;
  const c1 = await w1.rpc.call('task/claim', { id: fanout.id });
  await w1.rpc.call('task/update', { id: fanout.id, claimToken: c1.claimToken, status: 'in_progress', progress: 40 });
  await w1.rpc.call('task/claim', { id: direct.id });
  const c3 = await w1.rpc.call('task/claim', { id: finished.id });
  await w1.rpc.call('task/update', { id: finished.id, claimToken: c3.claimToken, status: 'done' });
  await w2.rpc.until(() => w2.rpc.messages().length === 3, 3000, 'first announcements');

  const droppedAt = Date.now();
  w1.rpc.terminate();
  await waitFor(async () => (await statusOf(observer, 'w1')) === 'offline', 'w1 offline', 5000);
  const offlineAfter = Date.now() - droppedAt;
  t.ok(offlineAfter >= TTL - 10, `not before the TTL (${offlineAfter} ms)`);
  t.equal(await statusOf(observer, 'w2'), 'online', 'the connected agent stays online');

  for (const id of [fanout.id, direct.id]) {
    const { task } = await observer.call('task/get', { id });
    t.equal(task.status, 'open', `task ${id} is open again`);
    t.equal(task.claimedBy, null);
    t.equal(task.claimedAt, null);
  }
  const kept = (await observer.call('task/get', { id: finished.id })).task;
  t.equal(kept.status, 'done', 'a finished task is not reopened');
  t.equal(kept.claimedBy, 'w1');

  // Re-announced: the target gets a new claimable message for each released task.
  await w2.rpc.until(() => w2.rpc.messages().length === 5, 3000, 're-announcements');
  const again = w2.rpc.messages().slice(3);
  t.same(again.map((m) => m.taskId).sort(), [fanout.id, direct.id].sort());
  for (const m of again) {
    t.equal(m.claimable, true);
    t.equal(m.from, 'ext:relay');
  }
  const fanAgain = again.find((m) => m.taskId === fanout.id)!;
  t.equal(fanAgain.to, 'tag:workers');
  const deliveries = (await observer.call('message/get', { id: fanAgain.id })).deliveries;
  t.same(
    deliveries.map((d: any) => d.agentId),
    ['w2'],
    'the re-announcement does not fan out to the agent that just went offline',
  );

  const offline = (await observer.call('event/list', { kind: 'agent.offline' })).events;
  t.equal(offline.length, 1);
  t.equal(offline[0].agentId, 'w1');
  t.match(offline[0].data.reason, /stale/);
  const released = (await observer.call('event/list', { kind: 'task.released' })).events;
  t.same(released.map((e: any) => e.taskId).sort(), [fanout.id, direct.id].sort());
  for (const e of released) {
    t.equal(e.agentId, 'w1');
    t.equal(e.data.previousOwner, 'w1');
  }
  t.ok(
    released.every((e: any) => e.id > offline[0].id),
    'the releases follow the offline event',
  );

  const reclaim = await w2.rpc.call('task/claim', { id: fanout.id });
  t.equal(reclaim.claimToken, 2, 'another agent can claim it, as attempt 2');
});

t.test('an agent with an open WebSocket stays online past the TTL without heartbeats', async (t) => {
  const relay = await startRelay(t, FAST);
  const quiet = await connectAgent(t, relay.wsUrl, { id: 'quiet' });
  const control = await connectAgent(t, relay.wsUrl, { id: 'control' });
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const task = (await observer.call('task/create', { title: 'long job', target: 'quiet', from: 'ext:ci' })).task;
  await quiet.rpc.call('task/claim', { id: task.id });
  const start = Date.now();
  control.rpc.terminate();
  // The control, dropped at the same moment, going offline proves the sweep ran past the TTL.
  await waitFor(async () => (await statusOf(observer, 'control')) === 'offline', 'control offline', 5000);
  await waitFor(async () => Date.now() - start > 2 * TTL, 'two TTLs', 5000);
  const { agents } = await observer.call('agent/list', {});
  const q = agents.find((a: any) => a.id === 'quiet');
  t.equal(q.status, 'online');
  t.equal(q.connected, true);
  const got = await observer.call('task/get', { id: task.id });
  t.equal(got.task.status, 'claimed', 'its claim is kept');
  t.equal(got.task.claimedBy, 'quiet');
  t.same(
    (await observer.call('event/list', { kind: 'agent.offline' })).events.map((e: any) => e.agentId),
    ['control'],
  );
});

t.test('heartbeats over a connection the agent does not hold keep it online', async (t) => {
  const relay = await startRelay(t, FAST);
  const hb = await connectAgent(t, relay.wsUrl, { id: 'hb' });
  const control = await connectAgent(t, relay.wsUrl, { id: 'control' });
  const observer = await WsRpc.connect(t, relay.wsUrl);
  await Promise.all([hb.rpc.close(), control.rpc.close()]);
  const start = Date.now();

  const bad = await rpcErrorOf(observer.call('agent/heartbeat', { agentId: 'hb', agentToken: 'not-the-token' }));
  t.equal(bad.code, -32001, 'a wrong token is refused');
  t.equal((await rpcErrorOf(observer.call('agent/heartbeat', {}))).code, -32004, 'an observer without credentials is not an agent');

  let beats = 0;
  let stop = false;
  const beating = (async () => {
    while (!stop) {
      const r = await observer.call('agent/heartbeat', { agentId: 'hb', agentToken: hb.token });
      if (r.agent.id !== 'hb' || r.agent.status !== 'online') throw new Error(`heartbeat answered ${JSON.stringify(r.agent)}`);
      beats++;
      await new Promise((r) => setTimeout(r, 60));
    }
  })();
  await waitFor(async () => (await statusOf(observer, 'control')) === 'offline', 'control offline', 5000);
  await waitFor(async () => Date.now() - start > 3 * TTL, 'three TTLs', 5000);
  const { agents } = await observer.call('agent/list', {});
  const a = agents.find((x: any) => x.id === 'hb');
  t.equal(a.status, 'online', 'heartbeats kept it online');
  t.equal(a.connected, false, 'although it holds no connection');
  t.ok(beats >= 5, `heartbeats were sent (${beats})`);
  stop = true;
  await beating;

  // Without them it goes the way of the control.
  await waitFor(async () => (await statusOf(observer, 'hb')) === 'offline', 'hb offline after heartbeats stop', 5000);
  t.same(
    (await observer.call('event/list', { kind: 'agent.offline' })).events.map((e: any) => e.agentId),
    ['control', 'hb'],
  );
});

t.test('agent/update to offline releases claimed work at once and a heartbeat brings the agent back', async (t) => {
  const relay = await startRelay(t); // default TTL: the sweep plays no part here
  const leaver = await connectAgent(t, relay.wsUrl, { id: 'leaver' });
  const peer = await connectAgent(t, relay.wsUrl, { id: 'peer', tags: ['team'] });
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const task = (await observer.call('task/create', { title: 'half done', target: 'tag:team', from: 'ext:ci' })).task;
  await leaver.rpc.call('task/claim', { id: task.id });

  const left = await leaver.rpc.call('agent/update', { status: 'offline' });
  t.equal(left.agent.status, 'offline');
  const got = await observer.call('task/get', { id: task.id });
  t.equal(got.task.status, 'open', 'released at once');
  t.equal(got.task.claimedBy, null);
  t.same(
    got.events.map((e: any) => e.kind),
    ['task.created', 'task.claimed', 'task.released'],
  );
  t.equal(got.events[2].data.previousOwner, 'leaver');
  const off = (await observer.call('event/list', { kind: 'agent.offline' })).events;
  t.equal(off.length, 1);
  t.equal(off[0].agentId, 'leaver');
  t.equal(off[0].data.reason, 'left');
  await peer.rpc.until(() => peer.rpc.messages().filter((m) => m.taskId === task.id).length === 2, 3000, 're-announcement');
  t.equal(await statusOf(observer, 'leaver'), 'offline');

  const back = await leaver.rpc.call('agent/heartbeat', {});
  t.equal(back.agent.status, 'online', 'a heartbeat from an offline agent brings it online');
  t.equal(await statusOf(observer, 'leaver'), 'online');
  const online = (await observer.call('event/list', { kind: 'agent.online' })).events.filter((e: any) => e.agentId === 'leaver');
  t.equal(online.length, 2, 'registration and return');
  t.equal(online[0].data.resumed, false);
  t.equal(online[1].data.resumed, true);
  const again = await leaver.rpc.call('agent/heartbeat', {});
  t.equal(again.agent.status, 'online');
  t.equal((await observer.call('event/list', { kind: 'agent.online' })).events.filter((e: any) => e.agentId === 'leaver').length, 2, 'an online heartbeat records nothing');
});

t.test('a heartbeat from an agent the sweep took offline brings it online', async (t) => {
  const relay = await startRelay(t, FAST);
  const gone = await connectAgent(t, relay.wsUrl, { id: 'gone' });
  const observer = await WsRpc.connect(t, relay.wsUrl);
  gone.rpc.terminate();
  await waitFor(async () => (await statusOf(observer, 'gone')) === 'offline', 'gone offline', 5000);
  const r = await observer.call('agent/heartbeat', { agentId: 'gone', agentToken: gone.token });
  t.equal(r.agent.status, 'online');
  const kindsOf = (await observer.call('event/list', {})).events.filter((e: any) => e.agentId === 'gone').map((e: any) => e.kind);
  t.same(kindsOf, ['agent.online', 'agent.offline', 'agent.online']);
});

t.test('re-registering an existing id needs its agentToken', async (t) => {
  const relay = await startRelay(t);
  const first = await connectAgent(t, relay.wsUrl, { id: 'dup', label: 'Dup', tags: ['x'] });
  t.type(first.token, 'string');
  t.ok(first.token.length >= 16, 'the token is not trivially short');

  const intruder = await WsRpc.connect(t, relay.wsUrl);
  t.equal((await rpcErrorOf(intruder.call('agent/register', { id: 'dup' }))).code, -32001, 'no token: unauthorized');
  t.equal((await rpcErrorOf(intruder.call('agent/register', { id: 'dup', agentToken: 'wrong-token' }))).code, -32001, 'wrong token: unauthorized');
  // The refused attempts did not take over the live connection.
  t.equal(first.rpc.closeCode, null);
  const ping = await intruder.call('message/send', { to: 'dup', body: 'still yours?', from: 'ext:test' });
  t.same(ping.recipients, ['dup']);
  await first.rpc.until(() => first.rpc.messages().length === 1, 3000, 'message to the original connection');

  await first.rpc.close();
  const again = await WsRpc.connect(t, relay.wsUrl);
  const r = await again.call('agent/register', { id: 'dup', agentToken: first.token });
  t.equal(r.agent.id, 'dup');
  t.equal(r.agentToken, first.token, 'the same token keeps working');
  t.equal(r.agent.label, 'Dup', 'the registration is resumed, not replaced');
  t.same(r.agent.tags, ['x']);
  const third = await WsRpc.connect(t, relay.wsUrl);
  await again.close();
  const r3 = await third.call('agent/register', { id: 'dup', agentToken: r.agentToken });
  t.equal(r3.agentToken, first.token);
  const { agents } = await third.call('agent/list', {});
  t.equal(agents.filter((a: any) => a.id === 'dup').length, 1, 'still one agent');
});

t.test('a second connection registering the same agent closes the first with 4502', async (t) => {
  const relay = await startRelay(t);
  const first = await connectAgent(t, relay.wsUrl, { id: 'twin' });
  const second = await WsRpc.connect(t, relay.wsUrl);
  await second.call('agent/register', { id: 'twin', agentToken: first.token });
  t.equal(await first.rpc.closed, 4502, 'the older connection is closed as replaced');
  t.equal(second.closeCode, null, 'the newer one stays open');

  const observer = await WsRpc.connect(t, relay.wsUrl);
  const { agents } = await observer.call('agent/list', {});
  const twin = agents.find((a: any) => a.id === 'twin');
  t.equal(twin.status, 'online', 'replacing is not leaving');
  t.equal(twin.connected, true);
  await observer.call('message/send', { to: 'twin', body: 'to the new one', from: 'ext:test' });
  await second.until(() => second.messages().length === 1, 3000, 'message on the new connection');
  t.equal(second.messages()[0]!.body, 'to the new one');
  t.equal(first.rpc.messages().length, 0);
  t.same((await observer.call('event/list', { kind: 'agent.offline' })).events, [], 'no offline event');
});
