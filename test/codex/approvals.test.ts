import t, { type Test } from 'tap';
import { codexCommands } from '../../adapters/codex/commands.js';
import { runCli } from '../../clients/cli/main.js';
import { saveIdentity } from '../../clients/cli/identity-store.js';
import { startFakeAppServer, type ApprovalKind } from '../fakes/codex-app-server.js';
import { appServerClient } from './app-server-client.js';
import { completeTurn, repliesTo, settle, setup, within, type Setup } from './harness.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Approval requests from the app-server become relay tasks for the sender of the turn; the
 * answer given through the relay (raw task calls or `agent-relay approve`) goes back to the
 * app-server in the v2 shape. Nothing is left unanswered.
 */

/** A running (held) turn started by alice's message, and alice's relay connection. */
async function turnFromAlice(t: Test, env: NodeJS.ProcessEnv = {}) {
  const s = await setup(t, { fake: { holdTurns: true }, env });
  const bridge = s.startBridge();
  const threadId = await s.ready();
  const alice = await s.sender('alice');
  const m = (await alice.rpc.call('message/send', { to: s.agentId, body: 'please build' })).message;
  await s.fake.waitFor(() => s.fake.activeTurnId(threadId) !== null, 5000, 'the turn');
  return { s, threadId, alice, m, logs: bridge.logs };
}

/** The approval task announced to `rpc` (a claimable message carrying a task id) not in `seen`; added to it. */
async function approvalTask(rpc: any, what = 'the approval task', seen = new Set<number>()): Promise<any> {
  let taskId: number | undefined;
  await waitFor(() => {
    taskId = rpc.messages().find((m: any) => m.taskId !== null && !seen.has(m.taskId))?.taskId;
    return taskId !== undefined;
  }, what);
  seen.add(taskId!);
  return (await rpc.call('task/get', { id: taskId })).task;
}

/** Run `agent-relay approve` in-process as the stored identity `as`. */
async function approve(s: Setup, as: { id: string; token: string }, taskId: number, decision: string): Promise<{ code: number; out: string[]; err: string[] }> {
  saveIdentity(s.home, { id: as.id, token: as.token, url: s.relay.url });
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(
    ['--url', s.relay.url, '--as', as.id, 'approve', String(taskId), decision],
    { out: (x) => out.push(x), err: (x) => err.push(x), isTTY: false, env: { AGENT_RELAY_HOME: s.home } },
    [codexCommands],
  );
  return { code, out, err };
}

const OFFERED = ['accept', 'acceptWithExecpolicyAmendment', 'cancel'];

t.test('commandExecution: becomes a codex.approval task for the sender offering the availableDecisions; claim + done "accept" answers {decision:"accept"}', async (t) => {
  const { s, threadId, alice, m } = await turnFromAlice(t);
  const handle = s.fake.requestApproval(threadId, 'commandExecution', { command: 'rm -rf build', reason: 'clean build' });
  const task = await approvalTask(alice.rpc);
  t.equal(task.target, 'alice', 'offered to the sender of the turn');
  t.equal(task.status, 'open');
  t.equal(task.title, 'Codex asks to run: rm -rf build', 'the title shows the plain command, not the shell string');
  t.match(task.body, /^Command: rm -rf build\nIn: .*\nRuns: \/bin\/bash -lc 'rm -rf build'\nReason: clean build\nAccept and always allow: commands starting rm -rf build\n/);
  t.match(task.body, /\n\nAnswer: agent-relay approve TASK_ID accept \| acceptWithExecpolicyAmendment \| cancel$/, 'the answer line lists the offered choices');
  t.match(task.meta, {
    kind: 'codex.approval',
    method: 'item/commandExecution/requestApproval',
    requestId: String(handle.requestId),
    threadId,
    command: "/bin/bash -lc 'rm -rf build'",
    plainCommand: 'rm -rf build',
    agentId: s.agentId,
  });
  t.same(task.meta.choices, OFFERED, 'choices: the availableDecisions by name');
  t.same(s.fake.answers, [], 'nothing answered before a person decides');

  const { claimToken } = await alice.rpc.call('task/claim', { id: task.id });
  await alice.rpc.call('task/update', { id: task.id, claimToken, status: 'done', note: 'accept' });
  const answer = await within(handle, 5000, null);
  t.ok(answer, 'answered');
  t.same(answer!.result, { decision: 'accept' });
  t.equal(answer!.decision, 'accept');
  t.same(s.fake.invalidAnswers, [], 'no refused answers (no v1 words)');
  await completeTurn(s.fake, threadId);
  await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, 'the turn goes on to its reply');
});

