import { readFileSync } from 'node:fs';
import t, { type Test } from 'tap';
import { join } from 'node:path';
import { RelayHttpClient } from '../../clients/http-client.js';
import { startRelay } from '../helpers/relay.js';
import { connectAgent, WsRpc } from '../helpers/ws-client.js';
import { agentRecord, completeTurn, deliveryState, occurrences, repliesTo, settle, setup, spawnAdapter, startWsProxy, within } from './harness.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';
import { waitFor } from '../helpers/wait.js';

/**
 * What goes wrong in the field: the app-server socket drops (mid-turn, or with turn/start in
 * flight), the adapter is killed and restarted from its state file, the relay restarts. In every
 * case each message is delivered exactly once (counted in the thread's inputs) and answered once.
 */

const DELIVERED = ['pushed', 'injected', 'read'];
const readState = (path: string) => JSON.parse(readFileSync(path, 'utf8'));

t.test('app-server dropped mid-turn: reconnect, re-initialize, resume; nothing lost or repeated', async (t) => {
  const s = await setup(t, { fake: { holdTurns: true } });
  s.startBridge();
  const threadId = await s.ready();
  const obs = await s.observer();
  const alice = await s.sender();
  const m1 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'one' })).message;
  await waitFor(() => occurrences(s.fake, threadId, m1.id) === 1, 'turn 1 running');
  const m2 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'two' })).message;
  await waitFor(async () => DELIVERED.includes((await deliveryState(obs, m2.id, s.agentId))!), 'm2 queued in the adapter');

  const conns = s.fake.totalConnections;
  await s.fake.dropConnections();
  await s.fake.waitFor(() => s.fake.totalConnections > conns && s.fake.subscribers(threadId).length === 1, 8000, 'the adapter back on its thread');
  const conn = s.fake.connectionInfo().find((c) => c.open)!;
  t.ok(conn.initialized && conn.initializedNotified, 'the new socket did the handshake');
  t.equal(s.fake.requests('thread/resume').filter((r) => r.conn === conn.id && r.msg.params.threadId === threadId).length, 1, 'resumed its thread on the new socket');
  t.notOk(
    s.fake.sent.some((f) => f.msg?.error?.message === 'Not initialized'),
    'never "Not initialized"',
  );
  const m3 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'three' })).message;
  await waitFor(async () => DELIVERED.includes((await deliveryState(obs, m3.id, s.agentId))!), 'm3 queued in the adapter');
  await settle(300);
  t.equal(s.fake.requests('turn/start').length, 1, 'still waiting for the running turn');

  await completeTurn(s.fake, threadId);
  await waitFor(() => repliesTo(alice.rpc, m1.id).length === 1, 'the reply to m1 after the reconnect');
  await waitFor(() => occurrences(s.fake, threadId, m2.id) === 1 && occurrences(s.fake, threadId, m3.id) === 1, 'm2 and m3 delivered');
  t.equal(s.fake.turnInputs(threadId).length, 2, 'in one turn');
  await completeTurn(s.fake, threadId);
  await waitFor(() => repliesTo(alice.rpc, m2.id).length === 1 && repliesTo(alice.rpc, m3.id).length === 1, 'their replies');
  await settle(300);
  for (const m of [m1, m2, m3]) {
    t.equal(occurrences(s.fake, threadId, m.id), 1, `#${m.id} delivered once`);
    t.equal(repliesTo(alice.rpc, m.id).length, 1, `#${m.id} answered once`);
  }
  t.same(s.fake.busyTurnStarts, []);
});

