import t from 'tap';
import { agentRecord, completeTurn, deliveryState, occurrences, repliesTo, settle, setup } from './harness.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The CodexBridge delivering relay messages into a live thread of the fake app-server: relay
 * registration and readiness, coalescing, queueing behind a running turn (and the phantom turn
 * id trap), read marking, replies, steering, overload and a missed turn/completed.
 */

const DELIVERED = ['pushed', 'injected', 'read'];

t.test('registers as a codex-live agent with tags and capabilities; ready follows the app-server', async (t) => {
  const s = await setup(t, { env: { AGENT_RELAY_CAPS: 'chat, review' } });
  // The app-server is not there yet: the agent registers but must not claim to be ready.
  await s.fake.stop();
  s.startBridge();
  const obs = await s.observer();
  await waitFor(async () => (await agentRecord(obs, s.agentId)) !== undefined, 'the agent to register');
  const agent = (await agentRecord(obs, s.agentId))!;
  t.equal(agent.id, 'codex-testrig-proj', 'id from rig and cwd');
  t.equal(agent.client, 'codex-live');
  t.same([...agent.tags].sort(), ['codex', 'proj', 'testrig'], 'tags: codex, rig, cwd basename');
  t.same(agent.capabilities, ['chat', 'review'], 'capabilities from AGENT_RELAY_CAPS');
  t.equal(agent.cwd, s.cwd);
  t.equal(agent.rig, 'testrig');
  t.equal(agent.connected, true);
  await settle(400); // several reconnect attempts against the stopped app-server
  t.equal((await agentRecord(obs, s.agentId))!.ready, false, 'not ready while no thread is attached');

  await s.fake.restart();
  const threadId = await s.ready();
  t.pass('ready once attached');
  // A thread is resumable only after its first turn ("no rollout found" before): run one.
  const alice = await s.sender();
  const m0 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'first' })).message;
  await waitFor(() => repliesTo(alice.rpc, m0.id).length === 1, 'the first reply');

  // The app-server goes away: ready=false; it comes back: the same thread, ready again.
  await s.fake.stop();
  await waitFor(async () => (await agentRecord(obs, s.agentId))!.ready === false, 'ready=false while unreachable');
  const initsBefore = s.fake.requests('initialize').length;
  await s.fake.restart();
  await waitFor(async () => (await agentRecord(obs, s.agentId))!.ready === true, 'ready=true after restart');
  t.ok(s.fake.requests('initialize').length > initsBefore, 're-initialized on the new socket');
  t.same(
    s.fake.requests('thread/resume').map((r) => r.msg.params.threadId),
    [threadId],
    'resumed its own thread',
  );
  t.equal(s.fake.requests('thread/start').length, 1, 'did not start another thread');
  const lastConn = s.fake.connectionInfo().at(-1)!;
  t.ok(lastConn.initialized && lastConn.initializedNotified, 'handshake completed before use');
  t.notOk(
    s.fake.sent.some((f) => f.msg?.error?.message === 'Not initialized'),
    'never "Not initialized"',
  );

  const m = (await alice.rpc.call('message/send', { to: s.agentId, body: 'after the restart' })).message;
  await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, 'the reply');
  t.equal(occurrences(s.fake, threadId, m.id), 1, 'into the same thread');
});