t.test("`agent-relay approve ID acceptWithExecpolicyAmendment` answers with the request's own amendment object", async (t) => {
  const { s, threadId, alice } = await turnFromAlice(t);
  const handle = s.fake.requestApproval(threadId, 'commandExecution', { command: 'touch x' });
  const task = await approvalTask(alice.rpc);
  const r = await approve(s, alice, task.id, 'acceptwithexecpolicyamendment');
  t.equal(r.code, 0, r.err.join('\n'));
  t.same((await within(handle, 5000, null))?.result, { decision: { acceptWithExecpolicyAmendment: { execpolicy_amendment: ['touch', 'x'] } } });
  t.same([s.fake.invalidAnswers, s.fake.unofferedAnswers], [[], []]);
});

t.test('`agent-relay approve` refuses a decision the task does not offer, naming the ones it does', async (t) => {
  const { s, threadId, alice } = await turnFromAlice(t);
  s.fake.requestApproval(threadId, 'commandExecution');
  const task = await approvalTask(alice.rpc);
  for (const word of ['decline', 'acceptForSession', 'approved']) {
    const r = await approve(s, alice, task.id, word);
    t.equal(r.code, 2, `${word}: exit 2`);
    t.match(r.err.join('\n'), `task #${task.id} offers accept, acceptWithExecpolicyAmendment, cancel; "${word}" is not one of them`);
  }
  await settle(300);
  t.same(s.fake.answers, [], 'nothing answered');
  t.equal((await alice.rpc.call('task/get', { id: task.id })).task.status, 'open');
});

t.test('a decision not offered, chosen on the relay side, is mapped to the closest offered one and logged, never sent raw', async (t) => {
  const { s, threadId, alice, m, logs } = await turnFromAlice(t);
  const cases: Array<{ close: { status: 'done' | 'failed'; note?: string }; sent: string }> = [
    { close: { status: 'done', note: 'acceptForSession' }, sent: 'accept' },
    { close: { status: 'failed' }, sent: 'cancel' }, // failed reads as decline: the only "no" offered is cancel
  ];
  const seen = new Set<number>();
  for (const c of cases) {
    const handle = s.fake.requestApproval(threadId, 'commandExecution', { command: 'touch y' });
    const task = await approvalTask(alice.rpc, 'the task', seen);
    const { claimToken } = await alice.rpc.call('task/claim', { id: task.id });
    await alice.rpc.call('task/update', { id: task.id, claimToken, ...c.close });
    t.same((await within(handle, 5000, null))?.result, { decision: c.sent }, `${JSON.stringify(c.close)} → ${c.sent}`);
  }
  t.same(s.fake.unofferedAnswers, [], 'no decision outside availableDecisions reached the server');
  t.match(
    logs.filter((l) => l.includes('not offered')),
    [
      /^warn: approval .*"acceptForSession" is not offered \(offered: accept, acceptWithExecpolicyAmendment, cancel\); answering "accept"/,
      /^warn: approval .*"decline" is not offered .*; answering "cancel"/,
    ],
    'each mapping logged',
  );
  t.same(s.fake.invalidAnswers, []);
  await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, 'cancel interrupted the turn: the sender is told');
  t.match(repliesTo(alice.rpc, m.id)[0]!.body, /interrupted/);
});

t.test('fileChange: `agent-relay approve ID acceptForSession` answers {decision:"acceptForSession"}', async (t) => {
  const { s, threadId, alice } = await turnFromAlice(t);
  const handle = s.fake.requestApproval(threadId, 'fileChange', { grantRoot: '/tmp/x' });
  const task = await approvalTask(alice.rpc);
  t.match(task.meta, { kind: 'codex.approval', method: 'item/fileChange/requestApproval' });
  const r = await approve(s, alice, task.id, 'acceptForSession');
  t.equal(r.code, 0, r.err.join('\n'));
  t.match(r.out.join('\n'), /acceptForSession/);
  const answer = await within(handle, 5000, null);
  t.same(answer?.result, { decision: 'acceptForSession' });
  t.equal((await alice.rpc.call('task/get', { id: task.id })).task.status, 'done');
});

