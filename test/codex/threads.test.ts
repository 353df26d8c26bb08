import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { handoffFile } from '../../adapters/codex/config.js';
import { agentRecord, occurrences, repliesTo, ROOT, settle, setup, spawnAdapter, within } from './harness.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Thread modes against the fake app-server: which thread the adapter attaches to, with what
 * parameters, and what it refuses to do.
 */

t.test('start: its own thread with cwd, model, approvalPolicy and sandbox; turn/start carries no overrides', async (t) => {
  const s = await setup(t, { env: { CODEX_MODEL: 'gpt-5-codex', CODEX_LIVE_APPROVAL_POLICY: 'on-request', CODEX_LIVE_SANDBOX: 'workspace-write' } });
  // A loaded thread of the same cwd exists: start mode must not touch it.
  const other = s.fake.addThread({ cwd: s.cwd, loaded: true });
  s.startBridge();
  const threadId = await s.ready();
  t.not(threadId, other, 'a new thread, not the loaded one of the same cwd');
  const starts = s.fake.requests('thread/start');
  t.equal(starts.length, 1, 'one thread/start');
  t.same(starts[0]!.msg.params, { cwd: s.cwd, model: 'gpt-5-codex', approvalPolicy: 'on-request', sandbox: 'workspace-write' });
  t.equal(s.fake.requests('thread/resume').length, 0, 'nothing resumed');
  t.equal(s.fake.thread(threadId).cwd, s.cwd);

  const init = s.fake.requests('initialize')[0]!.msg.params;
  t.match(init, { clientInfo: { name: String }, capabilities: { experimentalApi: false } });
  t.ok(s.fake.connectionInfo()[0]!.initializedNotified, 'initialized notification sent');
  t.equal(s.fake.connectionInfo()[0]!.headers.origin, undefined, 'no Origin header');

  const alice = await s.sender();
  const m = (await alice.rpc.call('message/send', { to: s.agentId, body: 'hi' })).message;
  await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, 'the reply');
  const turnStart = s.fake.requests('turn/start')[0]!.msg.params;
  t.same(Object.keys(turnStart).sort(), ['input', 'threadId'], 'turn/start passes no model/approvalPolicy/sandboxPolicy (they would stick)');
  t.match(turnStart.input, [{ type: 'text', text: /Message #\d+ from alice/, text_elements: [] }]);
  const state = JSON.parse(readFileSync(s.statePath, 'utf8'));
  t.equal(state.threadId, threadId, 'the state file records the thread');
});

t.test('resume: the thread named by CODEX_THREAD_ID', async (t) => {
  const s = await setup(t);
  const id = s.fake.addThread({ cwd: s.cwd, loaded: false, pastTurns: ['earlier work'] });
  s.startBridge({ CODEX_THREAD_MODE: 'resume', CODEX_THREAD_ID: id });
  t.equal(await s.ready(), id, 'attached to the named thread');
  t.same(
    s.fake.requests('thread/resume').map((r) => r.msg.params.threadId),
    [id],
  );
  t.equal(s.fake.requests('thread/start').length, 0, 'no thread started');
  const alice = await s.sender();
  const m = (await alice.rpc.call('message/send', { to: s.agentId, body: 'continue' })).message;
  await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, 'the reply');
  t.equal(occurrences(s.fake, id, m.id), 1, 'delivered into the resumed thread');
});

t.test('resume: the thread id the SessionStart hook script handed over', async (t) => {
  const s = await setup(t, { cwdName: 'my proj' });
  const id = s.fake.addThread({ cwd: s.cwd, loaded: true });
  const hook = spawnSync(join(ROOT, 'adapters/codex/plugin/scripts/handoff-thread'), [], {
    input: JSON.stringify({ session_id: id, cwd: s.cwd, hook_event_name: 'SessionStart', source: 'startup' }),
    env: { PATH: process.env.PATH, HOME: process.env.HOME, AGENT_RELAY_HOME: s.home },
    encoding: 'utf8',
    timeout: 10_000,
  });
  t.equal(hook.status, 0, 'the hook never fails the session');
  t.equal(hook.stdout.trim(), '{}', 'it acknowledges with JSON');
  const written = JSON.parse(readFileSync(handoffFile(join(s.home, 'codex', 'threads'), s.cwd), 'utf8'));
  t.same(written, { threadId: id, cwd: s.cwd }, 'written where the adapter reads it');

  s.startBridge({ CODEX_THREAD_MODE: 'resume' });
  t.equal(await s.ready(), id, 'attached to the handed-over thread');
  t.equal(s.fake.requests('thread/start').length, 0);
  t.same(
    s.fake.requests('thread/resume').map((r) => r.msg.params.threadId),
    [id],
  );
});

t.test('resume: a loaded thread that never ran a turn ("no rollout found") is used unsubscribed, then resumed after its first turn', async (t) => {
  const s = await setup(t);
  const fresh = s.fake.addThread({ cwd: s.cwd, loaded: true, pastTurns: [] });
  const b = s.startBridge({ CODEX_THREAD_MODE: 'resume', CODEX_THREAD_ID: fresh });
  const obs = await s.observer();
  await waitFor(async () => (await agentRecord(obs, s.agentId))?.ready === true, 'ready');
  t.equal(s.fake.requests('thread/start').length, 0, 'no thread of its own');
  t.ok(
    b.logs.some((l) => l.includes(`thread ${fresh} is loaded (idle) but never ran a turn`) && l.includes('using it unsubscribed')),
    'the reason is logged',
  );
  const alice = await s.sender();
  const m = (await alice.rpc.call('message/send', { to: s.agentId, body: 'first words' })).message;
  await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, 'the reply, read from the thread');
  t.match(repliesTo(alice.rpc, m.id)[0]!.body, /^echo: A relay message arrived/);
  t.equal(occurrences(s.fake, fresh, m.id), 1, 'delivered into the handed-over thread');
  await waitFor(() => s.fake.subscribers(fresh).length === 1, 'subscribed once the turn made a rollout');
  t.ok(b.logs.some((l) => l.includes(`subscribed to Codex thread ${fresh}`)));
  const m2 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'second' })).message;
  await waitFor(() => repliesTo(alice.rpc, m2.id).length === 1, 'the second reply');
  await settle(300);
  t.equal(repliesTo(alice.rpc, m.id).length + repliesTo(alice.rpc, m2.id).length, 2, 'one reply each');
});

