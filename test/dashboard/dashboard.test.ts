import t, { type Test } from 'tap';
import { chromium, type Browser, type BrowserContext, type Locator, type Page } from 'playwright-core';
import { answerLine, choicesOf, describeApproval } from '../../adapters/codex/approvals.js';
import { APPROVAL_TASK_KIND, DECISIONS } from '../../protocol/approvals.js';
import { decisionOf } from '../../adapters/codex/decisions.js';
import type { RelayEvent, Task } from '../../protocol/index.js';
import { startRelay, type TestRelay } from '../helpers/relay.js';
import { connectAgent, WsRpc } from '../helpers/ws-client.js';
import { waitFor } from '../helpers/wait.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';

/**
 * The dashboard in a real Chromium (Debian's, driven by playwright-core) against a real relay on
 * 127.0.0.1: what a person sees and does on the page, checked against what the relay and test agents
 * see. One browser for the file; every test gets its own relay and a fresh browser context (so its
 * own sessionStorage, hence its own operator agent).
 *
 * Waits are bounded locator waits with generous timeouts (never sleeps, never timing assertions),
 * except the issue's "an agent appears within a second", which waits at most 1000 ms after the
 * registration ack and reports the figure.
 *
 * Needs `npm run build` first (npm test runs it as pretest).
 */

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
// Without the background-networking flags Chromium keeps calling home on a closed network.
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
const WAIT = 10_000;
const DESKTOP = { width: 1280, height: 860 };

let browser: Browser;
t.before(async () => {
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
});
t.teardown(() => browser?.close());

interface OpenPage {
  page: Page;
  context: BrowserContext;
  /** console.error lines. */
  consoleErrors: string[];
  /** Uncaught exceptions and unhandled rejections in the page. */
  pageErrors: string[];
}

/** A fresh context and page (closed at teardown) with console errors and page errors collected. */
async function openPage(t: Test, url: string | null, opts: { viewport?: { width: number; height: number } } = {}): Promise<OpenPage> {
  const context = await browser.newContext({ viewport: opts.viewport ?? DESKTOP });
  t.teardown(() => context.close());
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  const consoleErrors: string[] = [];
  const pageErrors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  if (url) await page.goto(url);
  return { page, context, consoleErrors, pageErrors };
}

/** Open the dashboard and wait until its connection badge says live. */
async function openDashboard(t: Test, relay: { url: string }, opts: { viewport?: { width: number; height: number } } = {}): Promise<OpenPage> {
  const p = await openPage(t, relay.url, opts);
  await live(p.page);
  return p;
}

/**
 * Until the page's connection is live. 30 s: three CI runs (d399efa, 2026-12-03 twice) waited past
 * 10 s for it now and then, after a reload or on a fresh page, and never alone; cause not found.
 * A timeout says what the page showed instead.
 */
async function live(page: Page, timeout = 3 * WAIT): Promise<void> {
  const conn = page.locator('.conn[data-state="live"]');
  try {
    await conn.waitFor({ timeout });
  } catch (err) {
    const shown = await page
      .locator('.conn')
      .evaluateAll((els) => els.map((e) => `${e.getAttribute('data-state')}: ${e.textContent ?? ''}`))
      .catch(() => []);
    throw new Error(`the page was not live after ${timeout} ms; its connection indicator: ${JSON.stringify(shown)} (${(err as Error).message.split('\n')[0]})`);
  }
}

const agentRow = (page: Page, id: string): Locator => page.locator(`li.agent[data-agent-id="${id}"]`);
const taskCard = (page: Page, id: number, status?: string): Locator => page.locator(`${status ? `.column[data-status="${status}"] ` : ''}li.task[data-task-id="${id}"]`);
const messageRow = (page: Page, id: number): Locator => page.locator(`li.message[data-message-id="${id}"]`);
const progressOf = (card: Locator, value: number): Locator => card.locator(`[role="progressbar"][aria-valuenow="${value}"]`);

