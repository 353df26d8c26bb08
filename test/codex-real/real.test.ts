import t, { type Test } from 'tap';
import { repliesTo } from '../codex/harness.js';
import { waitFor } from '../helpers/wait.js';
import { agentRecord, CODEX_VERSION, realSetup, trace, type RealSetup } from './harness.js';

/**
 * The Codex adapter against the real `codex app-server` (pinned @openai/codex), offline: the
 * model is a fake Responses API in this process. Each test prints what it measured and what the
 * real server sent (`# ...` lines), since these are the facts docs/INTEGRATIONS.md records.
 */

const REPLY_WAIT = 20_000;

function printable(s: RealSetup, t: Test, what: string, from = 0): void {
  t.comment(`${what}:\n${trace(s.app, from)}`);
}

/** The app-server's own words: warnings and notices, verbatim. */
function notices(s: RealSetup): string[] {
  return ['configWarning', 'warning', 'deprecationNotice'].flatMap((m) => s.app.notifications(m).map((n) => `${m}: ${JSON.stringify(n.params)}`));
}

t.test('registers on the relay and turns ready against the real app-server', async (t) => {
  const s = await realSetup(t);
  const readyMs = await s.ready();
  const obs = await s.observer();
  const agent = (await agentRecord(obs, s.agentId))!;
  t.equal(agent.id, 'codex-realrig-proj');
  t.equal(agent.client, 'codex-live');
  t.equal(agent.ready, true);
  t.equal(agent.connected, true);
  const init = s.app.answers('initialize')[0]!;
  t.ok(init.response?.result, 'initialize answered');
  const start = s.app.answers('thread/start')[0]!;
  t.ok(start.response?.result?.thread?.id, 'thread/start answered with a thread');
  t.comment(`codex ${CODEX_VERSION}: app-server /readyz ${s.app.startupMs} ms after spawn; adapter agent ready ${readyMs} ms after its spawn`);
  t.comment(`initialize result: ${JSON.stringify(init.response.result)}`);
  t.comment(`thread/start result (thread): ${JSON.stringify({ ...start.response.result.thread, turns: start.response.result.thread.turns?.length })}`);
  printable(s, t, 'frames up to ready');
  for (const n of notices(s)) t.comment(n);
  t.equal(s.model.responses().length, 0, 'no model request before a message arrives');
  const versionLine = s.adapter
    .stderr()
    .split('\n')
    .find((l) => l.includes('Codex app-server 0.'));
  t.comment(`adapter log: ${versionLine}`);
  t.match(versionLine, `Codex app-server ${CODEX_VERSION} (userAgent agent_relay_codex/${CODEX_VERSION} (`, 'the version, from userAgent');
  t.notMatch(s.adapter.stderr(), /is older than/, 'no version warning');
});

t.test('one relay message → one turn → a threaded reply carrying the model text', async (t) => {
  const s = await realSetup(t);
  await s.ready();
  s.model.next({ text: 'The answer is 42.' });
  const alice = await s.sender();
  const sentAt = Date.now();
  const m = (await alice.rpc.call('message/send', { to: s.agentId, body: 'what is six times seven?' })).message;
  await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, 'the reply', REPLY_WAIT);
  const replyMs = Date.now() - sentAt;
  const reply = repliesTo(alice.rpc, m.id)[0]!;
  t.equal(reply.body, 'The answer is 42.', 'the reply is the model text');
  t.equal(reply.from, s.agentId);
  t.equal(reply.threadId, m.threadId ?? m.id, 'in the message thread');
  t.equal(s.app.answers('turn/start').length, 1, 'one turn');
  const reqs = s.model.responses();
  t.equal(reqs.length, 1, 'one model request');
  const userText = reqs[0]!.userTexts.at(-1) ?? '';
  t.match(userText, `Message #${m.id} from alice`, 'the model saw who sent it');
  t.match(userText, 'what is six times seven?', 'and the body');
  t.comment(`reply ${replyMs} ms after message/send (coalesce window 300 ms included)`);
  t.comment(`user text the model got: ${JSON.stringify(userText)}`);
  t.comment(`model request: model=${reqs[0]!.body?.model} stream=${reqs[0]!.body?.stream} input items=${reqs[0]!.body?.input?.length}`);
  await waitFor(() => s.app.answers('thread/read').every((a) => a.response), 'thread/read answers');
  for (const a of s.app.answers('thread/read'))
    t.comment(
      `thread/read ${JSON.stringify(a.request.params)} → ${a.response?.error ? `error ${JSON.stringify(a.response.error)}` : `ok, turns=${JSON.stringify(a.response?.result?.thread?.turns)?.slice(0, 600)}`}`,
    );
  const completed = s.app.notifications('turn/completed')[0];
  t.comment(`turn/completed params: ${JSON.stringify(completed?.params)}`);
  printable(s, t, 'frames');
  for (const n of notices(s)) t.comment(n);
});