t.test('resume: the empty thread answers -32601 "list_turns is not supported yet" (a client asked it for includeTurns): still used unsubscribed', async (t) => {
  const s = await setup(t);
  const fresh = s.fake.addThread({ cwd: s.cwd, loaded: true, pastTurns: [], askedForTurns: true });
  const b = s.startBridge({ CODEX_THREAD_MODE: 'resume', CODEX_THREAD_ID: fresh });
  const obs = await s.observer();
  await waitFor(async () => (await agentRecord(obs, s.agentId))?.ready === true, 'ready');
  t.match(s.fake.sent.find((f) => f.msg?.error)?.msg.error, { code: -32601, message: 'list_turns is not supported yet' }, 'the resume refusal');
  t.equal(s.fake.requests('thread/start').length, 0);
  t.ok(b.logs.some((l) => l.includes('using it unsubscribed')));
  const alice = await s.sender();
  const m = (await alice.rpc.call('message/send', { to: s.agentId, body: 'hi' })).message;
  await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, 'the reply');
  t.equal(occurrences(s.fake, fresh, m.id), 1);
  t.notOk(
    b.logs.some((l) => /reconcile failed/.test(l)),
    'reconciles took the refusal as "no turns"',
  );
});

t.test('resume: an id the app-server does not know falls back to starting a thread, saying so', async (t) => {
  const s = await setup(t);
  const unknown = '019a0000-0000-7000-8000-000000000000';
  const b = s.startBridge({ CODEX_THREAD_MODE: 'resume', CODEX_THREAD_ID: unknown });
  const threadId = await s.ready();
  t.not(threadId, unknown);
  t.same(
    s.fake.requests('thread/start').map((r) => r.msg.params.cwd),
    [s.cwd],
    'one thread/start with our cwd',
  );
  t.ok(
    b.logs.some((l) => l.includes(`CODEX_THREAD_MODE=resume: thread ${unknown} is unknown to this app-server`) && l.includes('starting a thread instead')),
    'the fallback and its reason are logged',
  );
});

t.test('auto: the loaded thread of our cwd that never ran a turn is used (unsubscribed), not a new one', async (t) => {
  const s = await setup(t);
  const empty = s.fake.addThread({ cwd: s.cwd, loaded: true, pastTurns: [] });
  const b = s.startBridge({ CODEX_THREAD_MODE: 'auto' });
  const obs = await s.observer();
  await waitFor(async () => (await agentRecord(obs, s.agentId))?.ready === true, 'ready');
  t.equal(s.fake.requests('thread/start').length, 0);
  t.ok(b.logs.some((l) => l.startsWith('info: CODEX_THREAD_MODE=auto') && l.includes(`thread ${empty} is loaded`)));
  const alice = await s.sender();
  const m = (await alice.rpc.call('message/send', { to: s.agentId, body: 'hello' })).message;
  await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, 'the reply');
  t.equal(occurrences(s.fake, empty, m.id), 1);
});