async function http(relay: { url: string }, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: any }> {
  const res = await fetch(relay.url + path, {
    method,
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null };
}

/** task/get over a WebSocket of the test (the relay's view, not the page's). */
async function taskGet(rpc: WsRpc, id: number): Promise<{ task: Task; events: RelayEvent[] }> {
  return rpc.call('task/get', { id });
}

t.test('the page loads, connects live and logs no console error', async (t) => {
  const relay = await startRelay(t);
  const { page, consoleErrors, pageErrors } = await openPage(t, relay.url);
  await live(page);
  t.equal(await page.title(), 'Agent Relay');
  for (const name of ['Agents', 'Messages', 'Tasks']) {
    t.ok(await page.getByRole('heading', { level: 2, name: new RegExp(`^${name}`) }).isVisible(), `${name} panel shown`);
  }
  t.equal(await page.locator('.conn').textContent(), 'live', 'badge says live');
  // A full round trip after load (notification → store → render) before judging the console.
  await connectAgent(t, relay.wsUrl, { id: 'probe' });
  await agentRow(page, 'probe').waitFor();
  t.same(consoleErrors, [], 'no console.error');
  t.same(pageErrors, [], 'no uncaught error');
});

t.test('an agent registered by a test client appears within a second and goes offline once its socket is gone for the stale TTL', async (t) => {
  const relay = await startRelay(t, { staleTtlMs: 1000, presenceIntervalMs: 200 });
  const { page, consoleErrors, pageErrors } = await openDashboard(t, relay);

  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice', label: 'Alice', tags: ['dev'], capabilities: ['build'], client: 'codex', host: 'box-1', cwd: '/src/app' });
  const acked = performance.now();
  await agentRow(page, 'alice').waitFor({ timeout: 1000 });
  const appearMs = performance.now() - acked;
  t.pass(`alice shown ${appearMs.toFixed(0)} ms after the registration ack (bound 1000 ms)`);
  const row = agentRow(page, 'alice');
  t.equal(await row.getByTestId('agent-status').textContent(), 'online');
  t.match(await row.textContent(), /Alice.*codex.*#dev.*build.*box-1 · \/src\/app/s, 'label, client, tag, capability, host and cwd shown');
  t.equal(await page.locator('#agents-h .count').textContent(), '1');

  // Closing the socket is not leaving: the agent stays online until the stale TTL runs out.
  await alice.rpc.close();
  const closed = performance.now();
  await page.locator('li.agent.offline[data-agent-id="alice"]').waitFor({ timeout: WAIT });
  t.comment(`alice shown offline ${(performance.now() - closed).toFixed(0)} ms after its socket closed (staleTtlMs 1000, presenceIntervalMs 200)`);
  t.equal(await row.getByTestId('agent-status').textContent(), 'offline');
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const offline = (await observer.call('event/list', { kind: 'agent.offline' })).events as RelayEvent[];
  t.match(offline, [{ agentId: 'alice', data: { reason: /^stale/ } }], 'it went offline by the stale TTL, not by leaving');
  t.same([consoleErrors, pageErrors], [[], []], 'no console or page error');
});

t.test('the leases panel lists leases in force (holder, resources, mode, reason, expires in) and follows them live', async (t) => {
  const relay = await startRelay(t);
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const before = await alice.rpc.call('lease/acquire', { resources: ['src/auth/**', 'db:migrations'], ttlMs: 600_000, reason: 'login rewrite' });
  const { page, consoleErrors, pageErrors } = await openDashboard(t, relay);
  const row = (id: number) => page.locator(`.leases-panel tr[data-lease-id="${id}"]`);
  await row(before.lease.id).waitFor();
  t.match(await row(before.lease.id).textContent(), /alice.*src\/auth\/\*\*.*db:migrations.*exclusive.*login rewrite.*(10m 0s|9m 5\ds)/, 'a lease held before the page opened, from lease/list');

  const live = await bob.rpc.call('lease/acquire', { resources: ['docs/**'], mode: 'shared', ttlMs: 30_000 });
  await row(live.lease.id).waitFor();
  t.match(await row(live.lease.id).textContent(), /bob.*docs\/\*\*.*shared.*(30s|29s)/, 'a new lease appears live');
  t.equal(await page.locator('#leases-h .count').textContent(), '2');

  await alice.rpc.call('lease/release', { leaseId: before.lease.id, token: before.token });
  await row(before.lease.id).waitFor({ state: 'detached' });
  t.equal(await page.locator('#leases-h .count').textContent(), '1', 'a released lease leaves the panel');
  t.same([consoleErrors, pageErrors], [[], []], 'no console or page error');
});

t.test('every agent is shown when agent/list answers in several pages', async (t) => {
  const relay = await startRelay(t);
  // 90 agents of 16 KiB meta pass agent/list's 1 MiB page budget: the page must follow nextCursor.
  const rpc = await WsRpc.connect(t, relay.wsUrl);
  const meta = { blob: 'm'.repeat(16 * 1024 - 20) };
  for (let i = 0; i < 90; i++) await rpc.call('agent/register', { id: `paged-${String(i).padStart(2, '0')}`, meta });
  t.ok((await rpc.call('agent/list', { limit: 1000 })).nextCursor, 'the relay answers in pages');
  const { page } = await openDashboard(t, relay);
  await agentRow(page, 'paged-89').waitFor({ timeout: WAIT });
  t.equal(await page.locator('#agents-h .count').textContent(), '90', 'all 90 counted');
});

t.test('a message sent from the page reaches a test client, and its reply shows in the thread view', async (t) => {
  const relay = await startRelay(t);
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  const { page, consoleErrors, pageErrors } = await openDashboard(t, relay);

  const composer = page.getByRole('form', { name: 'Send a message' });
  await composer.getByLabel('To').fill('alice');
  await composer.getByLabel('Message').fill('hello from the page');
  await composer.getByRole('button', { name: 'Send' }).click();
  await alice.rpc.until(() => alice.rpc.messages().some((m) => m.body === 'hello from the page'), WAIT, 'the page message at alice');
  const sent = alice.rpc.messages().find((m) => m.body === 'hello from the page')!;
  t.match(sent, { from: 'ext:dashboard', to: 'alice', replyTo: null }, 'sent as ext:dashboard');
  await messageRow(page, sent.id).waitFor();
  t.equal(await composer.getByLabel('Message').inputValue(), '', 'composer cleared after sending');

  const reply = (await alice.rpc.call('message/send', { to: 'ext:dashboard', body: 'hi, dashboard', replyTo: sent.id })).message;
  await messageRow(page, reply.id).waitFor();
  await messageRow(page, sent.id).getByRole('button').click();
  const drawer = page.getByRole('complementary', { name: `Thread of message ${sent.threadId}` });
  await drawer.locator(`.thread li[data-message-id="${reply.id}"]`).filter({ hasText: 'hi, dashboard' }).waitFor();
  t.same(await drawer.locator('.thread li').evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-message-id')))), [sent.id, reply.id], 'the thread: the page message, then the reply');
  t.match(await drawer.locator(`.thread li[data-message-id="${reply.id}"] .meta`).textContent(), /alice → ext:dashboard/);

  // Answering in the thread goes back to alice as a reply to her message.
  const replyForm = drawer.getByRole('form', { name: 'Reply in thread' });
  t.equal(await replyForm.getByLabel('To').inputValue(), 'alice', 'the reply is addressed to the last sender');
  await replyForm.getByLabel('Message').fill('thanks, alice');
  await replyForm.getByRole('button', { name: 'Reply' }).click();
  await alice.rpc.until(() => alice.rpc.messages().some((m) => m.body === 'thanks, alice'), WAIT, 'the thread reply at alice');
  const answer = alice.rpc.messages().find((m) => m.body === 'thanks, alice')!;
  t.match(answer, { from: 'ext:dashboard', replyTo: reply.id, threadId: sent.threadId });
  await drawer.locator(`.thread li[data-message-id="${answer.id}"]`).waitFor();
  await drawer.getByRole('button', { name: 'Close thread' }).click();
  await drawer.waitFor({ state: 'detached' });
  t.same([consoleErrors, pageErrors], [[], []], 'no console or page error');
});

t.test('the search box finds a message by its words, marks them, and a hit opens its thread', async (t) => {
  const relay = await startRelay(t);
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const hit = (await alice.rpc.call('message/send', { to: 'bob', body: 'the nightly canary rollout stalled at 40%' })).message;
  await alice.rpc.call('message/send', { to: 'bob', body: 'lunch is ready' });
  const { page, consoleErrors, pageErrors } = await openDashboard(t, relay);

  const box = page.getByRole('search');
  await box.getByLabel('Search messages').fill('canary rollout');
  await box.getByLabel('Search messages').press('Enter');
  const results = page.getByRole('list', { name: 'Search results' });
  await results.locator(`li[data-message-id="${hit.id}"]`).waitFor();
  t.equal(await results.locator('li[data-message-id]').count(), 1, 'one hit: the message with both words');
  t.same(await results.locator('mark').allTextContents(), ['canary', 'rollout'], 'the matched words are marked');
  t.match(await results.locator(`li[data-message-id="${hit.id}"] .meta`).textContent(), /alice → bob/, 'sender and recipient');
  await results.getByRole('button', { name: `Search hit: message ${hit.id} from alice: open its thread` }).click();
  const drawer = page.getByRole('complementary', { name: `Thread of message ${hit.threadId}` });
  await drawer.locator(`.thread li[data-message-id="${hit.id}"]`).waitFor();
  await drawer.getByRole('button', { name: 'Close thread' }).click();

  await box.getByLabel('Search messages').fill('nothingmatches');
  await box.getByLabel('Search messages').press('Enter');
  await results.getByText('no messages found').waitFor();
  await box.getByRole('button', { name: 'Clear search' }).click();
  await results.waitFor({ state: 'detached' });
  t.same([consoleErrors, pageErrors], [[], []], 'no console or page error');
});

t.test('a label edited on the page is stored by the relay and still there after a reload', async (t) => {
  const relay = await startRelay(t);
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob', label: 'bob' });
  const { page, consoleErrors, pageErrors } = await openDashboard(t, relay);

  await page.getByRole('button', { name: 'Edit label of bob' }).click();
  await page.getByLabel('Label of bob').fill('Build bot');
  await agentRow(page, 'bob').getByRole('button', { name: 'Save' }).click();
  await page.getByRole('button', { name: 'Edit label of bob' }).filter({ hasText: 'Build bot' }).waitFor();
  const list = await bob.rpc.call('agent/list', {});
  t.equal(list.agents.find((a: { id: string }) => a.id === 'bob').label, 'Build bot', 'the relay has the new label');

  await page.reload();
  // A reload reconnects from scratch. In two fresh-clone CI runs (coverage on, another file beside
  // it) it took more than 10 s, and never alone; the cause is not found yet, so this wait is longer.
  await live(page);
  await page.getByRole('button', { name: 'Edit label of bob' }).filter({ hasText: 'Build bot' }).waitFor();
  t.pass('label shown after a reload');

  // Escape leaves the label as it was.
  await page.getByRole('button', { name: 'Edit label of bob' }).click();
  await page.getByLabel('Label of bob').fill('nope');
  await page.getByLabel('Label of bob').press('Escape');
  await page.getByRole('button', { name: 'Edit label of bob' }).filter({ hasText: 'Build bot' }).waitFor();
  t.same([consoleErrors, pageErrors], [[], []], 'no console or page error');
});

t.test('a task created over HTTP appears, is claimed from the page, and the board follows its progress', async (t) => {
  const relay = await startRelay(t);
  const worker = await connectAgent(t, relay.wsUrl, { id: 'worker' });
  const { page, consoleErrors, pageErrors } = await openDashboard(t, relay);

  const created = await http(relay, 'POST', '/api/tasks', { title: 'Deploy v2', body: 'roll out v2 to staging', target: 'broadcast', from: 'ext:ci' });
  t.equal(created.status, 201);
  const id = created.json.task.id as number;
  await taskCard(page, id, 'open').waitFor();
  t.match(await taskCard(page, id).textContent(), /#\d+ Deploy v2.*unclaimed · ext:ci/s);

  await taskCard(page, id).getByRole('button').click();
  const drawer = page.getByRole('complementary', { name: `Task ${id}` });
  await drawer.getByRole('button', { name: 'Claim' }).click();
  await taskCard(page, id, 'claimed').waitFor();
  const operator = JSON.parse((await page.evaluate(() => sessionStorage.getItem('agent-relay.operator'))) ?? 'null') as { id: string } | null;
  t.match(operator?.id, /^operator-[a-z0-9]{6}$/, 'the tab has its operator agent');
  t.equal((await taskGet(worker.rpc, id)).task.claimedBy, operator!.id, 'the relay has the operator as owner');
  await drawer.getByText(`owner ${operator!.id}`).waitFor();
  await agentRow(page, operator!.id).waitFor();

  // Progress from the page: the operator owns the task now.
  for (const value of [40, 70]) {
    await drawer.getByLabel('Progress percent').fill(String(value));
    await drawer.getByRole('button', { name: 'Update', exact: true }).click();
    await progressOf(taskCard(page, id, 'in_progress'), value).waitFor();
  }
  t.pass('board progress bar followed 40 → 70 set from the page');
  t.match(
    (await taskGet(worker.rpc, id)).events.map((e) => [e.kind, e.data.progress ?? null]),
    [
      ['task.created', null],
      ['task.claimed', null],
      ['task.updated', 40],
      ['task.updated', 70],
    ],
  );
  await drawer.getByRole('button', { name: 'Done', exact: true }).click();
  await progressOf(taskCard(page, id, 'done'), 100).waitFor();
  await drawer.getByRole('button', { name: 'Close task' }).click();

  // Progress from a test agent that owns another task, over its WebSocket.
  const second = (await http(relay, 'POST', '/api/tasks', { title: 'Run the migration', target: 'worker', from: 'ext:ci' })).json.task.id as number;
  await taskCard(page, second, 'open').waitFor();
  const announced = (await taskGet(worker.rpc, second)).task.messageId!;
  t.equal(await messageRow(page, announced).locator('.body').textContent(), 'Run the migration', 'a bodiless task’s announcement shows its title once');
  const { claimToken } = await worker.rpc.call('task/claim', { id: second });
  await taskCard(page, second, 'claimed').waitFor();
  const seen: number[] = [];
  for (const progress of [10, 35, 80]) {
    await worker.rpc.call('task/update', { id: second, claimToken, status: 'in_progress', progress });
    await progressOf(taskCard(page, second, 'in_progress'), progress).waitFor();
    seen.push(Number(await taskCard(page, second).getByRole('progressbar').getAttribute('aria-valuenow')));
  }
  t.same(seen, [10, 35, 80], 'board progress bar followed the owner’s updates');
  await worker.rpc.call('task/update', { id: second, claimToken, status: 'done' });
  await progressOf(taskCard(page, second, 'done'), 100).waitFor();
  t.equal(await page.locator('.column[data-status="done"] h3 .count').textContent(), '2');
  t.same([consoleErrors, pageErrors], [[], []], 'no console or page error');
});

t.test('a Codex approval is answered from the page: Accept ends the task done with note accept', async (t) => {
  const relay = await startRelay(t);
  const codex = await connectAgent(t, relay.wsUrl, { id: 'codex-alpha', client: 'codex' });
  const { page, consoleErrors, pageErrors } = await openDashboard(t, relay);

  // The task adapters/codex/approval-desk.ts (ApprovalDesk.createTask) makes of a command approval request.
  const approval = async (n: number, command: string) => {
    const params = { threadId: 'thread-1', turnId: 'turn-1', itemId: `item-${n}`, command, cwd: '/src/app', reason: null };
    const { title, body } = describeApproval({ id: n, method: 'item/commandExecution/requestApproval', params });
    const r = await codex.rpc.call('task/create', {
      title,
      body: `${body}\n\n${answerLine(DECISIONS)}`,
      target: 'broadcast',
      dedupeKey: `codex-approval:thread-1:${n}`,
      meta: {
        kind: APPROVAL_TASK_KIND,
        method: 'item/commandExecution/requestApproval',
        requestId: String(n),
        threadId: 'thread-1',
        turnId: 'turn-1',
        command,
        cwd: '/src/app',
        reason: null,
        choices: [...DECISIONS],
        agentId: 'codex-alpha',
      },
    });
    return r.task.id as number;
  };
  const ids = { accept: await approval(1, 'npm test'), decline: await approval(2, 'rm -rf build'), cancel: await approval(3, 'git push') };
  // As 0.171.0 asks: the shell string, the plain command in commandActions, and three choices.
  const real = {
    id: 4,
    method: 'item/commandExecution/requestApproval',
    params: {
      threadId: 'thread-1',
      turnId: 'turn-2',
      itemId: 'call_4',
      command: "/bin/bash -lc 'touch x'",
      cwd: '/src/app',
      commandActions: [{ type: 'unknown', command: 'touch x' }],
      availableDecisions: ['accept', { acceptWithExecpolicyAmendment: { execpolicy_amendment: ['touch', 'x'] } }, 'cancel'],
    },
  };
  const described = describeApproval(real);
  const amended = (
    await codex.rpc.call('task/create', {
      ...described,
      body: `${described.body}\n\n${answerLine(choicesOf(real))}`,
      target: 'broadcast',
      meta: { kind: APPROVAL_TASK_KIND, method: real.method, requestId: '4', threadId: 'thread-1', turnId: 'turn-2', command: real.params.command, choices: choicesOf(real), agentId: 'codex-alpha' },
    })
  ).task.id as number;

  const card = (id: number) => page.locator(`section.approvals li.approval[data-task-id="${id}"]`);
  for (const id of [...Object.values(ids), amended]) await card(id).waitFor();
  t.equal(await page.locator('#approvals-h .count').textContent(), '4');
  t.same(await card(ids.accept).getByRole('button').allTextContents(), ['Accept', 'Accept for session', 'Decline', 'Cancel turn'], 'an older request: the four words');
  t.same(await card(amended).getByRole('button').allTextContents(), ['Accept', 'Accept and always allow', 'Cancel turn'], 'only the choices the task offers');
  t.match(await card(amended).textContent(), /Codex asks to run: touch x.*Command: touch x\nIn: \/src\/app\nRuns: \/bin\/bash -lc 'touch x'/s);
  await card(amended).getByRole('button', { name: 'Accept and always allow' }).click();
  await card(amended).waitFor({ state: 'detached' });
  const closed = await taskGet(codex.rpc, amended);
  t.equal(closed.task.status, 'done');
  t.equal(decisionOf(closed.task, closed.events.filter((e) => e.kind === 'task.closed').at(-1)!), 'acceptWithExecpolicyAmendment', 'the adapter reads the chosen word');
  t.match(await card(ids.accept).textContent(), /Codex asks to run: npm test.*Command: npm test\nIn: \/src\/app.*from codex-alpha/s);
  t.notMatch(await card(ids.accept).textContent(), /Answer:/, 'the CLI hint is not shown');
  t.equal(await taskCard(page, ids.accept).count(), 0, 'a pending approval is not on the board');

  await card(ids.accept).getByRole('button', { name: 'Accept', exact: true }).click();
  await card(ids.accept).waitFor({ state: 'detached' });
  await card(ids.decline).getByRole('button', { name: 'Decline' }).click();
  await card(ids.decline).waitFor({ state: 'detached' });
  await card(ids.cancel).getByRole('button', { name: 'Cancel turn' }).click();
  await page.locator('section.approvals').waitFor({ state: 'detached' });

  const expected = { accept: 'done', decline: 'done', cancel: 'canceled' } as const;
  for (const [decision, id] of Object.entries(ids) as Array<[keyof typeof ids, number]>) {
    const { task, events } = await taskGet(codex.rpc, id);
    const closing = events.filter((e) => e.kind === 'task.closed').at(-1)!;
    t.equal(task.status, expected[decision], `${decision}: task ${task.status}`);
    t.equal(closing.data.note, decision, `${decision}: note ${decision}`);
    t.equal(decisionOf(task, closing), decision, `${decision}: the Codex adapter reads it as ${decision}`);
    await taskCard(page, id, expected[decision]).waitFor();
  }
  const accepted = await taskGet(codex.rpc, ids.accept);
  t.match(accepted.task.claimedBy, /^operator-/, 'accepted by the tab’s operator agent');
  t.same([consoleErrors, pageErrors], [[], []], 'no console or page error');
});

t.test('after a relay restart the page reconnects and catches up without a reload', async (t) => {
  const dir = t.testdir();
  const proxy = await startTcpProxy(t);
  const origin = `http://127.0.0.1:${proxy.port}`;
  // The page's origin is the proxy's: the relay must accept it (as behind any reverse proxy).
  const overrides = { allowedOrigins: [origin] };
  let relay: TestRelay = await startRelay(t, overrides, { dir });
  proxy.retarget(relay.port);
  await connectAgent(t, relay.wsUrl, { id: 'bob' }).then((b) => b.rpc.close());
  const send = async (body: string) => (await http(relay, 'POST', '/api/messages', { to: 'bob', body, from: 'ext:ci' })).json.message.id as number;

  const { page, pageErrors, consoleErrors } = await openPage(t, `${origin}/`);
  await live(page);
  await page.evaluate(() => {
    (window as any).__notReloaded = true;
    const states: string[] = [document.querySelector('.conn')!.getAttribute('data-state')!];
    (window as any).__states = states;
    new MutationObserver(() => {
      const s = document.querySelector('.conn')?.getAttribute('data-state');
      if (s && s !== states.at(-1)) states.push(s);
    }).observe(document.body, { subtree: true, attributes: true, attributeFilter: ['data-state'] });
  });
  const before = await send('before the restart');
  await messageRow(page, before).waitFor();

  // Down: the page notices and keeps trying; the proxy keeps refusing it while the relay comes back.
  proxy.pause(true);
  await relay.close();
  await page.locator('.conn[data-state="reconnecting"]').waitFor();
  relay = await startRelay(t, overrides, { dir });
  const whileAway = await send('sent after the restart, before the page is back');
  const created = (await http(relay, 'POST', '/api/tasks', { title: 'created while the page was away', target: 'bob', from: 'ext:ci' })).json.task as Task;
  const task = created.id;
  const carol = await connectAgent(t, relay.wsUrl, { id: 'carol' });
  t.equal(await page.locator('.conn').getAttribute('data-state'), 'reconnecting', 'still reconnecting while the proxy refuses');
  t.equal(await messageRow(page, whileAway).count(), 0, 'not shown before the page is back');

  proxy.retarget(relay.port);
  proxy.pause(false);
  await page.locator('.conn[data-state="live"]').waitFor({ timeout: 15_000 });
  await messageRow(page, whileAway).waitFor();
  await taskCard(page, task, 'open').waitFor();
  await agentRow(page, 'carol').waitFor();
  const after = await send('sent after the page is back');
  await messageRow(page, after).waitFor();
  const fromCarol = (await carol.rpc.call('message/send', { to: 'bob', body: 'from carol, live' })).message.id as number;
  await messageRow(page, fromCarol).waitFor();

  t.same(
    await page.locator('li.message').evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-message-id')))),
    [before, whileAway, created.messageId, after, fromCarol],
    'every message once, in order (the task’s announcement included)',
  );
  t.ok(await page.evaluate(() => (window as any).__notReloaded === true), 'no reload happened');
  const states = (await page.evaluate(() => (window as any).__states)) as string[];
  t.same(states, ['live', 'reconnecting', 'live'], 'badge went live → reconnecting → live');
  t.same(pageErrors, [], 'no uncaught error');
  // The only console errors are Chromium's own reports of refused WebSocket attempts.
  t.same(
    consoleErrors.filter((e) => !/WebSocket connection to .* failed/.test(e)),
    [],
    'no console error other than refused reconnect attempts',
  );
});

t.test('with a relay token the page asks for it, refuses a wrong one and connects with the right one', async (t) => {
  const TOKEN = 'dashboard-test-token-0123456789';
  const relay = await startRelay(t, { token: TOKEN });
  const auth = { authorization: `Bearer ${TOKEN}` };

  t.test('the page itself is served without the token (it holds no data; it asks for the token)', async (t) => {
    const res = await fetch(`${relay.url}/`);
    t.equal(res.status, 200, 'GET / without the token');
    t.match(res.headers.get('content-type'), /^text\/html/);
    const api = await fetch(`${relay.url}/api/agents`);
    t.equal(api.status, 401, 'while the data stays behind the token');
  });

  t.test('the gate', async (t) => {
    const { page, pageErrors } = await openPage(t, null);
    await page.goto(relay.url);
    const input = page.getByLabel('Relay token');
    await input.waitFor();
    t.ok(await page.getByText('This relay needs its token (AGENT_RELAY_TOKEN).').isVisible(), 'the page asks for the token');

    for (const attempt of [1, 2]) {
      await input.fill('wrong-token-wrong-token');
      await page.getByRole('button', { name: 'Connect' }).click();
      await page.getByText('That token was refused.').waitFor();
      t.pass(`wrong token refused (attempt ${attempt})`);
    }
    await input.fill(TOKEN);
    await page.getByRole('button', { name: 'Connect' }).click();
    await live(page);
    const rpc = await WsRpc.connect(t, relay.wsUrl, { headers: auth });
    await rpc.call('agent/register', { id: 'alice' });
    await agentRow(page, 'alice').waitFor();
    t.pass('connected with the right token: live, agents shown');

    await page.reload();
    await live(page);
    t.equal(await input.count(), 0, 'the token is kept for the tab: no second question after a reload');
    t.same(pageErrors, [], 'no uncaught error');
  });
});

t.test('static assets: content types, caching and security headers', async (t) => {
  const relay = await startRelay(t);
  const index = await fetch(`${relay.url}/`);
  const html = await index.text();
  t.equal(index.status, 200);
  t.equal(index.headers.get('content-type'), 'text/html; charset=utf-8');
  t.equal(index.headers.get('cache-control'), 'no-cache', 'index is revalidated: it names the current bundles');
  t.match(index.headers.get('content-security-policy'), /default-src 'self'.*script-src 'self'/);
  t.equal(index.headers.get('x-content-type-options'), 'nosniff');
  const js = /src="\/assets\/(app-[A-Z0-9]+\.js)"/.exec(html)?.[1];
  const css = /href="\/assets\/(style-[A-Z0-9]+\.css)"/.exec(html)?.[1];
  t.ok(js && css, `index names hashed bundles (${js}, ${css})`);

  for (const [name, type] of [
    [js!, 'text/javascript; charset=utf-8'],
    [css!, 'text/css; charset=utf-8'],
    [`${js!}.map`, 'application/json; charset=utf-8'],
  ] as const) {
    const res = await fetch(`${relay.url}/assets/${name}`);
    t.equal(res.status, 200, name);
    t.equal(res.headers.get('content-type'), type, `${name}: ${type}`);
    t.equal(res.headers.get('cache-control'), 'public, max-age=31536000, immutable', `${name}: immutable for a year`);
    t.equal(res.headers.get('x-content-type-options'), 'nosniff');
    t.ok((await res.arrayBuffer()).byteLength > 0);
  }
  const head = await fetch(`${relay.url}/`, { method: 'HEAD' });
  t.equal(head.status, 200);
  t.equal((await head.text()).length, 0, 'HEAD has no body');
  t.equal((await fetch(`${relay.url}/index.html`)).headers.get('cache-control'), 'no-cache');
  t.equal((await fetch(`${relay.url}/assets/app-NOTTHERE.js`)).status, 404, 'unknown asset: 404');
  t.equal((await fetch(`${relay.url}/assets/..%2Fdashboard.ts`)).status, 404, 'no path tricks');

  // The browser loads them under the CSP with nothing refused.
  const { page, consoleErrors, pageErrors } = await openDashboard(t, relay);
  const loaded = await page.evaluate(() => performance.getEntriesByType('resource').map((e) => new URL(e.name).pathname));
  t.ok(loaded.includes(`/assets/${js}`) && loaded.includes(`/assets/${css}`), 'both bundles loaded');
  t.same([consoleErrors, pageErrors], [[], []], 'no console or page error (no CSP refusal)');
});

t.test('1,000 messages: only a window of rows is in the DOM, and scrolling reaches the newest', async (t) => {
  const relay = await startRelay(t);
  const sink = await connectAgent(t, relay.wsUrl, { id: 'sink' });
  const loader = await connectAgent(t, relay.wsUrl, { id: 'loader' });
  const { page, consoleErrors, pageErrors } = await openDashboard(t, relay);

  const ids: number[] = [];
  for (let batch = 0; batch < 10; batch++) {
    const sent = await Promise.all(Array.from({ length: 100 }, (_, i) => loader.rpc.call('message/send', { to: 'sink', body: `load ${batch * 100 + i + 1}` })));
    ids.push(...sent.map((r) => r.message.id as number));
  }
  ids.sort((a, b) => a - b);
  const [oldest, newest] = [ids[0]!, ids.at(-1)!];
  await page
    .locator('#messages-h .count')
    .filter({ hasText: /^1000$/ })
    .waitFor();
  const scroller = page.locator('.messages-panel .scroller');

  // Stuck to the bottom while they arrived: the newest is rendered and in view.
  await messageRow(page, newest).waitFor();
  const rendered = await page.locator('li.message').count();
  t.ok(rendered > 0 && rendered < 100, `${rendered} rows in the DOM for 1,000 messages`);
  t.ok(await inView(scroller, messageRow(page, newest)), 'the newest is in view');

  // To the top: the oldest, and still only a window.
  await scroller.evaluate((el) => (el.scrollTop = 0));
  await messageRow(page, oldest).waitFor();
  t.equal(await messageRow(page, newest).count(), 0, 'the newest left the DOM');
  t.ok((await page.locator('li.message').count()) < 100, 'still a window at the top');

  // Back down with the wheel, as a person would.
  await scroller.hover();
  await waitFor(async () => {
    await page.mouse.wheel(0, 20_000);
    return (await messageRow(page, newest).count()) === 1;
  }, 'the newest after scrolling down');
  await waitFor(() => inView(scroller, messageRow(page, newest)), 'the newest in view');
  t.ok((await page.locator('li.message').count()) < 100, 'still a window at the bottom');
  t.match(await messageRow(page, newest).textContent(), /loader → sink.*load \d+/s);
  await sink.rpc.until(() => sink.rpc.messages().length === 1000, WAIT, 'all 1,000 at sink');
  t.same([consoleErrors, pageErrors], [[], []], 'no console or page error');
});

/** True when `row` lies within the visible part of `scroller`. */
async function inView(scroller: Locator, row: Locator): Promise<boolean> {
  const [box, r] = await Promise.all([scroller.boundingBox(), row.boundingBox()]);
  return Boolean(box && r && r.y >= box.y - 1 && r.y + r.height <= box.y + box.height + 1);
}
