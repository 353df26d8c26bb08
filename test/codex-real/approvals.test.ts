import t, { type Test } from 'tap';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { appServerClient, type AppServerClient } from '../codex/app-server-client.js';
import { repliesTo } from '../codex/harness.js';
import { waitFor } from '../helpers/wait.js';
import { realAppServerAlone } from './direct.js';
import { realSetup, trace, type FakeModel, type RealAppServer, type RealSetup } from './harness.js';

/**
 * Approvals through the real app-server: the fake model asks for exec_command, the thread runs
 * with approvalPolicy "untrusted" (set by the adapter on thread/start: 0.171.0 refuses
 * `approval_policy = "untrusted"` in config.toml, so the config says "on-request"), and the
 * sender answers the codex.approval task on the relay. 0.171.0 offers such a command
 * `availableDecisions: ["accept", {acceptWithExecpolicyAmendment: {execpolicy_amendment: argv}},
 * "cancel"]`: no acceptForSession, no decline.
 */

type Close = { status: 'done' | 'failed' | 'canceled'; note?: string };

/** The rig up to an open approval task for alice's message (the model asks to `touch FILE`). */
async function approvalTask(t: Test, file = 'approved.txt', after = 'after') {
  const s = await realSetup(t, { approvalPolicy: 'on-request', env: { CODEX_LIVE_APPROVAL_POLICY: 'untrusted' } });
  await s.ready();
  s.model.next({ call: { name: 'exec_command', arguments: { cmd: `touch ${file}` } } });
  s.model.next({ text: after });
  const alice = await s.sender();
  const m = (await alice.rpc.call('message/send', { to: s.agentId, body: 'please touch the file' })).message;
  let taskId: number | undefined;
  await waitFor(() => (taskId = alice.rpc.messages().find((x: any) => x.taskId !== null)?.taskId) !== undefined, 'the approval task', 15_000);
  const task = (await alice.rpc.call('task/get', { id: taskId })).task;
  return { s, alice, m, task };
}

/** Close the task as a person on the relay would (canceled needs no claim). */
async function closeTask(alice: Awaited<ReturnType<RealSetup['sender']>>, id: number, close: Close): Promise<void> {
  if (close.status === 'canceled') {
    await alice.rpc.call('task/update', { id, ...close });
    return;
  }
  const { claimToken } = await alice.rpc.call('task/claim', { id });
  await alice.rpc.call('task/update', { id, claimToken, ...close });
}

async function approvalRun(t: Test, close: Close) {
  const run = await approvalTask(t, 'approved.txt', `after ${close.note ?? close.status}`);
  await closeTask(run.alice, run.task.id, close);
  return run;
}

/** The adapter's pino lines. */
function logLines(s: RealSetup): any[] {
  return s.adapter
    .stderr()
    .split('\n')
    .flatMap((l) => {
      try {
        return [JSON.parse(l)];
      } catch {
        return [];
      }
    });
}

function approvalRequest(app: RealAppServer): any {
  return app.frames.find((f) => f.dir === 'in' && f.msg?.method === 'item/commandExecution/requestApproval')?.msg;
}

/** What the adapter sent back for request `id` (the proxy sees only the adapter's sockets). */
function adapterAnswers(app: RealAppServer, id: unknown): any[] {
  return app.frames.filter((f) => f.dir === 'out' && f.msg?.id === id && f.msg.method === undefined).map((f) => f.msg);
}