t.test('a burst of messages within the coalesce window', async (t) => {
  const s = await realSetup(t, { env: { CODEX_LIVE_COALESCE_WINDOW_MS: '1500' } });
  await s.ready();
  const alice = await s.sender();
  const bob = await s.sender('bob');
  const m1 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'burst one' })).message;
  const m2 = (await bob.rpc.call('message/send', { to: s.agentId, body: 'burst two' })).message;
  const m3 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'burst three' })).message;
  await waitFor(() => repliesTo(alice.rpc, m3.id).length === 1 && repliesTo(bob.rpc, m2.id).length === 1, 'replies to the burst', REPLY_WAIT);
  t.equal(s.app.answers('turn/start').length, 1, 'one turn for the burst');
  const reqs = s.model.responses();
  t.equal(reqs.length, 1, 'one model request');
  const text = reqs[0]!.userTexts.at(-1) ?? '';
  for (const [m, who] of [
    [m1, 'alice'],
    [m2, 'bob'],
    [m3, 'alice'],
  ] as const)
    t.match(text, `Message #${m.id} from ${who}`, `#${m.id} in the turn`);
  t.equal(repliesTo(alice.rpc, m1.id).length + repliesTo(alice.rpc, m3.id).length + repliesTo(bob.rpc, m2.id).length, 3, 'each relay thread got one reply');
  t.comment(`one turn, user text: ${JSON.stringify(text)}`);
  t.comment(`replies: ${JSON.stringify([...alice.rpc.messages(), ...bob.rpc.messages()].filter((x) => x.replyTo).map((x) => ({ to: x.to, replyTo: x.replyTo, body: x.body })))}`);
});

t.test('a message arriving while a turn runs waits and gets its own turn', async (t) => {
  const s = await realSetup(t);
  await s.ready();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  s.model.next({ text: 'first answer', gate });
  s.model.next({ text: 'second answer' });
  const alice = await s.sender();
  const m1 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'long job' })).message;
  await waitFor(() => s.app.notifications('turn/started').length === 1 && s.model.responses().length === 1, 'the first turn to run', REPLY_WAIT);
  const heldFrom = s.app.frames.length;
  const m2 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'while you work' })).message;
  // Past the coalesce window (300 ms) and a reconcile (1 s): nothing may start while the turn runs.
  await new Promise((r) => setTimeout(r, 1500));
  t.equal(s.app.answers('turn/start').length, 1, 'no second turn/start while the turn runs');
  t.equal(s.model.responses().length, 1, 'the model saw one request so far');
  t.equal(repliesTo(alice.rpc, m1.id).length, 0, 'no reply before the turn ends');
  printable(s, t, 'frames while the turn was held', heldFrom);
  release();
  await waitFor(() => repliesTo(alice.rpc, m1.id).length === 1 && repliesTo(alice.rpc, m2.id).length === 1, 'both replies', REPLY_WAIT);
  t.equal(repliesTo(alice.rpc, m1.id)[0]!.body, 'first answer');
  t.equal(repliesTo(alice.rpc, m2.id)[0]!.body, 'second answer');
  t.equal(s.app.answers('turn/start').length, 2, 'the waiting message got its own turn');
  const second = s.model.responses()[1]!;
  t.match(second.userTexts.at(-1) ?? '', `Message #${m2.id} from alice`, 'the second turn carries the waiting message');
  t.notMatch(second.userTexts.at(-1) ?? '', `Message #${m1.id} from`, 'and not the first again');
  t.comment(`second model request user texts (history + new): ${second.userTexts.length} texts; last: ${JSON.stringify(second.userTexts.at(-1))}`);
  printable(s, t, 'frames after release', heldFrom);
});