t.test('coalescing: a burst within the window is exactly one turn naming every sender and message id', async (t) => {
  // A window long enough that the three sends surely land in it.
  const s = await setup(t, { env: { CODEX_LIVE_COALESCE_WINDOW_MS: '1500' } });
  s.startBridge();
  const threadId = await s.ready();
  const alice = await s.sender('alice');
  const bob = await s.sender('bob');
  const m1 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'first from alice' })).message;
  const m2 = (await bob.rpc.call('message/send', { to: s.agentId, body: 'bob here', subject: 'review' })).message;
  const m3 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'second from alice' })).message;
  await waitFor(() => repliesTo(alice.rpc, m3.id).length === 1 && repliesTo(bob.rpc, m2.id).length === 1 && repliesTo(alice.rpc, m1.id).length === 1, 'the replies');
  const inputs = s.fake.turnInputs(threadId);
  t.equal(inputs.length, 1, 'one turn');
  t.equal(s.fake.requests('turn/start').length, 1, 'one turn/start');
  const text = inputs[0]!;
  t.match(text, `Message #${m1.id} from alice:\nfirst from alice`);
  t.match(text, `Message #${m2.id} from bob (subject: review):\nbob here`);
  t.match(text, `Message #${m3.id} from alice:\nsecond from alice`);
  t.ok(text.indexOf(`#${m1.id}`) < text.indexOf(`#${m2.id}`) && text.indexOf(`#${m2.id}`) < text.indexOf(`#${m3.id}`), 'in order');
  t.same(s.fake.busyTurnStarts, []);
  await settle(300);
  t.equal(repliesTo(alice.rpc, m1.id).length + repliesTo(alice.rpc, m3.id).length + repliesTo(bob.rpc, m2.id).length, 3, 'one reply per relay thread, no more');
});

t.test('messages arriving during a running turn go after it in ONE turn; no phantom turn ids', async (t) => {
  const s = await setup(t, { fake: { holdTurns: true } });
  s.startBridge();
  const threadId = await s.ready();
  const obs = await s.observer();
  const alice = await s.sender();
  const m1 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'long job' })).message;
  await waitFor(() => occurrences(s.fake, threadId, m1.id) === 1, 'turn 1 to start');
  const later = [];
  for (const body of ['a', 'b', 'c']) later.push((await alice.rpc.call('message/send', { to: s.agentId, body })).message);
  for (const m of later) await waitFor(async () => DELIVERED.includes((await deliveryState(obs, m.id, s.agentId))!), `message ${m.id} to reach the adapter`);
  await settle(500); // more than the coalesce window: a wrong adapter would turn/start now
  t.equal(s.fake.requests('turn/start').length, 1, 'no turn/start while the turn runs');
  t.same(s.fake.busyTurnStarts, [], 'no phantom turn id handed out');
  t.equal(s.fake.turnInputs(threadId).length, 1, 'nothing folded into the running turn');
  for (const m of later) t.not(await deliveryState(obs, m.id, s.agentId), 'read', `#${m.id} not read while it waits`);

  await completeTurn(s.fake, threadId);
  await waitFor(() => repliesTo(alice.rpc, m1.id).length === 1, 'the reply to turn 1');
  await waitFor(() => s.fake.turnInputs(threadId).length === 2, 'turn 2');
  const turn2 = s.fake.turnInputs(threadId)[1]!;
  for (const m of later) t.match(turn2, `Message #${m.id} from alice`, `turn 2 carries #${m.id}`);
  await completeTurn(s.fake, threadId);
  for (const m of later) await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, `the reply to #${m.id}`);
  await settle(300);
  t.equal(s.fake.requests('turn/start').length, 2, 'two wakes, two turns');
  for (const m of [m1, ...later]) t.equal(occurrences(s.fake, threadId, m.id), 1, `#${m.id} delivered once`);
  t.same(s.fake.busyTurnStarts, []);
});