t.test('exec_command under "untrusted": an approval task for the sender offering the availableDecisions; accept runs the command and the turn replies', async (t) => {
  const { s, alice, m, task } = await approvalRun(t, { status: 'done', note: 'accept' });
  await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, 'the reply', 15_000);
  const req = approvalRequest(s.app);
  t.comment(`the real approval request: ${JSON.stringify(req)}`);
  t.comment(`the relay task: ${JSON.stringify({ title: task.title, body: task.body, meta: task.meta })}`);
  t.equal(s.app.answers('thread/start')[0]!.response.result.approvalPolicy, 'untrusted', 'thread/start took approvalPolicy untrusted');
  t.same(req.params.availableDecisions, ['accept', { acceptWithExecpolicyAmendment: { execpolicy_amendment: ['touch', 'approved.txt'] } }, 'cancel'], '0.171.0 lists these');
  t.equal(task.target, 'alice');
  t.match(task.meta, {
    kind: 'codex.approval',
    method: 'item/commandExecution/requestApproval',
    requestId: String(req.id),
    command: "/bin/bash -lc 'touch approved.txt'",
    plainCommand: 'touch approved.txt',
  });
  t.same(task.meta.choices, ['accept', 'acceptWithExecpolicyAmendment', 'cancel'], 'the task offers exactly the listed decisions');
  t.equal(task.title, 'Codex asks to run: touch approved.txt', 'the title shows the plain command (commandActions), not the shell string');
  t.match(task.body, /\nRuns: \/bin\/bash -lc 'touch approved.txt'\n/);
  t.match(task.body, /\n\nAnswer: agent-relay approve TASK_ID accept \| acceptWithExecpolicyAmendment \| cancel$/);
  t.same(
    adapterAnswers(s.app, req.id).map((a) => a.result),
    [{ decision: 'accept' }],
    'answered {decision:"accept"}',
  );
  t.ok(existsSync(join(s.cwd, 'approved.txt')), 'the command ran');
  t.equal(repliesTo(alice.rpc, m.id)[0]!.body, 'after accept', 'the turn went on to its reply');
  const output = s.model.responses()[1]?.body?.input?.find((i: any) => i.type === 'function_call_output');
  t.comment(`function_call_output the model got: ${JSON.stringify(output)}`);
  t.comment(trace(s.app));
});

t.test("acceptWithExecpolicyAmendment: the request's own object goes back; the command runs, and the same command later runs without asking", async (t) => {
  const { s, alice, m } = await approvalRun(t, { status: 'done', note: 'acceptWithExecpolicyAmendment' });
  await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, 'the reply', 15_000);
  const req = approvalRequest(s.app);
  t.same(
    adapterAnswers(s.app, req.id).map((a) => a.result),
    [{ decision: req.params.availableDecisions[1] }],
    'the listed object, as listed',
  );
  t.ok(existsSync(join(s.cwd, 'approved.txt')), 'the command ran');
  const item = s.app.notifications('item/completed').find((n) => n.params.item?.type === 'commandExecution')?.params.item;
  t.equal(item?.status, 'completed');
  // The amendment is a rule now: the same command again is not put to anyone.
  s.model.next({ call: { name: 'exec_command', arguments: { cmd: 'touch approved.txt' } } });
  s.model.next({ text: 'again' });
  const m2 = (await alice.rpc.call('message/send', { to: s.agentId, body: 'once more' })).message;
  await waitFor(() => repliesTo(alice.rpc, m2.id).length === 1, 'the second reply', 15_000);
  t.equal(s.app.frames.filter((f) => f.dir === 'in' && f.msg?.method === 'item/commandExecution/requestApproval').length, 1, 'no second approval request');
});

t.test('declined: the offered "no" is cancel; the command does not run and the turn is interrupted', async (t) => {
  const { s, alice, m, task } = await approvalRun(t, { status: 'canceled', note: 'cancel' });
  await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, 'a reply', 15_000);
  const req = approvalRequest(s.app);
  t.same(
    adapterAnswers(s.app, req.id).map((a) => a.result),
    [{ decision: 'cancel' }],
  );
  t.notOk(existsSync(join(s.cwd, 'approved.txt')), 'the command did not run');
  t.match(s.app.notifications('item/completed').find((n) => n.params.item?.type === 'commandExecution')?.params.item, { status: 'declined' });
  t.equal(s.app.notifications('turn/completed').at(-1)?.params.turn.status, 'interrupted');
  t.match(repliesTo(alice.rpc, m.id)[0]!.body, /interrupted/, 'the sender is told');
  t.equal((await alice.rpc.call('task/get', { id: task.id })).task.status, 'canceled');
});

for (const c of [
  { close: { status: 'failed' } as Close, asked: 'decline', sent: 'cancel', ran: false },
  { close: { status: 'done', note: 'acceptForSession' } as Close, asked: 'acceptForSession', sent: 'accept', ran: true },
]) {
  t.test(`a decision not offered chosen on the relay (${c.asked}): mapped to ${c.sent}, logged, never sent raw`, async (t) => {
    const { s, alice, m } = await approvalRun(t, c.close);
    await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, 'a reply', 15_000);
    const req = approvalRequest(s.app);
    t.same(
      adapterAnswers(s.app, req.id).map((a) => a.result),
      [{ decision: c.sent }],
      `sent ${c.sent} only`,
    );
    t.equal(existsSync(join(s.cwd, 'approved.txt')), c.ran, c.ran ? 'the command ran (once)' : 'the command did not run');
    const logged = () => logLines(s).find((l) => l.msg?.includes('is not offered'));
    await waitFor(() => logged() !== undefined, 'the log line', 5000);
    t.match(logged(), { level: 40, msg: `"${c.asked}" is not offered (offered: accept, acceptWithExecpolicyAmendment, cancel); answering "${c.sent}"` }, 'a warning');
  });
}