// The real server gives a failed turn's reason in turn/completed's turn.error.message (and in an
// `error` notification before it); the reply carries it (it used to be only "(Codex turn failed)").
for (const kind of ['http500', 'sseFailed'] as const) {
  t.test(`a model error (${kind === 'http500' ? 'HTTP 500' : 'SSE response.failed'}) → the sender gets the reason`, async (t) => {
    const s = await realSetup(t);
    await s.ready();
    const reason = kind === 'http500' ? 'fake model error 500' : 'the fake model failed this response';
    s.model.next(kind === 'http500' ? { status: 500 } : { failMessage: reason });
    const alice = await s.sender();
    const m = (await alice.rpc.call('message/send', { to: s.agentId, body: 'please fail' })).message;
    await waitFor(() => repliesTo(alice.rpc, m.id).length >= 1, 'a reply to the failed turn', REPLY_WAIT);
    const reply = repliesTo(alice.rpc, m.id)[0]!;
    // The idle status comes first on 0.171 and its reconcile may answer before turn/completed arrives.
    await waitFor(() => s.app.notifications('turn/completed').length >= 1, 'turn/completed', REPLY_WAIT);
    const completed = s.app.notifications('turn/completed')[0];
    t.comment(`model requests: ${s.model.responses().length} (request_max_retries = 0)`);
    t.comment(`turn/completed params: ${JSON.stringify(completed?.params)}`);
    t.comment(`error notifications: ${JSON.stringify(s.app.notifications('error').map((n) => n.params))}`);
    t.comment(`the sender got: ${JSON.stringify(reply.body)}`);
    printable(s, t, 'frames');
    t.equal(repliesTo(alice.rpc, m.id).length, 1, 'exactly one reply');
    t.match(reply.body, 'failed', 'the reply says the turn failed');
    const error = completed?.params?.turn?.error;
    t.equal(completed?.params?.turn?.status, 'failed', 'the real server reports the turn failed');
    t.ok(error?.message, 'with a reason');
    // HTTP 500: Codex does not pass the body on; its message is a canned "high demand" text with
    // codexErrorInfo internalServerError. response.failed: "stream disconnected before completion: <message>".
    if (kind === 'sseFailed') t.match(error?.message, reason, 'response.failed error.message reaches turn.error');
    else t.equal(error?.codexErrorInfo, 'internalServerError');
    t.match(reply.body, error?.message ?? 'a reason', 'the sender learns why');
  });
}

t.test('idle before the first turn: reconciles read the status and the turns without an error or a deprecationNotice', async (t) => {
  const s = await realSetup(t, { env: { CODEX_LIVE_RECONCILE_INTERVAL_MS: '300' } });
  await s.ready();
  await waitFor(() => s.app.answers('thread/turns/list').filter((a) => a.response).length >= 3, 'three reconciles', 10_000);
  const reads = s.app.answers('thread/read').filter((a) => a.response);
  const lists = s.app.answers('thread/turns/list').filter((a) => a.response);
  t.ok(
    reads.every((a) => a.request.params.includeTurns === undefined && a.response.result),
    'thread/read {threadId} answers the status',
  );
  t.ok(
    lists.every((a) => a.response.error?.code === -32600 && /not materialized yet/.test(a.response.error.message)),
    'thread/turns/list refuses before the first user message (the adapter takes it as no turns)',
  );
  t.comment(`before the first turn: ${reads.length} thread/read ok; ${lists.length} thread/turns/list → ${JSON.stringify(lists[0]?.response.error)}`);
  const alice = await s.sender();
  const m = (await alice.rpc.call('message/send', { to: s.agentId, body: 'after a quiet start' })).message;
  await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, 'the reply', REPLY_WAIT);
  t.equal(repliesTo(alice.rpc, m.id)[0]!.body, 'mock answer 1', 'answered');
  const turnAt = s.app.frames.findIndex((f) => f.dir === 'out' && f.msg?.method === 'turn/start');
  await waitFor(() => s.app.frames.slice(turnAt).filter((f) => f.dir === 'in' && f.msg?.result?.data).length >= 2, 'reconciles after the turn', 5000);
  const later = s.app.frames.slice(turnAt).filter((f) => f.dir === 'in' && f.msg?.result?.data);
  t.ok(
    later.every((f) => f.msg.result.data.length === 1 && f.msg.result.data[0].items.some((i: any) => i.type === 'agentMessage')),
    'after it, turns/list answers the turn with its items',
  );
  t.equal(s.app.notifications('deprecationNotice').length, 0, 'no deprecationNotice at all');
  t.notMatch(s.adapter.stderr(), /reconcile failed/, 'no reconcile failed');
  t.comment(
    `after the first turn: ${later.length} thread/turns/list answered; first: ${JSON.stringify({ ...later[0]?.msg.result, data: later[0]?.msg.result.data.map((x: any) => ({ id: x.id, status: x.status, items: x.items.map((i: any) => i.type) })) })}`,
  );
});