for (const legacyReads of [false, true]) {
  t.test(
    `the turn finished while the app-server was unreachable: the answer is read from the resumed thread${legacyReads ? ' (pre-0.171: no thread/turns/list, includeTurns instead)' : ''}`,
    async (t) => {
      const s = await setup(t, { fake: { holdTurns: true, reply: () => 'done while you were away', legacyReads } });
      s.startBridge();
      const threadId = await s.ready();
      const alice = await s.sender();
      const m1 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'one' })).message;
      await waitFor(() => occurrences(s.fake, threadId, m1.id) === 1, 'turn 1 running');
      await s.fake.stop();
      await completeTurn(s.fake, threadId); // nobody subscribed hears turn/completed
      await s.fake.restart();
      await waitFor(() => repliesTo(alice.rpc, m1.id).length === 1, 'the reply');
      t.equal(repliesTo(alice.rpc, m1.id)[0]!.body, 'done while you were away');
      const m2 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'two' })).message;
      await waitFor(() => occurrences(s.fake, threadId, m2.id) === 1, 'the next message goes through');
      await completeTurn(s.fake, threadId);
      await waitFor(() => repliesTo(alice.rpc, m2.id).length === 1, 'its reply');
      await settle(300);
      t.equal(repliesTo(alice.rpc, m1.id).length, 1, 'answered once');
      if (legacyReads)
        t.ok(
          s.fake.requests('thread/read').some((r) => r.msg.params.includeTurns),
          'the turns came from thread/read {includeTurns}',
        );
    },
  );
}

t.test('dropped with turn/start in flight, the server got it: recognised on resume, not sent again', async (t) => {
  let armed = false;
  const s = await setup(t);
  // The server starts the turn, and the socket dies before the answer goes out.
  s.fake.opts.turnScript = () => {
    if (armed) {
      armed = false;
      void s.fake.dropConnections();
    }
    return undefined;
  };
  s.startBridge();
  const threadId = await s.ready();
  const obs = await s.observer();
  const alice = await s.sender();
  const m0 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'zero' })).message;
  await waitFor(() => repliesTo(alice.rpc, m0.id).length === 1, 'a first turn');
  armed = true;
  const conns = s.fake.totalConnections;
  const m1 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'one' })).message;
  await s.fake.waitFor(() => s.fake.totalConnections > conns, 8000, 'the reconnect');
  t.notOk(armed, 'the drop happened inside turn/start');
  await waitFor(() => repliesTo(alice.rpc, m1.id).length === 1, 'the reply to m1');
  await waitFor(async () => (await deliveryState(obs, m1.id, s.agentId)) === 'read', 'm1 read');
  const m2 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'two' })).message;
  await waitFor(() => repliesTo(alice.rpc, m2.id).length === 1, 'the next message');
  await settle(300);
  t.equal(occurrences(s.fake, threadId, m1.id), 1, 'm1 delivered once');
  t.equal(repliesTo(alice.rpc, m1.id).length, 1, 'm1 answered once');
  t.equal(occurrences(s.fake, threadId, m2.id), 1);
});

t.test('dropped with turn/start in flight, the server never got it: sent again after the reconnect, once', async (t) => {
  const s = await setup(t);
  const proxy = await startWsProxy(t, () => s.fake.url);
  s.startBridge({ CODEX_APP_SERVER_URL: proxy.url });
  const threadId = await s.ready();
  const obs = await s.observer();
  const alice = await s.sender();
  const m0 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'zero' })).message;
  await waitFor(() => repliesTo(alice.rpc, m0.id).length === 1, 'a first turn');
  let lost = false;
  proxy.cutOn(
    (msg) => msg.method === 'turn/start',
    () => (lost = true),
  );
  const m1 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'one' })).message;
  await waitFor(() => lost, 'turn/start lost on the way');
  t.equal(occurrences(s.fake, threadId, m1.id), 0, 'the server never saw it');
  t.not(await deliveryState(obs, m1.id, s.agentId), 'read', 'so it is not read');
  await waitFor(() => repliesTo(alice.rpc, m1.id).length === 1, 'delivered after the reconnect');
  await settle(300);
  t.equal(occurrences(s.fake, threadId, m1.id), 1, 'once');
  t.equal(repliesTo(alice.rpc, m1.id).length, 1);
  t.equal(await deliveryState(obs, m1.id, s.agentId), 'read');
});