t.test('a turn another client started: the adapter waits for it instead of folding in (even when it missed turn/started)', async (t) => {
  const s = await setup(t, { fake: { holdTurns: true } });
  s.startBridge();
  const threadId = await s.ready();
  const alice = await s.sender();
  const obs = await s.observer();

  // 1. The adapter sees the human's turn start.
  s.fake.startTurn(threadId, 'a human typing in the TUI');
  const m1 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'while the human works' })).message;
  await waitFor(async () => DELIVERED.includes((await deliveryState(obs, m1.id, s.agentId))!), 'm1 to reach the adapter');
  await settle(500);
  t.equal(s.fake.requests('turn/start').length, 0, 'no turn/start while another client’s turn runs');
  t.same(s.fake.busyTurnStarts, []);
  await completeTurn(s.fake, threadId);
  await waitFor(() => occurrences(s.fake, threadId, m1.id) === 1, 'm1 in its own turn');
  t.equal(s.fake.inputs.find((i) => i.text.includes(`Message #${m1.id} from`))!.via, 'start', 'm1 started a turn of its own');
  await completeTurn(s.fake, threadId);
  await waitFor(() => repliesTo(alice.rpc, m1.id).length === 1, 'the reply to m1');

  // 2. The adapter misses the signals of the human's turn: it must look before starting.
  s.fake.dropNext('turn/started');
  s.fake.dropNext('thread/status/changed');
  s.fake.startTurn(threadId, 'the human again');
  const m2 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'unseen busy' })).message;
  await waitFor(async () => DELIVERED.includes((await deliveryState(obs, m2.id, s.agentId))!), 'm2 to reach the adapter');
  await settle(500);
  t.equal(s.fake.requests('turn/start').length, 1, 'still no turn/start into the busy thread');
  t.same(s.fake.busyTurnStarts, [], 'no phantom turn id');
  await completeTurn(s.fake, threadId);
  await waitFor(() => occurrences(s.fake, threadId, m2.id) === 1, 'm2 delivered after the human’s turn');
  await completeTurn(s.fake, threadId);
  await waitFor(() => repliesTo(alice.rpc, m2.id).length === 1, 'the reply to m2');
  await settle(300);
  t.equal(repliesTo(alice.rpc, m1.id).length, 1, 'the human’s turns were not answered to alice');
  t.same(s.fake.busyTurnStarts, []);
  t.equal(occurrences(s.fake, threadId, m2.id), 1);
});

for (const phantomWhenBusy of [false, true]) {
  t.test(
    `a person's turn starts between the adapter's look and its turn/start (${phantomWhenBusy ? 'pre-0.171: a phantom id' : '0.171: the running turn id'}): one reply, the message delivered once`,
    async (t) => {
      const s = await setup(t, { fake: { phantomWhenBusy } });
      s.startBridge();
      const threadId = await s.ready();
      let raced = false;
      s.fake.opts.beforeRequest = (method) => {
        if (method !== 'turn/start' || raced) return;
        raced = true;
        s.fake.startTurn(threadId, 'a human, a moment earlier');
      };
      s.fake.opts.holdTurns = true;
      const alice = await s.sender();
      const m = (await alice.rpc.call('message/send', { to: s.agentId, body: 'racing the human' })).message;
      await waitFor(() => s.fake.busyTurnStarts.length === 1, 'the turn/start that met a busy thread');
      const running = s.fake.activeTurnId(threadId)!;
      t.equal(s.fake.busyTurnStarts[0] === running, !phantomWhenBusy, phantomWhenBusy ? 'answered a phantom id' : 'answered the running turn id');
      await settle(300);
      t.equal(repliesTo(alice.rpc, m.id).length, 0, 'no answer while the turn that carries it runs');
      await completeTurn(s.fake, threadId);
      await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, 'the reply');
      t.match(repliesTo(alice.rpc, m.id)[0]!.body, /^echo: a human, a moment earlier\nA relay message arrived/, "the running turn's answer, which covers the folded text");
      s.fake.opts.holdTurns = false;
      await settle(800); // past a reconcile (500 ms)
      t.equal(repliesTo(alice.rpc, m.id).length, 1, 'answered once');
      t.equal(occurrences(s.fake, threadId, m.id), 1, 'delivered once (folded, not started again)');
      t.equal(s.fake.requests('turn/start').length, 1);
    },
  );
}

t.test('0.171 order with a gap: the idle status, a reconcile read that already shows the turn ended, then turn/completed: one reply', async (t) => {
  const s = await setup(t, { fake: { completedDelayMs: 400, reply: () => 'the one answer' } });
  s.startBridge();
  const threadId = await s.ready();
  const alice = await s.sender();
  const m = (await alice.rpc.call('message/send', { to: s.agentId, body: 'q' })).message;
  await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, 'the reply');
  const replyAt = Date.now();
  await waitFor(() => s.fake.sent.some((f) => f.msg?.method === 'turn/completed'), 'turn/completed, late');
  t.ok(s.fake.requests('thread/turns/list').length >= 1, 'the idle status drew a reconcile read');
  await settle(600);
  t.equal(repliesTo(alice.rpc, m.id).length, 1, 'answered once (by the reconcile; turn/completed found it answered)');
  t.equal(repliesTo(alice.rpc, m.id)[0]!.body, 'the one answer');
  t.comment(`reply ${Date.now() - replyAt} ms before the end of the wait; turn/start ${s.fake.requests('turn/start').length}`);
  const m2 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'next' })).message;
  await waitFor(() => repliesTo(alice.rpc, m2.id).length === 1, 'the next reply');
  t.equal(occurrences(s.fake, threadId, m2.id), 1);
});