t.test('the app-server is killed and started again: the adapter resumes its thread', async (t) => {
  const s = await realSetup(t);
  await s.ready();
  const alice = await s.sender();
  s.model.next({ text: 'before the restart' });
  const m1 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'remember the word teapot' })).message;
  await waitFor(() => repliesTo(alice.rpc, m1.id).length === 1, 'the first reply', REPLY_WAIT);
  const threadId: string = s.app.answers('thread/start')[0]!.response.result.thread.id;
  const obs = await s.observer();
  const killedAt = Date.now();
  await s.app.kill();
  await waitFor(async () => (await agentRecord(obs, s.agentId))?.ready === false, 'ready=false while the app-server is gone', REPLY_WAIT);
  const mark = s.app.frames.length;
  await s.app.start();
  await s.ready();
  t.comment(`ready again ${Date.now() - killedAt} ms after the kill`);
  const resumes = s.app.answers('thread/resume');
  t.equal(resumes.length, 1, 'one thread/resume');
  t.equal(resumes[0]?.request.params.threadId, threadId, 'of its own thread');
  t.ok(resumes[0]?.response?.result, 'the real server resumed it from the rollout');
  t.equal(s.app.answers('thread/start').length, 1, 'no new thread');
  t.comment(
    `thread/resume → ${resumes[0]?.response?.error ? JSON.stringify(resumes[0].response.error) : `ok, status=${JSON.stringify(resumes[0]?.response?.result?.thread?.status)}, turns=${resumes[0]?.response?.result?.thread?.turns?.length}`}`,
  );
  t.comment(
    `thread/resume result keys: ${Object.keys(resumes[0]?.response?.result ?? {}).join(', ')}; thread.turns=${JSON.stringify(resumes[0]?.response?.result?.thread?.turns)}; notices on resume: ${JSON.stringify(
      s.app
        .notifications('deprecationNotice')
        .slice(-1)
        .map((n) => n.params.summary),
    )}`,
  );
  s.model.next({ text: 'after the restart' });
  const m2 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'which word?' })).message;
  await waitFor(() => repliesTo(alice.rpc, m2.id).length === 1, 'the reply after the restart', REPLY_WAIT);
  t.equal(repliesTo(alice.rpc, m2.id)[0]!.body, 'after the restart');
  const last = s.model.responses().at(-1)!;
  t.ok(
    last.userTexts.some((x) => x.includes('remember the word teapot')),
    'the resumed thread kept its history (the model saw the first message)',
  );
  printable(s, t, 'frames after the restart', mark);
});

t.test('the app-server dies mid-turn and comes back: the message is delivered again once, in a new turn', async (t) => {
  const s = await realSetup(t);
  await s.ready();
  const alice = await s.sender();
  s.model.next({ text: 'never finished', gate: new Promise(() => undefined) });
  const m = (await alice.rpc.call('message/send', { to: s.agentId, body: 'the interrupted one' })).message;
  await waitFor(() => s.app.notifications('turn/started').length === 1 && s.model.responses().length === 1, 'the turn to run', REPLY_WAIT);
  await s.app.kill();
  const mark = s.app.frames.length;
  s.model.next({ text: 'answered after the restart' });
  const restartedAt = Date.now();
  await s.app.start();
  await s.ready();
  await waitFor(() => repliesTo(alice.rpc, m.id).length >= 1, 'a reply to the interrupted message', REPLY_WAIT);
  const replyMs = Date.now() - restartedAt;
  await new Promise((r) => setTimeout(r, 1000)); // a second reply or turn would show up here
  const listed = s.app.answers('thread/turns/list').find((a) => a.response?.result && a.request.id !== undefined && s.app.frames.indexOf(s.app.frames.find((f) => f.msg === a.request)!) >= mark);
  const carrying = s.model.responses().filter((r) => r.userTexts.some((x) => x.includes(`Message #${m.id} from alice`)));
  const reply = repliesTo(alice.rpc, m.id);
  const cut = listed?.response.result.data.find((x: any) => x.status === 'interrupted');
  t.comment(
    `the killed turn, as thread/turns/list shows it after the restart: ${JSON.stringify(cut && { status: cut.status, completedAt: cut.completedAt, items: cut.items.map((i: any) => i.type) })}`,
  );
  t.comment(`turn/start after the restart: ${s.app.answers('turn/start').length - 1}; model requests carrying #${m.id}: ${carrying.length}; reply ${replyMs} ms after the app-server restart`);
  t.comment(`replies: ${JSON.stringify(reply.map((x) => x.body))}`);
  t.comment(
    `adapter log: ${JSON.stringify(
      s.adapter
        .stderr()
        .split('\n')
        .filter((l) => /cut off/.test(l)),
    )}`,
  );
  printable(s, t, 'frames after the restart', mark);
  t.ok(cut, 'the real server keeps the killed turn as interrupted');
  t.equal(cut?.completedAt, null, "with no completedAt (what tells it from a person's interrupt)");
  t.equal(reply.length, 1, 'one reply');
  t.equal(reply[0]!.body, 'answered after the restart', 'from the new turn');
  t.equal(s.app.answers('turn/start').length, 2, 'delivered again once');
  t.match(s.adapter.stderr(), /cut off .* delivering #\d+ again in a new turn \(once\)/, 'the adapter says why');
});