t.test('in-process: the adapter stopped abruptly inside turn/start, a new one on the same state file delivers nothing twice', async (t) => {
  const s = await setup(t);
  const first = s.startBridge();
  const threadId = await s.ready();
  const alice = await s.sender();
  const m0 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'zero' })).message;
  await waitFor(() => repliesTo(alice.rpc, m0.id).length === 1, 'a first turn');
  let stopped = false;
  s.fake.opts.turnScript = () => {
    if (!stopped) {
      stopped = true;
      void first.stop(); // the turn started; the adapter goes before it hears the answer
    }
    return undefined;
  };
  const m1 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'one' })).message;
  await waitFor(() => stopped, 'the stop inside turn/start');
  await first.outcome;
  t.match(readState(s.statePath).inFlight, { turnId: null, messageIds: [m1.id] }, 'the state file holds the unanswered turn/start');
  const m2 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'two, while no adapter runs' })).message;

  s.startBridge();
  await waitFor(() => repliesTo(alice.rpc, m1.id).length === 1, 'the reply to m1 from the new adapter');
  await waitFor(() => repliesTo(alice.rpc, m2.id).length === 1, 'm2 delivered by the new adapter');
  await settle(400);
  t.equal(occurrences(s.fake, threadId, m1.id), 1, 'm1 delivered once');
  t.equal(occurrences(s.fake, threadId, m2.id), 1, 'm2 delivered once');
  t.equal(repliesTo(alice.rpc, m1.id).length, 1);
  t.equal(repliesTo(alice.rpc, m2.id).length, 1);
});

t.test('kill -9 of the adapter process mid-turn, restart from the state file: no loss, no duplicate', async (t) => {
  const s = await setup(t, { fake: { holdTurns: true } });
  const a1 = spawnAdapter(t, s.env);
  const threadId = await s.ready();
  const obs = await s.observer();
  const alice = await s.sender();
  const m1 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'one' })).message;
  await waitFor(() => occurrences(s.fake, threadId, m1.id) === 1, 'turn 1 running', 15_000);
  const m2 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'two' })).message;
  await waitFor(async () => DELIVERED.includes((await deliveryState(obs, m2.id, s.agentId))!), 'm2 queued in the adapter');
  const token = readState(s.statePath).agentToken;
  t.ok(token, 'the state file holds the agent token');

  await a1.kill9();
  t.equal((await a1.exited).signal, 'SIGKILL');
  const m3 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'three, while the adapter is dead' })).message;

  const a2 = spawnAdapter(t, s.env);
  await s.fake.waitFor(() => s.fake.subscribers(threadId).length === 1, 15_000, 'the new process on the same thread');
  await waitFor(async () => (await agentRecord(obs, s.agentId))?.ready === true, 'ready again', 15_000);
  t.equal(s.fake.requests('thread/start').length, 1, 'no second thread');
  t.equal(readState(s.statePath).agentToken, token, 'the same agent token');
  await settle(400);
  t.equal(s.fake.requests('turn/start').length, 1, 'waits for the running turn');
  await completeTurn(s.fake, threadId);
  await waitFor(() => repliesTo(alice.rpc, m1.id).length === 1, 'the reply to m1 from the new process', 15_000);
  await waitFor(() => occurrences(s.fake, threadId, m2.id) === 1 && occurrences(s.fake, threadId, m3.id) === 1, 'm2 and m3', 15_000);
  await completeTurn(s.fake, threadId);
  await waitFor(() => repliesTo(alice.rpc, m2.id).length === 1 && repliesTo(alice.rpc, m3.id).length === 1, 'their replies', 15_000);
  await settle(400);
  for (const m of [m1, m2, m3]) {
    t.equal(occurrences(s.fake, threadId, m.id), 1, `#${m.id} delivered once`);
    t.equal(repliesTo(alice.rpc, m.id).length, 1, `#${m.id} answered once`);
  }
  t.same(s.fake.busyTurnStarts, []);
  await a2.kill9();
});