t.test('answered by another client first: serverRequest/resolved closes the relay task, and the adapter never answers', async (t) => {
  const { s, alice, m, task } = await approvalTask(t);
  const req = approvalRequest(s.app);
  // A person's TUI on the same app-server (directly, not through the recording proxy).
  const other = await appServerClient(t, s.app.directUrl);
  await other.conn.request('thread/resume', { threadId: task.meta.threadId });
  await other.until(() => other.requests.some((r) => r.id === req.id), 'the pending request replayed to the other client');
  other.conn.respond(req.id, { decision: 'accept' });
  await waitFor(async () => (await alice.rpc.call('task/get', { id: task.id })).task.status === 'canceled', 'the relay task closed', 15_000);
  const got = await alice.rpc.call('task/get', { id: task.id });
  t.match(got.events.at(-1).data, { status: 'canceled', note: /answered in Codex/ });
  const resolved = s.app.notifications('serverRequest/resolved').map((n) => n.params);
  t.comment(`serverRequest/resolved to the adapter: ${JSON.stringify(resolved)}; to the answering client: ${JSON.stringify(other.of('serverRequest/resolved'))}`);
  t.same(resolved, [{ threadId: task.meta.threadId, requestId: req.id }]);
  t.same(other.of('serverRequest/resolved'), [{ threadId: task.meta.threadId, requestId: req.id }], 'the answering client is told too');
  await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, 'the turn goes on to its reply', 15_000);
  t.ok(existsSync(join(s.cwd, 'approved.txt')), "the other client's accept ran it");
  await t.rejects(alice.rpc.call('task/claim', { id: task.id }), 'the closed task takes no answer');
  t.same(adapterAnswers(s.app, req.id), [], 'the adapter sent no answer for that id');
});

/** The real app-server with a direct client in a thread under "untrusted": no relay, no adapter. */
async function direct(t: Test): Promise<{ model: FakeModel; a: AppServerClient; threadId: string; cwd: string }> {
  const { model, app, cwd } = await realAppServerAlone(t);
  const a = await appServerClient(t, app.directUrl);
  const { thread } = await a.conn.request('thread/start', { cwd, approvalPolicy: 'untrusted', sandbox: 'read-only' });
  return { model, a, threadId: thread.id, cwd };
}

// The evidence for mapping instead of sending: 0.171.0 honours the two unlisted words today,
// and fails the item for a word outside the enum (test/codex-real/fake-parity-approvals.test.ts).
for (const decision of ['decline', 'acceptForSession'] as const) {
  t.test(`${decision}, which the request does not list, answered raw: what the real server does`, async (t) => {
    const { model, a, threadId, cwd } = await direct(t);
    model.next({ call: { name: 'exec_command', arguments: { cmd: 'touch approved.txt' } } });
    model.next({ text: `after ${decision}` });
    await a.conn.request('turn/start', { threadId, input: [{ type: 'text', text: 'touch it', text_elements: [] }] });
    await a.until(() => a.requests.length === 1, 'the approval request');
    a.conn.respond(a.requests[0]!.id, { decision });
    await a.until(() => a.of('turn/completed').length === 1, 'turn/completed');
    const item = a.of('item/completed').find((n) => n.item?.type === 'commandExecution')?.item;
    const output = model.responses()[1]?.body?.input?.find((i: any) => i.type === 'function_call_output');
    t.comment(`answered {decision:${JSON.stringify(decision)}} → item ${item?.status}, turn ${a.of('turn/completed')[0]!.turn.status}; the model got: ${JSON.stringify(output?.output)}`);
    t.equal(existsSync(join(cwd, 'approved.txt')), decision === 'acceptForSession', decision === 'decline' ? 'the command did not run' : 'the command ran');
    t.equal(item?.status, decision === 'decline' ? 'declined' : 'completed');
    t.equal(a.of('turn/completed')[0]!.turn.status, 'completed', 'the turn went on');
  });
}
