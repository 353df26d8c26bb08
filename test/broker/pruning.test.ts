import t, { type Test } from 'tap';
import { prune } from '../../broker/domain/prune.js';
import { ManualClock, startRelay } from '../helpers/relay.js';
import { connectAgent, RpcError, WsRpc } from '../helpers/ws-client.js';
import { waitFor } from '../helpers/wait.js';

const DAY = 86_400_000;
// The operator names system agents; `system: true` from any other id is refused (test/broker/agent-authority.test.ts).
const CONFIG = { retentionDays: 1, offlinePruneMs: 60_000, presenceIntervalMs: 600_000, systemAgents: ['sys'] };

async function rpcCode(p: Promise<unknown>): Promise<number | 'ok'> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    if (err instanceof RpcError) return err.code;
    throw err;
  }
}

/** Create a task (as an observer) and drive it to `status` as bob. */
async function taskIn(obs: WsRpc, bob: WsRpc, status: string): Promise<number> {
  const { task } = await obs.call('task/create', { title: `task ${status}`, target: 'bob', from: 'ext:ci' });
  if (status === 'open') return task.id;
  if (status === 'canceled') {
    await obs.call('task/update', { id: task.id, status: 'canceled' });
    return task.id;
  }
  const { claimToken } = await bob.call('task/claim', { id: task.id });
  if (status !== 'claimed') await bob.call('task/update', { id: task.id, claimToken, status });
  return task.id;
}