t.test('kill -9 while turn/start is in flight (the server got it): the restarted process recognises the turn', async (t) => {
  const s = await setup(t);
  const a1 = spawnAdapter(t, s.env);
  const threadId = await s.ready();
  const alice = await s.sender();
  const m0 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'zero' })).message;
  await waitFor(() => repliesTo(alice.rpc, m0.id).length === 1, 'a first turn', 15_000);
  let killed = false;
  s.fake.opts.turnScript = () => {
    if (!killed) {
      killed = true;
      process.kill(a1.child.pid!, 'SIGKILL'); // before the answer to turn/start can be read
    }
    return undefined;
  };
  const m1 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'one' })).message;
  await a1.exited;
  t.ok(killed, 'killed inside turn/start');
  t.match(readState(s.statePath).inFlight, { turnId: null, messageIds: [m1.id] }, 'the state file holds the unanswered turn/start');
  spawnAdapter(t, s.env);
  await waitFor(() => repliesTo(alice.rpc, m1.id).length === 1, 'the reply to m1', 15_000);
  const m2 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'two' })).message;
  await waitFor(() => repliesTo(alice.rpc, m2.id).length === 1, 'the next message', 15_000);
  await settle(400);
  t.equal(occurrences(s.fake, threadId, m1.id), 1, 'm1 delivered once');
  t.equal(repliesTo(alice.rpc, m1.id).length, 1, 'm1 answered once');
  t.equal(occurrences(s.fake, threadId, m2.id), 1);
});

t.test('relay restarted: the adapter re-registers with the same id and token; later messages arrive once', async (t) => {
  const s = await setup(t, { fake: { holdTurns: true } });
  const proxy = await startTcpProxy(t, s.relay.port);
  s.startBridge({ AGENT_RELAY_URL: proxy.url });
  const threadId = await s.ready();
  const alice = await s.sender();
  const m1 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'before' })).message;
  await waitFor(() => occurrences(s.fake, threadId, m1.id) === 1, 'turn 1 running');
  const token = readState(s.statePath).agentToken;
  t.ok(token, 'the state file holds the agent token');

  await s.relay.close();
  // The turn ends while the relay is down: its reply waits for the relay.
  await completeTurn(s.fake, threadId);
  const relay2 = await startRelay(t, {}, { dir: join(s.dir, 'relay') });
  proxy.retarget(relay2.port);
  // Sent at once, most likely before the adapter is back: it must come as the backlog.
  const alice2 = await connectAgent(t, relay2.wsUrl, { id: 'alice', agentToken: alice.token, since: m1.id });
  const early = (await alice2.rpc.call('message/send', { to: s.agentId, body: 'while you reconnect' })).message;
  const obs = await WsRpc.connect(t, relay2.wsUrl);
  await waitFor(
    async () => {
      const a = await agentRecord(obs, s.agentId);
      return a?.connected === true && a.ready === true;
    },
    'the adapter back on the relay and ready',
    15_000,
  );
  t.equal(readState(s.statePath).agentToken, token, 'same agent token kept');
  // The stored token still opens the agent's inbox on the restarted relay (a read, not a takeover).
  const inbox = await new RelayHttpClient({ url: relay2.url }).inbox({ agentId: s.agentId, agentToken: token });
  t.ok(
    inbox.messages.some((m) => m.id === m1.id),
    'the stored token is the agent’s token on the restarted relay',
  );
  await waitFor(() => repliesTo(alice2.rpc, m1.id).length === 1, 'the reply to m1, sent once the relay came back', 15_000);
  await waitFor(() => occurrences(s.fake, threadId, early.id) === 1, 'the message sent during the reconnect', 15_000);
  await completeTurn(s.fake, threadId);
  await waitFor(() => repliesTo(alice2.rpc, early.id).length === 1, 'its reply', 15_000);

  s.fake.opts.holdTurns = false;
  const later = [];
  for (const body of ['after 1', 'after 2']) {
    const m = (await alice2.rpc.call('message/send', { to: s.agentId, body })).message;
    later.push(m);
    await waitFor(() => repliesTo(alice2.rpc, m.id).length === 1, `the reply to #${m.id}`, 15_000);
  }
  await settle(400);
  for (const m of [m1, early, ...later]) t.equal(occurrences(s.fake, threadId, m.id), 1, `#${m.id} delivered once`);
  for (const m of [m1, early, ...later]) t.equal(repliesTo(alice2.rpc, m.id).length, 1, `#${m.id} answered once`);
  const agents = (await obs.call('agent/list', {})).agents.filter((a: any) => a.client === 'codex-live');
  t.same(
    agents.map((a: any) => a.id),
    [s.agentId],
    'one codex agent, the same id',
  );
});