t.test('0.171 order with a gap: a late turn/completed of an answered turn does not answer the next delivery', async (t) => {
  const s = await setup(t, { fake: { completedDelayMs: 600, reply: (text) => `answer to ${/Message #(\d+)/.exec(text)?.[1]}` } });
  s.startBridge();
  const threadId = await s.ready();
  const alice = await s.sender();
  const m1 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'first' })).message;
  await waitFor(() => repliesTo(alice.rpc, m1.id).length === 1, 'the first reply (by the reconcile)');
  s.fake.opts.holdTurns = true;
  const m2 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'second' })).message;
  await waitFor(() => occurrences(s.fake, threadId, m2.id) === 1, 'm2 in its turn');
  await waitFor(() => s.fake.sent.filter((f) => f.msg?.method === 'turn/completed').length === 1, 'the late turn/completed of turn 1');
  await settle(300);
  t.equal(repliesTo(alice.rpc, m2.id).length, 0, 'm2 not answered by turn 1’s end');
  s.fake.opts.holdTurns = false;
  await completeTurn(s.fake, threadId);
  await waitFor(() => repliesTo(alice.rpc, m2.id).length === 1, 'the reply to m2');
  t.equal(repliesTo(alice.rpc, m2.id)[0]!.body, `answer to ${m2.id}`);
  await settle(900);
  t.equal(repliesTo(alice.rpc, m1.id).length + repliesTo(alice.rpc, m2.id).length, 2, 'one reply each');
});

for (const completedBeforeIdle of [false, true]) {
  t.test(
    `turn end order ${completedBeforeIdle ? 'turn/completed, then idle (1 in 11 on 0.171)' : 'idle, then turn/completed (0.171, usually)'}: three messages in a row, one reply each`,
    async (t) => {
      const s = await setup(t, { fake: { completedBeforeIdle, reply: (text) => `answer to ${/Message #(\d+)/.exec(text)?.[1]}` } });
      const h = s.startBridge();
      const threadId = await s.ready();
      const alice = await s.sender();
      for (let i = 0; i < 3; i++) {
        const m = (await alice.rpc.call('message/send', { to: s.agentId, body: `q${i}` })).message;
        await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, `reply ${i}`).catch((err: Error) => {
          t.comment(`adapter log:\n${h.logs.join('\n')}`);
          t.comment(`sent:\n${s.fake.sent.map((f) => JSON.stringify(f.msg).slice(0, 160)).join('\n')}`);
          t.comment(`received:\n${s.fake.received.map((f) => JSON.stringify((f as { msg?: unknown }).msg ?? f).slice(0, 160)).join('\n')}`);
          throw err;
        });
        t.equal(repliesTo(alice.rpc, m.id)[0]!.body, `answer to ${m.id}`);
        t.equal(occurrences(s.fake, threadId, m.id), 1);
      }
      await settle(600);
      t.equal(alice.rpc.messages().filter((x) => x.replyTo).length, 3, 'no extra reply');
    },
  );
}

t.test('lever turnStartedBeforeResponse: turn/started before the turn/start answer still means one turn and one reply', async (t) => {
  const s = await setup(t, { fake: { turnStartedBeforeResponse: true } });
  s.startBridge();
  const threadId = await s.ready();
  const alice = await s.sender();
  const ids: number[] = [];
  for (let i = 0; i < 3; i++) {
    const m = (await alice.rpc.call('message/send', { to: s.agentId, body: `n${i}` })).message;
    ids.push(m.id);
    await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, `the reply to #${m.id}`);
  }
  await settle(300);
  for (const id of ids) {
    t.equal(occurrences(s.fake, threadId, id), 1, `#${id} once`);
    t.equal(repliesTo(alice.rpc, id).length, 1, `one reply to #${id}`);
  }
  t.same(s.fake.busyTurnStarts, []);
});