t.test('prune(core): retention of messages, events, tasks and agents, and the cursor floor', async (t: Test) => {
  const dir = t.testdir();
  const clock = new ManualClock();
  const relay = await startRelay(t, CONFIG, { dir, clock });
  const obs = await WsRpc.connect(t, relay.wsUrl);
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const sys = await connectAgent(t, relay.wsUrl, { id: 'sys', system: true });
  const ghost = await connectAgent(t, relay.wsUrl, { id: 'ghost' });

  // ---- T0: everything here will be older than retention ----
  const T0 = clock.now();
  const oldMessages: number[] = [];
  for (let i = 0; i < 3; i++) oldMessages.push((await alice.rpc.call('message/send', { to: 'bob', body: `old ${i}` })).message.id);
  const live: Record<string, number> = {}; // status → task id
  for (const status of ['open', 'claimed', 'in_progress', 'blocked']) live[status] = await taskIn(obs, bob.rpc, status);
  const closed: Record<string, number> = {};
  for (const status of ['done', 'failed', 'canceled']) closed[status] = await taskIn(obs, bob.rpc, status);
  for (const a of [sys, ghost]) {
    t.equal((await a.rpc.call('agent/update', { status: 'offline' })).agent.status, 'offline');
    await a.rpc.close();
  }
  const oldAll = (await obs.call('message/list', { limit: 1000 })).messages as Array<Record<string, any>>;
  const oldMax = oldAll.at(-1)!.id as number;
  t.ok(
    oldAll.every((m) => m.createdAt === T0),
    'all T0 messages carry the manual clock’s time',
  );
  const oldEvents = (await obs.call('event/list', { limit: 1000 })).events as Array<Record<string, any>>;
  t.ok(oldEvents.length > 10, `events were recorded at T0 (${oldEvents.length})`);

  // Nothing is old yet: a prune now removes nothing.
  const early = await prune(relay.core);
  t.same(early, { messages: 0, prunedThrough: 0, events: 0, tasks: 0, callbacks: 0, receipts: 0, leases: 0, agents: [] }, 'a prune at T0 removes nothing');

  // ---- T1 = T0 + 1 day: exactly at the retention edge when we prune at T2 ----
  clock.advance(DAY);
  const T1 = clock.now();
  const edge = (await alice.rpc.call('message/send', { to: 'bob', body: 'edge' })).message.id as number;
  const recentDone = await taskIn(obs, bob.rpc, 'done');

  // ---- T2 = T0 + 2 days ----
  clock.advance(DAY);
  const fresh = await connectAgent(t, relay.wsUrl, { id: 'fresh' });
  await fresh.rpc.call('agent/update', { status: 'offline' });
  const newer: number[] = [];
  for (let i = 0; i < 2; i++) newer.push((await alice.rpc.call('message/send', { to: 'bob', body: `new ${i}` })).message.id);

  const r = await prune(relay.core);
  t.equal(r.prunedThrough, oldMax, 'the floor is the highest pruned message id');
  t.equal(r.messages, oldAll.length, 'every T0 message was pruned');
  t.equal(r.tasks, 3, 'three terminal tasks closed at T0 were pruned');
  t.equal(r.events, oldEvents.length, 'every T0 event was pruned');
  t.same(r.agents, ['ghost'], 'only the agent offline for longer than OFFLINE_PRUNE_MS was pruned');
  t.equal(await relay.core.store.prunedThrough(), oldMax, 'the floor is stored');

  // Messages.
  for (const id of oldMessages) t.equal(await rpcCode(obs.call('message/get', { id })), -32002, `old message ${id} is gone`);
  t.equal((await obs.call('message/get', { id: edge })).message.body, 'edge', 'a message exactly RETENTION_DAYS old is kept');
  const remaining = (await obs.call('message/list', { limit: 1000 })).messages.map((m: any) => m.id);
  t.ok(remaining.length > 0 && remaining.every((id: number) => id > oldMax), 'message/list without since starts above the floor');
  t.ok(
    [edge, ...newer].every((id) => remaining.includes(id)),
    'newer messages are kept',
  );

  // The cursor floor.
  const below = obs.call('message/list', { since: oldMax - 1 });
  await t.rejects(below, { code: -32007 }, 'message/list since below the floor: -32007');
  const err = await below.catch((e: RpcError) => e);
  t.equal((err as RpcError).error.data?.floor, oldMax, 'the error names the floor');
  t.equal(await rpcCode(obs.call('message/list', { since: 0 })), -32007, 'since 0 is below the floor too');
  t.equal(await rpcCode(bob.rpc.call('message/list', { since: oldMax - 1 })), -32007, 'an inbox since below the floor: -32007');
  const atFloor = await obs.call('message/list', { since: oldMax, limit: 1000 });
  t.same(
    atFloor.messages.map((m: any) => m.id),
    remaining,
    'since at the floor works and loses nothing',
  );
  t.same(
    (await obs.call('message/list', { since: oldMax + 1, limit: 1000 })).messages.map((m: any) => m.id),
    remaining.filter((id: number) => id > oldMax + 1),
    'since above the floor works',
  );

  const tooOld = await WsRpc.connect(t, relay.wsUrl);
  t.equal(await rpcCode(tooOld.call('agent/register', { id: 'bob', agentToken: bob.token, since: oldMax - 1 })), -32007, 'agent/register since below the floor: -32007');
  const resumed = await WsRpc.connect(t, relay.wsUrl);
  const reg = await resumed.call('agent/register', { id: 'bob', agentToken: bob.token, since: oldMax });
  t.equal(reg.agent.id, 'bob', 'agent/register since at the floor works');
  const bobInbox = (await resumed.call('message/list', { limit: 1000 })).messages.map((m: any) => m.id);
  t.ok(bobInbox.includes(edge) && newer.every((id) => bobInbox.includes(id)), 'bob’s inbox keeps what is newer than retention');
  await resumed.until(() => resumed.messages().length >= bobInbox.length, 3000, 'bob’s backlog');
  t.same(
    resumed.messages().map((m) => m.id),
    bobInbox,
    'the backlog from the floor is everything bob still has, in order',
  );

  // Agents.
  const agents = (await obs.call('agent/list', {})).agents.map((a: any) => a.id);
  t.same(agents, ['alice', 'bob', 'fresh', 'sys'], 'ghost is pruned; the system agent and a recently offline agent are kept');
  t.equal((await obs.call('agent/list', {})).agents.find((a: any) => a.id === 'sys').status, 'offline', 'the system agent is kept although offline for two days');

  // Tasks.
  for (const [status, id] of Object.entries(live)) {
    const got = await obs.call('task/get', { id });
    t.equal(got.task.status, status, `a ${status} task two days old is never pruned`);
  }
  for (const [status, id] of Object.entries(closed)) t.equal(await rpcCode(obs.call('task/get', { id })), -32002, `a ${status} task closed two days ago is pruned`);
  t.equal((await obs.call('task/get', { id: recentDone })).task.status, 'done', 'a task closed within retention is kept');
  t.equal(await rpcCode(resumed.call('task/claim', { id: live.open! })), 'ok', 'the kept open task can still be claimed');

  // Events.
  const events = (await obs.call('event/list', { limit: 1000 })).events as Array<Record<string, any>>;
  t.ok(events.length > 0, 'recent events are kept');
  t.ok(
    events.every((e) => e.at >= T1),
    'no event older than retention is left',
  );
  const oldIds = new Set(oldEvents.map((e) => e.id));
  t.notOk(
    events.some((e) => oldIds.has(e.id)),
    'none of the T0 events is left',
  );

  // The floor survives a restart of the relay.
  await relay.close();
  const again = await startRelay(t, CONFIG, { dir, clock });
  const obs2 = await WsRpc.connect(t, again.wsUrl);
  t.equal(await rpcCode(obs2.call('message/list', { since: oldMax - 1 })), -32007, 'after restart, since below the floor is still -32007');
  t.equal(await rpcCode(obs2.call('message/list', { since: oldMax })), 'ok', 'and since at the floor still works');
  t.equal(T1 - T0, DAY);
});