t.test('the app-server unloads the thread (thread/closed) while connected: the adapter re-attaches and delivers', async (t) => {
  const s = await setup(t);
  s.startBridge();
  const threadId = await s.ready();
  const alice = await s.sender();
  const m0 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'zero' })).message;
  await waitFor(() => repliesTo(alice.rpc, m0.id).length === 1, 'a first turn');
  s.fake.unloadThread(threadId);
  const m1 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'after the unload' })).message;
  await waitFor(() => repliesTo(alice.rpc, m1.id).length === 1, 'delivered into the re-loaded thread');
  t.equal(occurrences(s.fake, threadId, m1.id), 1);
  t.equal(s.fake.requests('thread/start').length, 1, 'the same thread, resumed');
  t.notOk(
    s.fake.sent.some((f) => /not loaded/.test(f.msg?.error?.message ?? '')),
    'never tried turn/start on the unloaded thread',
  );
});

/** The adapter attached, one message sent, its turn held running. */
async function turnRunning(t: Test, body: string) {
  const s = await setup(t, { fake: { holdTurns: true } });
  s.startBridge();
  const threadId = await s.ready();
  const alice = await s.sender();
  const m1 = (await alice.rpc.call('message/send', { to: s.agentId, body })).message;
  await waitFor(() => occurrences(s.fake, threadId, m1.id) === 1, 'turn 1 running');
  return { s, threadId, alice, m1 };
}

t.test('a new app-server process (running turn lost): the message goes out again, once, in a new turn', async (t) => {
  const { s, threadId, alice, m1 } = await turnRunning(t, 'long job');
  s.fake.opts.holdTurns = false;
  await s.fake.restart({ fresh: true });
  await waitFor(() => repliesTo(alice.rpc, m1.id).length === 1, 'the reply');
  t.match(repliesTo(alice.rpc, m1.id)[0]!.body, /^echo: /, 'answered by the new turn, not "(Codex turn interrupted)"');
  t.equal(occurrences(s.fake, threadId, m1.id), 2, 'delivered again once');
  t.match(
    s.fake.thread(threadId).turns.map((x: any) => x.status),
    ['interrupted', 'completed'],
  );
  await settle(300);
  t.equal(repliesTo(alice.rpc, m1.id).length, 1, 'one reply');
  const m2 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'again' })).message;
  await waitFor(() => repliesTo(alice.rpc, m2.id).length === 1, 'the next reply');
  t.equal(occurrences(s.fake, threadId, m2.id), 1, 'in the same (resumed) thread');
});