t.test('an older Codex request (no availableDecisions): the four words offered; `agent-relay approve ID decline` answers {decision:"decline"}', async (t) => {
  const { s, threadId, alice } = await turnFromAlice(t);
  const handle = s.fake.requestApproval(threadId, 'commandExecution', { command: 'npm test', legacy: true });
  const task = await approvalTask(alice.rpc);
  t.same(task.meta.choices, ['accept', 'acceptForSession', 'decline', 'cancel']);
  t.equal(task.title, 'Codex asks to run: npm test');
  t.notMatch(task.body, /Runs:/, 'no shell string to show');
  t.match(task.body, /Answer: agent-relay approve TASK_ID accept \| acceptForSession \| decline \| cancel$/);
  const r = await approve(s, alice, task.id, 'decline');
  t.equal(r.code, 0, r.err.join('\n'));
  t.same((await within(handle, 5000, null))?.result, { decision: 'decline' });
});

t.test('`agent-relay approve ID cancel` answers {decision:"cancel"}: the turn is interrupted and the sender told', async (t) => {
  const { s, threadId, alice, m } = await turnFromAlice(t);
  const handle = s.fake.requestApproval(threadId, 'commandExecution');
  const task = await approvalTask(alice.rpc);
  const r = await approve(s, alice, task.id, 'cancel');
  t.equal(r.code, 0, r.err.join('\n'));
  t.same((await within(handle, 5000, null))?.result, { decision: 'cancel' });
  t.equal((await alice.rpc.call('task/get', { id: task.id })).task.status, 'canceled');
  await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, 'a reply saying the turn was interrupted');
  t.match(repliesTo(alice.rpc, m.id)[0]!.body, /interrupted/);
});

t.test('a bad decision word is a usage error and answers nothing', async (t) => {
  const { s, threadId, alice } = await turnFromAlice(t);
  s.fake.requestApproval(threadId, 'commandExecution');
  const task = await approvalTask(alice.rpc);
  const r = await approve(s, alice, task.id, 'approved');
  t.equal(r.code, 2, 'exit 2');
  t.match(r.err.join('\n'), /offers accept, acceptWithExecpolicyAmendment, cancel/);
  await settle(300);
  t.same(s.fake.answers, []);
  t.equal((await alice.rpc.call('task/get', { id: task.id })).task.status, 'open');
});

t.test('permissions: answered {permissions, scope} (turn for accept, session for acceptForSession), {permissions:{}} for decline', async (t) => {
  const { s, threadId, alice } = await turnFromAlice(t);
  const cases: Array<[string, unknown]> = [
    ['accept', { permissions: { fileSystem: { write: [s.fake.thread(threadId).cwd] } }, scope: 'turn' }],
    ['acceptForSession', { permissions: { fileSystem: { write: [s.fake.thread(threadId).cwd] } }, scope: 'session' }],
    ['decline', { permissions: {} }],
  ];
  const seen = new Set<number>();
  for (const [decision, expected] of cases) {
    const handle = s.fake.requestApproval(threadId, 'permissions');
    const task = await approvalTask(alice.rpc, `the ${decision} task`, seen);
    t.match(task.meta, { kind: 'codex.approval', method: 'item/permissions/requestApproval' });
    const r = await approve(s, alice, task.id, decision);
    t.equal(r.code, 0, r.err.join('\n'));
    t.same((await within(handle, 5000, null))?.result, expected, `${decision} → ${JSON.stringify(expected)}`);
  }
  t.same(s.fake.invalidAnswers, []);
});

for (const legacy of [true, false]) {
  t.test(`no answer within the timeout: refused with ${legacy ? 'decline (older Codex)' : 'cancel (0.171 offers no decline)'}, and the task is canceled`, async (t) => {
    const { s, threadId, alice } = await turnFromAlice(t, { CODEX_LIVE_APPROVAL_TIMEOUT_MS: '600' });
    const handle = s.fake.requestApproval(threadId, 'commandExecution', { legacy });
    const task = await approvalTask(alice.rpc);
    const answer = await within(handle, 8000, null);
    t.same(answer?.result, { decision: legacy ? 'decline' : 'cancel' });
    await waitFor(async () => (await alice.rpc.call('task/get', { id: task.id })).task.status === 'canceled', 'the task canceled');
    const got = await alice.rpc.call('task/get', { id: task.id });
    t.match(got.events.at(-1).data, { status: 'canceled', note: legacy ? 'no answer in time: declined' : 'no answer in time: cancel' });
    t.same([s.fake.invalidAnswers, s.fake.unofferedAnswers], [[], []]);
  });
}

