import t from 'tap';
import { repliesTo } from '../codex/harness.js';
import { waitFor } from '../helpers/wait.js';
import { realSetup, trace, type RealSetup } from './harness.js';
import { initialized, type Client } from './raw-client.js';

/**
 * Thread modes against the real `codex app-server`: a person's thread made by a bare client (as
 * the TUI would), then the adapter started in `resume` or `auto` mode. What 0.171 allows: a thread
 * that ran a turn resumes from any socket; one that never ran a turn does not ("no rollout
 * found"), so the adapter uses it unsubscribed until its first turn.
 */

const REPLY_WAIT = 20_000;

/** A person's thread: thread/start on a socket of its own, and `turns` turns run on it. */
async function personThread(s: RealSetup, cwd: string, turns: number): Promise<{ c: Client; threadId: string }> {
  const c = await initialized(s.app.directUrl, 'person_tui');
  t.teardown(() => c.ws.terminate());
  const threadId: string = (await c.call('thread/start', { cwd })).result.thread.id;
  for (let i = 0; i < turns; i++) {
    s.model.next({ text: `person answer ${i}` });
    await c.call('turn/start', { threadId, input: [{ type: 'text', text: `remember the word kettle ${i}`, text_elements: [] }] });
    await c.until((m) => m.method === 'turn/completed' && c.inbox.filter((x) => x.method === 'turn/completed').length > i);
  }
  return { c, threadId };
}

function logLines(s: RealSetup, re: RegExp): string[] {
  return s.adapter
    .stderr()
    .split('\n')
    .filter((l) => re.test(l))
    .map((l) => JSON.parse(l).msg as string);
}

t.test('resume: the adapter attaches to a person’s thread that ran a turn, and keeps its history', async (t) => {
  const s = await realSetup(t, { deferAdapter: true });
  const { threadId } = await personThread(s, s.cwd, 1);
  s.startAdapter({ CODEX_THREAD_MODE: 'resume', CODEX_THREAD_ID: threadId });
  await s.ready();
  t.same(
    s.app.answers('thread/resume').map((a) => [a.request.params.threadId, !!a.response?.result]),
    [[threadId, true]],
    'resumed the named thread',
  );
  t.equal(s.app.answers('thread/start').length, 0, 'started none (the proxy only sees the adapter)');
  s.model.next({ text: 'resumed answer' });
  const alice = await s.sender();
  const m = (await alice.rpc.call('message/send', { to: s.agentId, body: 'which word?' })).message;
  await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, 'the reply', REPLY_WAIT);
  t.equal(repliesTo(alice.rpc, m.id)[0]!.body, 'resumed answer');
  t.ok(
    s.model
      .responses()
      .at(-1)!
      .userTexts.some((x) => x.includes('remember the word kettle 0')),
    'the model saw the person’s earlier turn',
  );
  t.comment(`adapter: ${JSON.stringify(logLines(s, /Codex thread/))}`);
});

t.test('auto: the loaded thread of our cwd that ran a turn is resumed; an unrelated one is left alone', async (t) => {
  const s = await realSetup(t, { deferAdapter: true });
  const other = await personThread(s, s.app.codexHome, 1);
  const mine = await personThread(s, s.cwd, 1);
  s.startAdapter({ CODEX_THREAD_MODE: 'auto' });
  await s.ready();
  t.same(
    s.app.answers('thread/resume').map((a) => a.request.params.threadId),
    [mine.threadId],
    'resumed the thread of our cwd only',
  );
  t.equal(s.app.answers('thread/start').length, 0);
  const alice = await s.sender();
  const m = (await alice.rpc.call('message/send', { to: s.agentId, body: 'auto hello' })).message;
  await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, 'the reply', REPLY_WAIT);
  t.ok(
    mine.c.inbox.some((x) => x.method === 'turn/started'),
    'the person’s socket saw the adapter’s turn on its thread',
  );
  t.notOk(other.c.inbox.filter((x) => x.method === 'turn/started').length > 1, 'the unrelated thread got no turn');
  t.comment(`thread/loaded/list → ${JSON.stringify(s.app.answers('thread/loaded/list')[0]?.response?.result)}; reads: ${s.app.answers('thread/read').length}`);
});