t.test('read marking: a message becomes read only once the turn carrying it was accepted', async (t) => {
  const s = await setup(t, { fake: { holdTurns: true } });
  s.startBridge();
  const threadId = await s.ready();
  const obs = await s.observer();
  const alice = await s.sender();
  s.fake.startTurn(threadId, 'someone else is busy');
  const m = (await alice.rpc.call('message/send', { to: s.agentId, body: 'wait for it' })).message;
  await waitFor(async () => (await deliveryState(obs, m.id, s.agentId)) === 'pushed', 'pushed to the adapter');
  await settle(400);
  t.equal(await deliveryState(obs, m.id, s.agentId), 'pushed', 'not read while waiting for the thread');
  await completeTurn(s.fake, threadId);
  await waitFor(() => occurrences(s.fake, threadId, m.id) === 1, 'the turn carrying it');
  await waitFor(async () => (await deliveryState(obs, m.id, s.agentId)) === 'read', 'read after the turn was accepted');
  t.not(s.fake.activeTurnId(threadId), null, 'read while the turn still runs: acceptance, not completion, marks it');
  await completeTurn(s.fake, threadId);
  await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, 'the reply');
});

t.test('reply threading: the final agent message goes back to the sender as a reply in the same thread', async (t) => {
  const s = await setup(t, { fake: { reply: (text) => `answer to: ${text.split('\n').find((l) => l.startsWith('Message #'))}` } });
  s.startBridge();
  await s.ready();
  const alice = await s.sender();
  const root = (await alice.rpc.call('message/send', { to: s.agentId, body: 'question one' })).message;
  await waitFor(() => repliesTo(alice.rpc, root.id).length === 1, 'the first reply');
  const r1 = repliesTo(alice.rpc, root.id)[0]!;
  t.equal(r1.from, s.agentId);
  t.equal(r1.to, 'alice');
  t.equal(r1.threadId, root.threadId, 'in the root’s thread');
  t.equal(r1.body, `answer to: Message #${root.id} from alice:`, 'the agent’s final text');

  // Alice answers the reply: the adapter’s next reply stays in the same relay thread.
  const follow = (await alice.rpc.call('message/send', { to: s.agentId, body: 'follow-up', replyTo: r1.id })).message;
  t.equal(follow.threadId, root.id);
  await waitFor(() => repliesTo(alice.rpc, follow.id).length === 1, 'the second reply');
  const r2 = repliesTo(alice.rpc, follow.id)[0]!;
  t.equal(r2.threadId, root.id, 'same thread');
  t.equal(r2.replyTo, follow.id);
  const thread = await alice.rpc.call('thread/get', { id: root.id });
  t.same(
    thread.messages.map((m: any) => m.id),
    [root.id, r1.id, follow.id, r2.id],
    'the relay thread reads as a conversation',
  );
});

t.test('a failed turn is reported back to the sender, and the next message still goes through', async (t) => {
  let n = 0;
  const s = await setup(t, { fake: { turnScript: () => (n++ === 0 ? { fail: 'model exploded' } : undefined) } });
  s.startBridge();
  const threadId = await s.ready();
  const alice = await s.sender();
  const m1 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'doomed' })).message;
  await waitFor(() => repliesTo(alice.rpc, m1.id).length === 1, 'a reply about the failure');
  t.match(repliesTo(alice.rpc, m1.id)[0]!.body, /failed/);
  const m2 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'again' })).message;
  await waitFor(() => repliesTo(alice.rpc, m2.id).length === 1, 'the next reply');
  t.equal(occurrences(s.fake, threadId, m1.id), 1, 'the failed message is not retried');
});