t.test('answered by another client first: the task is canceled "answered in Codex" and a later relay answer is never sent', async (t) => {
  const { s, threadId, alice, m } = await turnFromAlice(t);
  const handle = s.fake.requestApproval(threadId, 'commandExecution');
  const task = await approvalTask(alice.rpc);
  // A second client (a person in the TUI) joins the thread: the pending request is replayed to it.
  const other = await appServerClient(t, s.fake.url);
  await other.conn.request('thread/resume', { threadId });
  await other.until(() => other.requests.length === 1, 'the replayed request on the other client');
  t.equal(other.requests[0]!.id, handle.requestId);
  other.conn.respond(handle.requestId, { decision: 'accept' });
  t.equal((await within(handle, 5000, null))?.conn, s.fake.connectionInfo().at(-1)!.id, 'the other client answered');
  await waitFor(async () => (await alice.rpc.call('task/get', { id: task.id })).task.status === 'canceled', 'the task closed');
  const got = await alice.rpc.call('task/get', { id: task.id });
  t.match(got.events.at(-1).data, { status: 'canceled', note: /answered in Codex/ });
  await t.rejects(alice.rpc.call('task/claim', { id: task.id }), 'a closed task cannot be answered any more');
  await completeTurn(s.fake, threadId);
  await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, 'the turn goes on to its reply');
  await settle(300);
  t.equal(s.fake.answers.length, 1, "one answer: the other client's");
  t.same(s.fake.invalidAnswers, [], 'the adapter sent no stale answer');
});

t.test('a pending approval whose turn is interrupted: resolved, the task canceled, nothing answered', async (t) => {
  const { s, threadId, alice } = await turnFromAlice(t);
  const handle = s.fake.requestApproval(threadId, 'commandExecution');
  const task = await approvalTask(alice.rpc);
  s.fake.interruptTurn(threadId);
  t.ok((await within(handle, 5000, null))?.cleared, 'the request died with its turn');
  await waitFor(async () => (await alice.rpc.call('task/get', { id: task.id })).task.status === 'canceled', 'the task closed');
  t.match((await alice.rpc.call('task/get', { id: task.id })).events.at(-1).data, { note: /answered in Codex/ });
  await settle(300);
  t.same([s.fake.answers, s.fake.invalidAnswers], [[], []]);
});

t.test('the approval target: CODEX_LIVE_APPROVAL_TARGET wins; a turn with no relay sender goes to it too', async (t) => {
  const s = await setup(t, { fake: { holdTurns: true }, env: { CODEX_LIVE_APPROVAL_TARGET: 'bob' } });
  s.startBridge();
  const threadId = await s.ready();
  const bob = await s.sender('bob');
  s.fake.startTurn(threadId, 'a human asked for something');
  const handle = s.fake.requestApproval(threadId, 'commandExecution');
  const task = await approvalTask(bob.rpc);
  t.equal(task.target, 'bob');
  const { claimToken } = await bob.rpc.call('task/claim', { id: task.id });
  await bob.rpc.call('task/update', { id: task.id, claimToken, status: 'done', note: 'accept' });
  t.same((await within(handle, 5000, null))?.result, { decision: 'accept' });
});

t.test('an unknown server request gets a JSON-RPC error; requestUserInput and elicitation are answered so the turn never stalls', async (t) => {
  const { s, threadId, alice, m } = await turnFromAlice(t);
  const unknown = await within(s.fake.requestApproval(threadId, 'unknown'), 5000, null);
  t.ok(unknown, 'answered, not silence');
  t.match(unknown!.error, { code: Number, message: /item\/fakeFuture\/requestSomething/ }, 'with an error naming the method');
  for (const kind of ['userInput', 'elicitation'] as ApprovalKind[]) {
    const a = await within(s.fake.requestApproval(threadId, kind), 5000, null);
    t.ok(a && !a.cleared, `${kind} answered`);
    t.equal(a?.error, undefined, `${kind}: a valid answer, not an error (the server would keep waiting)`);
  }
  t.same(s.fake.invalidAnswers, [], 'no answer refused');
  t.same(s.fake.pendingRequests(), [], 'nothing left pending');
  await completeTurn(s.fake, threadId);
  await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, 'the turn completes');
});

