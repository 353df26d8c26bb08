import t, { type Test } from 'tap';
import { repliesTo } from '../codex/harness.js';
import { waitFor } from '../helpers/wait.js';
import { agentRecord, realSetup, trace, type RealSetup } from './harness.js';
import { initialized } from './raw-client.js';

/**
 * The adapter process SIGKILLed and started again on the same state file, against the real
 * `codex app-server`: idle, and in the middle of a turn (which ends while it is away, or is still
 * running when it is back). No turn is repeated, no message lost, exactly one reply each.
 */

const REPLY_WAIT = 20_000;

async function killAdapter(s: RealSetup): Promise<void> {
  await s.adapter.kill9();
  const obs = await s.observer();
  await waitFor(async () => (await agentRecord(obs, s.agentId))?.connected === false, 'the relay to see the adapter gone', REPLY_WAIT);
}

/** Model requests whose last user text is the turn carrying message `id`. */
function turnsCarrying(s: RealSetup, id: number): number {
  return s.model.responses().filter((r) => (r.userTexts.at(-1) ?? '').includes(`Message #${id} from`)).length;
}

function printTrace(s: RealSetup, t: Test, from: number): void {
  t.comment(`frames of the restarted adapter:\n${trace(s.app, from)}`);
}

t.test('adapter SIGKILL while idle: a message sent while it is down is answered once after the restart', async (t) => {
  const s = await realSetup(t);
  await s.ready();
  const alice = await s.sender();
  const m1 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'before the kill' })).message;
  await waitFor(() => repliesTo(alice.rpc, m1.id).length === 1, 'the first reply', REPLY_WAIT);
  await killAdapter(s);
  const m2 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'while you were down' })).message;
  const mark = s.app.frames.length;
  const restartedAt = Date.now();
  s.startAdapter();
  await s.ready();
  await waitFor(() => repliesTo(alice.rpc, m2.id).length === 1, 'the reply to the message sent while down', REPLY_WAIT);
  const replyMs = Date.now() - restartedAt;
  await new Promise((r) => setTimeout(r, 1000)); // a repeated turn or second reply would show here
  t.equal(repliesTo(alice.rpc, m1.id).length, 1, 'm1 answered once (not again after the restart)');
  t.equal(repliesTo(alice.rpc, m2.id).length, 1, 'm2 answered once');
  t.equal(turnsCarrying(s, m1.id), 1, 'no turn repeated for m1');
  t.equal(turnsCarrying(s, m2.id), 1, 'one turn for m2');
  t.same(
    s.app.answers('thread/resume').map((a) => !!a.response?.result),
    [true],
    'the restarted adapter resumed its thread',
  );
  t.equal(s.app.answers('thread/start').length, 1, 'no new thread');
  t.comment(`m2 answered ${replyMs} ms after the adapter was started again`);
  printTrace(s, t, mark);
});

for (const when of ['ends while the adapter is down', 'still runs when the adapter is back'] as const) {
  t.test(`adapter SIGKILL mid-turn, the turn ${when}: one turn, one reply`, async (t) => {
    const s = await realSetup(t);
    await s.ready();
    const alice = await s.sender();
    let release!: () => void;
    s.model.next({ text: 'the held answer', gate: new Promise<void>((r) => (release = r)) });
    const m = (await alice.rpc.call('message/send', { to: s.agentId, body: 'a long job' })).message;
    await waitFor(() => s.app.notifications('turn/started').length === 1 && s.model.responses().length === 1, 'the turn to run', REPLY_WAIT);
    await killAdapter(s);
    if (when === 'ends while the adapter is down') {
      release();
      // Nobody is subscribed now: ask the app-server directly until the turn has ended.
      const probe = await initialized(s.app.directUrl);
      t.teardown(() => probe.ws.terminate());
      const threadId = s.app.answers('thread/start')[0]!.response.result.thread.id;
      await waitFor(async () => (await probe.call('thread/turns/list', { threadId })).result?.data?.[0]?.status === 'completed', 'the turn to end', REPLY_WAIT);
    }
    const mark = s.app.frames.length;
    s.startAdapter();
    await s.ready();
    if (when === 'still runs when the adapter is back') {
      await new Promise((r) => setTimeout(r, 500));
      t.equal(repliesTo(alice.rpc, m.id).length, 0, 'no reply while the turn runs');
      release();
    }
    await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, 'the reply', REPLY_WAIT);
    await new Promise((r) => setTimeout(r, 1000));
    const replies = repliesTo(alice.rpc, m.id);
    t.equal(replies.length, 1, 'exactly one reply');
    t.equal(replies[0]!.body, 'the held answer', 'the turn’s own answer');
    t.equal(s.app.answers('turn/start').length, 1, 'no second turn/start');
    t.equal(turnsCarrying(s, m.id), 1, 'the model was asked once');
    const resume = s.app.answers('thread/resume')[0];
    t.comment(
      `thread/resume of the restarted adapter: status=${JSON.stringify(resume?.response?.result?.thread?.status)}; turns/list statuses: ${JSON.stringify(
        s.app
          .answers('thread/turns/list')
          .filter((a) => a.response?.result)
          .map((a) => a.response.result.data.map((x: any) => x.status))[0],
      )}`,
    );
    printTrace(s, t, mark);
  });
}