t.test('resume: a thread held by another writer stops the adapter with a clear error, no restart loop', async (t) => {
  const s = await setup(t);
  const held = s.fake.addThread({ cwd: s.cwd, loaded: false, activeWriter: true });
  const b = s.startBridge({ CODEX_THREAD_MODE: 'resume', CODEX_THREAD_ID: held });
  const outcome = await within(b.outcome, 8000, 'still running');
  t.type(outcome, Error, 'run() rejects');
  t.match((outcome as Error).message, /active writer/, 'the error says why');
  t.match((outcome as Error).message, new RegExp(held), 'and names the thread');
  const resumesAtStop = s.fake.requests('thread/resume').length;
  await settle(600); // several reconnect intervals (100–300 ms): a loop would show here
  t.equal(s.fake.requests('thread/resume').length, resumesAtStop, 'no further attempts after the error');
  t.equal(resumesAtStop, 1, 'tried once');
  t.equal(s.fake.requests('thread/start').length, 0, 'did not start another thread behind the user’s back');
  t.equal(s.fake.connections, 0, 'app-server connection closed');
  const obs = await s.observer();
  const agent = await agentRecord(obs, s.agentId);
  t.equal(agent?.ready, false, 'never reported ready');
  t.ok(
    b.logs.some((l) => l.startsWith('error:') && /active writer/.test(l)),
    'logged as an error',
  );
});

t.test('auto: attaches to the newest loaded thread of our cwd, never an unrelated or unloaded one', async (t) => {
  const s = await setup(t);
  const now = Math.floor(Date.now() / 1000);
  const unrelated = s.fake.addThread({ cwd: '/somewhere/else', loaded: true, updatedAt: now });
  const older = s.fake.addThread({ cwd: s.cwd, loaded: true, updatedAt: now - 100 });
  const newer = s.fake.addThread({ cwd: s.cwd, loaded: true, updatedAt: now - 10 });
  const onDiskOnly = s.fake.addThread({ cwd: s.cwd, loaded: false, updatedAt: now });
  s.startBridge({ CODEX_THREAD_MODE: 'auto' });
  const threadId = await s.ready();
  t.equal(threadId, newer, 'the newest loaded thread whose cwd is ours');
  t.not(threadId, unrelated);
  t.not(threadId, older);
  t.not(threadId, onDiskOnly);
  t.equal(s.fake.requests('thread/start').length, 0);
  t.same(s.fake.subscribers(unrelated), [], 'never subscribed to the unrelated thread');
  const alice = await s.sender();
  const m = (await alice.rpc.call('message/send', { to: s.agentId, body: 'x' })).message;
  await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, 'the reply');
  t.equal(occurrences(s.fake, newer, m.id), 1);
  t.same(s.fake.turnInputs(unrelated), [], 'the unrelated thread got nothing');
});

t.test('auto: with only unrelated loaded threads, starts its own', async (t) => {
  const s = await setup(t);
  const unrelated = s.fake.addThread({ cwd: '/somewhere/else', loaded: true });
  const parent = s.fake.addThread({ cwd: join(s.cwd, '..'), loaded: true });
  const b = s.startBridge({ CODEX_THREAD_MODE: 'auto' });
  const threadId = await s.ready();
  t.not(threadId, unrelated);
  t.not(threadId, parent);
  t.same(
    s.fake.requests('thread/start').map((r) => r.msg.params.cwd),
    [s.cwd],
    'started one for our cwd',
  );
  t.equal(s.fake.requests('thread/resume').length, 0, 'resumed nothing');
  t.ok(
    b.logs.some((l) => l === `info: CODEX_THREAD_MODE=auto: no loaded thread of ${s.cwd} on this app-server; starting a thread`),
    'the fallback is logged',
  );
});

t.test('the daemon process (bin/codex-relay.js) exits 1 on an active writer, saying why, instead of looping', async (t) => {
  const s = await setup(t);
  const held = s.fake.addThread({ cwd: s.cwd, loaded: false, activeWriter: true });
  const child = spawnAdapter(t, { ...s.env, CODEX_THREAD_MODE: 'resume', CODEX_THREAD_ID: held });
  const exit = await within(child.exited, 20_000, null);
  t.ok(exit, 'the process ended by itself');
  t.equal(exit?.code, 1, 'exit code 1');
  t.match(child.stderr(), /agent-relay: thread \S+ is held by another Codex process \(active writer\)/, 'the reason on stderr');
  t.equal(s.fake.requests('thread/resume').length, 1, 'one attempt');
  const obs = await s.observer();
  t.equal((await agentRecord(obs, s.agentId))?.ready, false, 'never ready');
});