t.test('a pending approval survives an app-server drop: replayed on resume, answered once with the original id', async (t) => {
  const { s, threadId, alice, m } = await turnFromAlice(t);
  const handle = s.fake.requestApproval(threadId, 'commandExecution');
  const task = await approvalTask(alice.rpc);
  const conns = s.fake.totalConnections;
  await s.fake.dropConnections();
  await s.fake.waitFor(() => s.fake.totalConnections > conns && s.fake.subscribers(threadId).length > 0, 8000, 'the adapter to resume');
  const { claimToken } = await alice.rpc.call('task/claim', { id: task.id });
  await alice.rpc.call('task/update', { id: task.id, claimToken, status: 'done', note: 'accept' });
  const answer = await within(handle, 5000, null);
  t.same(answer?.result, { decision: 'accept' });
  t.equal(answer?.requestId, handle.requestId);
  await completeTurn(s.fake, threadId);
  await waitFor(() => repliesTo(alice.rpc, m.id).length === 1, 'the reply');
  await settle(300);
  t.equal(s.fake.answers.length, 1, 'answered once');
  t.same(s.fake.invalidAnswers, []);
  const tasks = alice.rpc.messages().filter((x: any) => x.taskId !== null);
  t.equal(tasks.length, 1, 'the replay did not create a second task');
});

t.test('an approval decided while the app-server is away is answered when the request is replayed', async (t) => {
  const { s, threadId, alice } = await turnFromAlice(t);
  const handle = s.fake.requestApproval(threadId, 'commandExecution');
  const task = await approvalTask(alice.rpc);
  await s.fake.stop();
  const { claimToken } = await alice.rpc.call('task/claim', { id: task.id });
  await alice.rpc.call('task/update', { id: task.id, claimToken, status: 'done', note: 'cancel' });
  await settle(300);
  await s.fake.restart();
  const answer = await within(handle, 8000, null);
  t.same(answer?.result, { decision: 'cancel' });
  t.same(s.fake.invalidAnswers, []);
});

t.test('a new app-server process reuses request ids: its request gets its own task, and the old task cannot answer it', async (t) => {
  const { s, threadId, alice } = await turnFromAlice(t);
  const old = s.fake.requestApproval(threadId, 'commandExecution', { command: 'echo old' });
  const oldTask = await approvalTask(alice.rpc, 'the first approval task');
  t.match(oldTask.title, /echo old/);
  // The app-server process dies with the request pending; a new one comes up on the same port.
  const port = s.fake.port;
  await s.fake.close();
  t.ok((await old).cleared, 'the old request died with its server');
  const fresh = await startFakeAppServer({ port, holdTurns: true, defaultCwd: '/nowhere' });
  t.teardown(() => fresh.close());
  let newThread = '';
  await fresh.waitFor(
    () => {
      newThread = fresh.threadIds().find((id) => fresh.activeTurnId(id) !== null) ?? '';
      return newThread !== '';
    },
    10_000,
    'the adapter to re-deliver into a thread of the new server',
  );
  const handle = fresh.requestApproval(newThread, 'commandExecution', { command: 'rm -rf /' });
  t.equal(handle.requestId, old.requestId, 'the new server numbers its requests from the same start');
  let newTask: any;
  await waitFor(async () => {
    const id = alice.rpc.messages().find((m: any) => m.taskId !== null && m.taskId !== oldTask.id)?.taskId;
    if (id === undefined) return false;
    newTask = (await alice.rpc.call('task/get', { id })).task;
    return true;
  }, 'a task of its own for the new request');
  t.match(newTask.title, /rm -rf \//, 'showing the new command');
  // Accepting the stale task must not approve the new command.
  const c1 = await alice.rpc.call('task/claim', { id: oldTask.id });
  await alice.rpc.call('task/update', { id: oldTask.id, claimToken: c1.claimToken, status: 'done', note: 'accept' });
  await settle(400);
  t.same(fresh.answers, [], 'the old decision did not answer the new request');
  const c2 = await alice.rpc.call('task/claim', { id: newTask.id });
  await alice.rpc.call('task/update', { id: newTask.id, claimToken: c2.claimToken, status: 'done', note: 'cancel' });
  t.same((await within(handle, 5000, null))?.result, { decision: 'cancel' }, 'its own task answers it');
  t.same(fresh.invalidAnswers, []);
});
