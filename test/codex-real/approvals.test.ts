import t, { type Test } from 'tap';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { repliesTo } from '../codex/harness.js';
import { waitFor } from '../helpers/wait.js';
import { realSetup, trace, type RealSetup } from './harness.js';

/**
 * Approvals through the real app-server: the fake model asks for exec_command, the thread runs
 * with approvalPolicy "untrusted" (set by the adapter on thread/start: 0.171.0 refuses
 * `approval_policy = "untrusted"` in config.toml, so the config says "on-request"), and the
 * sender answers the codex.approval task on the relay.
 */

async function approvalRun(t: Test, decision: string): Promise<{ s: RealSetup; alice: Awaited<ReturnType<RealSetup['sender']>>; m: any; task: any }> {
  const s = await realSetup(t, { approvalPolicy: 'on-request', env: { CODEX_LIVE_APPROVAL_POLICY: 'untrusted' } });
  await s.ready();
  s.model.next({ call: { name: 'exec_command', arguments: { cmd: 'touch approved.txt' } } });
  s.model.next({ text: `after ${decision}` });
  const alice = await s.sender();
  const m = (await alice.rpc.call('message/send', { to: s.agentId, body: 'please touch the file' })).message;
  let taskId: number | undefined;
  await waitFor(() => (taskId = alice.rpc.messages().find((x: any) => x.taskId !== null)?.taskId) !== undefined, 'the approval task', 15_000);
  const task = (await alice.rpc.call('task/get', { id: taskId })).task;
  const { claimToken } = await alice.rpc.call('task/claim', { id: taskId });
  await alice.rpc.call('task/update', { id: taskId, claimToken, status: 'done', note: decision });
  return { s, alice, m, task };
}

function approvalRequest(s: RealSetup): any {
  return s.app.frames.find((f) => f.dir === 'in' && f.msg?.method === 'item/commandExecution/requestApproval')?.msg;
}

t.test('exec_command under "untrusted": an approval task for the sender; accept runs the command and the turn replies', async (t) => {
  const { s, alice, m, task } = await approvalRun(t, 'accept');
  await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, 'the reply', 15_000);
  const req = approvalRequest(s);
  t.comment(`the real approval request: ${JSON.stringify(req)}`);
  t.comment(`the relay task: ${JSON.stringify({ title: task.title, body: task.body, meta: task.meta })}`);
  t.equal(s.app.answers('thread/start')[0]!.response.result.approvalPolicy, 'untrusted', 'thread/start took approvalPolicy untrusted');
  t.equal(task.target, 'alice');
  t.match(task.meta, { kind: 'codex.approval', method: 'item/commandExecution/requestApproval', requestId: String(req.id) });
  const answer = s.app.frames.find((f) => f.dir === 'out' && f.msg?.id === req.id && f.msg.method === undefined)?.msg;
  t.same(answer?.result, { decision: 'accept' }, 'answered {decision:"accept"}');
  t.ok(existsSync(join(s.cwd, 'approved.txt')), 'the command ran');
  t.equal(repliesTo(alice.rpc, m.id)[0]!.body, 'after accept', 'the turn went on to its reply');
  const output = s.model.responses()[1]?.body?.input?.find((i: any) => i.type === 'function_call_output');
  t.comment(`function_call_output the model got: ${JSON.stringify(output)}`);
  t.comment(trace(s.app));
});

t.test('the adapter offers the decisions the real request lists', { todo: 'the adapter always offers accept, acceptForSession, decline, cancel; 0.171.0 lists availableDecisions ["accept", {acceptWithExecpolicyAmendment}, "cancel"] for this command (the unlisted decline and acceptForSession are still honoured, see below)' }, async (t) => {
  const { s, task } = await approvalRun(t, 'cancel');
  const req = approvalRequest(s);
  const offered = (req.params.availableDecisions as unknown[]).filter((d): d is string => typeof d === 'string');
  t.comment(`availableDecisions: ${JSON.stringify(req.params.availableDecisions)}; the task offers ${JSON.stringify(task.meta.choices)}`);
  t.same(task.meta.choices, offered);
});

for (const decision of ['decline', 'acceptForSession'] as const) {
  t.test(`${decision}, which this request does not list: what the real server does`, async (t) => {
    const { s, alice, m } = await approvalRun(t, decision);
    const req = approvalRequest(s);
    const got = await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, 'a reply', 8000).then(
      () => 'replied',
      () => 'no reply within 8 s',
    );
    const answer = s.app.frames.find((f) => f.dir === 'out' && f.msg?.id === req.id && f.msg.method === undefined)?.msg;
    const after = s.app.frames.filter((f) => f.dir === 'in' && ['serverRequest/resolved', 'turn/completed', 'error'].includes(f.msg?.method)).map((f) => `${f.msg.method} ${JSON.stringify(f.msg.params.turn?.status ?? f.msg.params.error ?? '')}`);
    const output = s.model.responses()[1]?.body?.input?.find((i: any) => i.type === 'function_call_output');
    t.comment(`answered ${JSON.stringify(answer?.result)} → ${got}; then: ${after.join('; ')}; file: ${existsSync(join(s.cwd, 'approved.txt'))}; replies: ${JSON.stringify(repliesTo(alice.rpc, m.id).map((x) => x.body))}; the model got: ${JSON.stringify(output?.output)}`);
    t.same(answer?.result, { decision });
    t.equal(existsSync(join(s.cwd, 'approved.txt')), decision === 'acceptForSession', decision === 'decline' ? 'the command did not run' : 'the command ran');
    t.equal(got, 'replied', 'the sender still gets a reply');
  });
}