t.test('auto: a person’s loaded thread that never ran a turn is used unsubscribed, answered, then resumed', async (t) => {
  const s = await realSetup(t, { deferAdapter: true });
  const { c } = await personThread(s, s.cwd, 0);
  s.startAdapter({ CODEX_THREAD_MODE: 'auto' });
  await s.ready();
  const resume = s.app.answers('thread/resume')[0];
  t.comment(`thread/resume of the empty thread → ${JSON.stringify(resume?.response?.error)}`);
  t.match(resume?.response?.error, { code: -32600, message: /no rollout found/ }, '0.171 cannot resume it');
  t.equal(s.app.answers('thread/start').length, 0, 'no thread of its own');
  const why = logLines(s, /using it unsubscribed/);
  t.comment(`adapter: ${JSON.stringify(why)}`);
  t.equal(why.length, 1, 'the adapter says what it does and why');
  s.model.next({ text: 'first answer in the person’s thread' });
  const alice = await s.sender();
  const m = (await alice.rpc.call('message/send', { to: s.agentId, body: 'the very first words' })).message;
  const sentAt = Date.now();
  await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, 'the reply, read from the thread', REPLY_WAIT);
  t.comment(`reply ${Date.now() - sentAt} ms after message/send, without turn events on the adapter's socket`);
  t.equal(repliesTo(alice.rpc, m.id)[0]!.body, 'first answer in the person’s thread');
  t.ok(
    c.inbox.some((x) => x.method === 'turn/completed'),
    'the turn ran in the person’s thread (its socket saw it)',
  );
  await waitFor(() => logLines(s, /subscribed to Codex thread/).length === 1, 'subscribed after the first turn', 5000);
  t.ok(
    s.app
      .answers('thread/resume')
      .slice(1)
      .some((a) => a.response?.result),
    'resumed once it had a rollout',
  );
  s.model.next({ text: 'second answer' });
  const m2 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'and again' })).message;
  await waitFor(() => repliesTo(alice.rpc, m2.id).length === 1, 'the second reply', REPLY_WAIT);
  await new Promise((r) => setTimeout(r, 800));
  t.equal(repliesTo(alice.rpc, m.id).length + repliesTo(alice.rpc, m2.id).length, 2, 'one reply each');
  t.equal(s.app.answers('turn/start').length, 2);
  t.comment(`adapter-side notifications before subscribing: ${JSON.stringify([...new Set(s.app.frames.filter((f) => f.dir === 'in' && f.msg?.method && f.conn === 1).map((f) => f.msg.method))])}`);
  t.comment(trace(s.app));
});

t.test('the fallbacks say why: resume of an unknown id, auto with no loaded thread of our cwd', async (t) => {
  const unknown = '019a0000-0000-7000-8000-000000000000';
  const r = await realSetup(t, { env: { CODEX_THREAD_MODE: 'resume', CODEX_THREAD_ID: unknown } });
  await r.ready();
  const resumed = r.app.answers('thread/resume')[0]?.response?.error;
  const read = r.app.answers('thread/read')[0]?.response?.error;
  t.comment(`resume ${unknown} → ${JSON.stringify(resumed)}; thread/read → ${JSON.stringify(read)}`);
  const rLines = logLines(r, /CODEX_THREAD_MODE=resume/);
  t.comment(`adapter: ${JSON.stringify(rLines)}`);
  t.match(rLines, [new RegExp(`thread ${unknown} is unknown to this app-server .*starting a thread instead`)]);
  t.equal(r.app.answers('thread/start').length, 1, 'then started its own');
  const a = await realSetup(t, { env: { CODEX_THREAD_MODE: 'auto' } });
  await a.ready();
  const aLines = logLines(a, /CODEX_THREAD_MODE=auto/);
  t.comment(`adapter: ${JSON.stringify(aLines)}`);
  t.match(aLines, [/no loaded thread of .* on this app-server; starting a thread/]);
  t.equal(a.app.answers('thread/start').length, 1);
});