t.test('the scheduler prunes on its own every pruneIntervalMs', async (t: Test) => {
  const clock = new ManualClock();
  const relay = await startRelay(t, { ...CONFIG, pruneIntervalMs: 100 }, { clock });
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const ghost = await connectAgent(t, relay.wsUrl, { id: 'ghost' });
  await ghost.rpc.call('agent/update', { status: 'offline' });
  const old = (await alice.rpc.call('message/send', { to: 'bob', body: 'old' })).message.id as number;

  // Let the scheduler tick a few times: nothing is old yet, so nothing goes.
  const ticks = relay.logs.length;
  await new Promise((r) => setTimeout(r, 350));
  t.equal(await relay.core.store.prunedThrough(), 0, 'scheduled prunes of fresh data remove nothing');
  t.equal((await alice.rpc.call('message/get', { id: old })).message.body, 'old', 'the message is still there');
  t.notOk(
    relay.logs.slice(ticks).some((l) => l.msg === 'pruned'),
    'no prune is logged while nothing is old',
  );

  clock.advance(2 * DAY);
  const recent = (await alice.rpc.call('message/send', { to: 'bob', body: 'recent' })).message.id as number;
  await waitFor(async () => (await relay.core.store.prunedThrough()) >= old && !relay.core.agents.has('ghost'), 'the scheduled prune', 5000);
  t.equal(await relay.core.store.prunedThrough(), old, 'the scheduler moved the floor to the old message');
  t.equal(await rpcCode(alice.rpc.call('message/get', { id: old })), -32002, 'the old message is gone');
  t.equal((await alice.rpc.call('message/get', { id: recent })).message.body, 'recent', 'the recent message is kept');
  t.notOk(
    (await alice.rpc.call('agent/list', {})).agents.some((a: any) => a.id === 'ghost'),
    'the long-offline agent is gone',
  );
  const line = relay.logs.find((l) => l.msg === 'pruned') as { prune?: { agents?: string[]; prunedThrough?: number } } | undefined;
  t.ok(line, 'the prune is logged');
  t.same(line?.prune?.agents, ['ghost'], 'the log names the pruned agent');
  t.equal(line?.prune?.prunedThrough, old, 'the log names the floor');
});