t.test('the app-server dies again under the re-delivered turn: the sender hears it was interrupted (no loop)', async (t) => {
  const { s, threadId, alice, m1 } = await turnRunning(t, 'doomed job');
  await s.fake.restart({ fresh: true });
  await waitFor(() => occurrences(s.fake, threadId, m1.id) === 2 && s.fake.activeTurnId(threadId) !== null, 'the re-delivered turn running');
  await s.fake.restart({ fresh: true });
  await waitFor(() => repliesTo(alice.rpc, m1.id).length === 1, 'the sender told');
  t.equal(repliesTo(alice.rpc, m1.id)[0]!.body, '(Codex turn interrupted)');
  await settle(300);
  t.equal(occurrences(s.fake, threadId, m1.id), 2, 'not a third time');
  t.equal(repliesTo(alice.rpc, m1.id).length, 1);
});

t.test('a person interrupted the turn while the adapter was away: answered "(Codex turn interrupted)", not re-delivered', async (t) => {
  const { s, threadId, alice, m1 } = await turnRunning(t, 'stop me');
  await s.fake.stop();
  s.fake.interruptTurn(threadId);
  await s.fake.listen();
  await waitFor(() => repliesTo(alice.rpc, m1.id).length === 1, 'the sender told');
  t.equal(repliesTo(alice.rpc, m1.id)[0]!.body, '(Codex turn interrupted)');
  await settle(300);
  t.equal(occurrences(s.fake, threadId, m1.id), 1, 'not delivered again');
});

for (const when of ['after', 'before'] as const) {
  t.test(`kill -9 with an approval pending, decided ${when} the restart: answered once, from the same task`, async (t) => {
    const s = await setup(t, { fake: { holdTurns: true } });
    const a1 = spawnAdapter(t, s.env);
    const threadId = await s.ready();
    const alice = await s.sender();
    const m = (await alice.rpc.call('message/send', { to: s.agentId, body: 'needs a command' })).message;
    await waitFor(() => occurrences(s.fake, threadId, m.id) === 1, 'the turn', 15_000);
    const handle = s.fake.requestApproval(threadId, 'commandExecution', { legacy: true }); // offers acceptForSession
    await waitFor(() => Object.keys(readState(s.statePath).approvals).length === 1, 'the approval task recorded in the state file', 15_000);
    // The state file is written when the adapter's task/create is answered; alice's copy of the
    // announcement may still be on its way.
    await waitFor(() => alice.rpc.messages().some((x) => x.taskId !== null), 'alice has the approval task', 15_000);
    const taskId = alice.rpc.messages().find((x) => x.taskId !== null)!.taskId as number;
    await a1.kill9();
    const decide = async () => {
      const { claimToken } = await alice.rpc.call('task/claim', { id: taskId });
      await alice.rpc.call('task/update', { id: taskId, claimToken, status: 'done', note: 'acceptForSession' });
    };
    if (when === 'before') await decide();
    spawnAdapter(t, s.env);
    await s.fake.waitFor(() => s.fake.subscribers(threadId).length === 1, 15_000, 'the new process on the thread');
    if (when === 'after') {
      await settle(300);
      t.same(s.fake.answers, [], 'not answered before anyone decided');
      await decide();
    }
    const answer = await within(handle, 10_000, null);
    t.same(answer?.result, { decision: 'acceptForSession' }, 'the decision reached the app-server');
    await completeTurn(s.fake, threadId);
    await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, 'the turn’s reply', 15_000);
    await settle(300);
    t.equal(s.fake.answers.length, 1, 'answered once');
    t.equal(alice.rpc.messages().filter((x) => x.taskId !== null).length, 1, 'no second task for the replayed request');
    t.same(readState(s.statePath).approvals, {}, 'the state file forgets the answered approval');
  });
}

t.test('SIGTERM: the daemon process marks itself not ready and exits 0', async (t) => {
  const s = await setup(t);
  const child = spawnAdapter(t, s.env);
  await s.ready();
  const obs = await s.observer();
  child.child.kill('SIGTERM');
  const exit = await within(child.exited, 15_000, null);
  t.same(exit, { code: 0, signal: null }, 'a clean exit');
  t.equal((await agentRecord(obs, s.agentId))?.ready, false, 'no longer ready');
  t.equal(s.fake.connections, 0, 'app-server socket closed');
});