t.test('steer mode: messages during a turn steer it with expectedTurnId instead of a new turn', async (t) => {
  const s = await setup(t, { fake: { holdTurns: true }, env: { CODEX_LIVE_STEER: 'true' } });
  s.startBridge();
  const threadId = await s.ready();
  const obs = await s.observer();
  const alice = await s.sender();
  const m1 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'start' })).message;
  await waitFor(() => occurrences(s.fake, threadId, m1.id) === 1, 'turn 1');
  const running = s.fake.activeTurnId(threadId)!;
  const m2 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'also this' })).message;
  await waitFor(() => occurrences(s.fake, threadId, m2.id) === 1, 'm2 steered in');
  const steers = s.fake.requests('turn/steer');
  t.equal(steers.length, 1, 'one turn/steer');
  t.equal(steers[0]!.msg.params.expectedTurnId, running, 'expectedTurnId is the running turn');
  t.equal(steers[0]!.msg.params.threadId, threadId);
  t.equal(s.fake.inputs.find((i) => i.text.includes(`Message #${m2.id} from`))!.via, 'steer');
  t.equal(s.fake.requests('turn/start').length, 1, 'no second turn/start');
  t.same(s.fake.busyTurnStarts, []);
  await waitFor(async () => (await deliveryState(obs, m2.id, s.agentId)) === 'read', 'the steered message is read');
  await completeTurn(s.fake, threadId);
  await waitFor(() => repliesTo(alice.rpc, m1.id).length === 1 && repliesTo(alice.rpc, m2.id).length === 1, 'the turn’s answer to both');
  t.match(repliesTo(alice.rpc, m2.id)[0]!.body, `Message #${m2.id}`, 'the answer covers the steered text');
  await settle(300);
  t.equal(s.fake.turnInputs(threadId).length, 2, 'one start, one steer');
});

t.test('overloaded (-32001) turn/start is retried later; the message is read only once accepted', async (t) => {
  // A long retry pause, so the state between the refusal and the retry can be looked at.
  const s = await setup(t, { env: { CODEX_LIVE_RECONNECT_INITIAL_MS: '1500', CODEX_LIVE_RECONNECT_MAX_MS: '1500', CODEX_LIVE_RECONCILE_INTERVAL_MS: '60000' } });
  s.startBridge();
  const threadId = await s.ready();
  const obs = await s.observer();
  const alice = await s.sender();
  const reads = s.fake.requests('thread/read').length;
  const m = (await alice.rpc.call('message/send', { to: s.agentId, body: 'busy server' })).message;
  // The adapter looks at the thread before turn/start: overload the request that follows that look.
  await s.fake.waitFor(() => s.fake.requests('thread/read').length > reads, 5000, 'the pre-start thread/read');
  s.fake.overload(1);
  await s.fake.waitFor(() => s.fake.requests('turn/start').length === 1, 5000, 'the first turn/start');
  const first = s.fake.requests('turn/start')[0]!;
  await s.fake.waitFor(() => s.fake.sent.some((f) => f.conn === first.conn && f.msg.id === first.msg.id), 5000, 'its answer');
  const answer = s.fake.sent.find((f) => f.conn === first.conn && f.msg.id === first.msg.id)!;
  t.same(answer.msg.error, { code: -32001, message: 'Server overloaded; retry later.' }, 'the first turn/start was refused as overloaded');
  await settle(200);
  t.not(await deliveryState(obs, m.id, s.agentId), 'read', 'not read after the refusal');
  await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, 'delivered on the retry');
  t.equal(s.fake.requests('turn/start').length, 2, 'retried once');
  t.equal(occurrences(s.fake, threadId, m.id), 1, 'delivered once');
  t.equal(await deliveryState(obs, m.id, s.agentId), 'read');
});

t.test('busy reconciliation: a swallowed turn/completed does not block later deliveries', async (t) => {
  const s = await setup(t);
  s.startBridge();
  const threadId = await s.ready();
  const alice = await s.sender();
  // Recovered through thread/status/changed (idle) and a thread/read.
  s.fake.dropNext('turn/completed');
  const m1 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'one' })).message;
  await waitFor(() => repliesTo(alice.rpc, m1.id).length === 1, 'the reply despite the missing turn/completed');
  t.equal(s.fake.dropped.filter((d) => d.method === 'turn/completed').length, 1, 'the lever fired');
  const m2 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'two' })).message;
  await waitFor(() => repliesTo(alice.rpc, m2.id).length === 1, 'the next message goes through');
  t.equal(occurrences(s.fake, threadId, m2.id), 1);
});

t.test('busy reconciliation: both turn/completed and the idle status swallowed; the periodic thread/read recovers', async (t) => {
  const s = await setup(t, { fake: { holdTurns: true } });
  s.startBridge();
  const threadId = await s.ready();
  const obs = await s.observer();
  const alice = await s.sender();
  const m1 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'one' })).message;
  await waitFor(() => occurrences(s.fake, threadId, m1.id) === 1, 'turn 1');
  const m2 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'two' })).message;
  await waitFor(async () => DELIVERED.includes((await deliveryState(obs, m2.id, s.agentId))!), 'm2 waiting in the adapter');
  s.fake.opts.holdTurns = false;
  s.fake.dropNext('turn/completed');
  s.fake.dropNext('thread/status/changed');
  await completeTurn(s.fake, threadId);
  t.same(s.fake.dropped.map((d) => d.method).sort(), ['thread/status/changed', 'turn/completed'], 'both signals swallowed');
  await waitFor(() => repliesTo(alice.rpc, m1.id).length === 1, 'the reply to m1, found by thread/read');
  await waitFor(() => repliesTo(alice.rpc, m2.id).length === 1, 'm2 delivered and answered');
  t.equal(occurrences(s.fake, threadId, m2.id), 1);
  t.same(s.fake.busyTurnStarts, []);
});

t.test('steer mode: a turn another client started is steered, and its answer goes back to the relay sender', async (t) => {
  const s = await setup(t, { fake: { holdTurns: true }, env: { CODEX_LIVE_STEER: 'true' } });
  s.startBridge();
  const threadId = await s.ready();
  const alice = await s.sender();
  const human = s.fake.startTurn(threadId, 'a human at the TUI');
  await waitFor(() => s.fake.sent.some((f) => f.msg.method === 'turn/started' && f.msg.params.turn.id === human), 'the adapter told of the human’s turn');
  const m = (await alice.rpc.call('message/send', { to: s.agentId, body: 'join in' })).message;
  await waitFor(() => occurrences(s.fake, threadId, m.id) === 1, 'steered into the human’s turn');
  t.equal(s.fake.inputs.find((i) => i.text.includes(`Message #${m.id} from`))!.via, 'steer');
  t.equal(s.fake.requests('turn/steer')[0]!.msg.params.expectedTurnId, human);
  await completeTurn(s.fake, threadId);
  await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, 'the answer of that turn goes to alice');
  t.match(repliesTo(alice.rpc, m.id)[0]!.body, `Message #${m.id}`);
  t.equal(s.fake.requests('turn/start').length, 0, 'no turn/start');
});

t.test("the agentMessage item/completed went missing: the reply comes from turn/completed's final items", async (t) => {
  const s = await setup(t, { fake: { reply: () => 'the final answer' } });
  s.startBridge();
  await s.ready();
  const alice = await s.sender();
  // A turn broadcasts item/completed for the userMessage, then for the agentMessage: drop both.
  s.fake.dropNext('item/completed', 2);
  const m = (await alice.rpc.call('message/send', { to: s.agentId, body: 'q' })).message;
  await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, 'the reply');
  t.same(
    s.fake.dropped.map((d) => d.params.item.type),
    ['userMessage', 'agentMessage'],
    'the lever fired',
  );
  t.equal(repliesTo(alice.rpc, m.id)[0]!.body, 'the final answer');
  t.equal(s.fake.requests('thread/turns/list').length, 1, 'no read for it (the one list is the reconcile on status idle)');
  await settle(300);
  t.equal(repliesTo(alice.rpc, m.id).length, 1, 'once');
});

t.test('a directory name longer than a relay tag allows still registers (tag and label clipped)', async (t) => {
  const long = `project-${'x'.repeat(90)}`;
  const s = await setup(t, { cwdName: long });
  s.startBridge();
  await s.ready();
  const obs = await s.observer();
  const agent = (await agentRecord(obs, s.agentId))!;
  t.ok(agent.tags.includes(long.slice(0, 64)), 'the cwd tag is clipped to 64 characters');
  t.equal(agent.cwd, s.cwd, 'the full cwd is kept');
  t.ok(agent.label.length <= 128);
});
