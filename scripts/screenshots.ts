// Screenshots of the dashboard for the README and docs/: starts its own relay (in-process, temporary
// database, ephemeral 127.0.0.1 port), seeds agents, messages, tasks (one with callback deliveries and
// a dead letter) and a pending Codex approval, then drives Debian's Chromium through playwright-core and
// writes docs/dashboard.png (1280×860), docs/dashboard-thread.png, docs/dashboard-task.png and
// docs/dashboard-phone.png (390×844).
//
//   npm run build && npx tsx scripts/screenshots.ts        (CHROMIUM_PATH overrides /usr/bin/chromium)
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { chromium, type Page } from 'playwright-core';
import { answerLine, describeApproval } from '../adapters/codex/approvals.js';
import { APPROVAL_TASK_KIND, DECISIONS } from '../protocol/approvals.js';
import { loadConfig } from '../broker/config.js';
import { createLogger } from '../broker/logger.js';
import { createRelay } from '../broker/relay.js';
import { createRelayClient, type RelayClient } from '../clients/index.js';

const DOCS = fileURLToPath(new URL('../docs/', import.meta.url));
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

const dir = mkdtempSync(join(tmpdir(), 'relay-shots-'));
const quiet = new Writable({ write: (_c, _e, cb) => cb() });
const config = loadConfig({}, { port: 0, dbPath: join(dir, 'relay.db'), logLevel: 'warn', allowPrivateCallbacks: true, callbackSecret: `whsec_${Buffer.alloc(32, 7).toString('base64')}` });
// Quick retries so the dead letter exists within a second.
const relay = await createRelay(config, createLogger('warn', quiet), { callbackPolicy: { maxAttempts: 3, baseDelayMs: 20, maxDelayMs: 50, timeoutMs: 2000 } });

// The release pipeline's webhook receiver: takes the first three callbacks, then fails (→ dead letter).
let hits = 0;
const receiver = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    hits++;
    res.writeHead(hits <= 3 ? 204 : 503).end();
  });
});
await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
const hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks/release`;

const clients: RelayClient[] = [];
async function agent(id: string, extra: Record<string, unknown>): Promise<RelayClient> {
  const c = createRelayClient({ url: relay.url, agent: { id, ...extra }, reconnect: false });
  await c.connect();
  clients.push(c);
  return c;
}
async function post(path: string, body: unknown): Promise<any> {
  const res = await fetch(relay.url + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return res.json();
}
async function progress(
  c: RelayClient,
  title: string,
  target: string,
  steps: Array<{ status?: 'in_progress' | 'blocked' | 'done' | 'failed'; progress?: number; note?: string }>,
  extra: Record<string, unknown> = {},
): Promise<number> {
  const { task } = await post('/api/tasks', { title, target, from: 'ext:ci', ...extra });
  const { claimToken } = await c.call('task/claim', { id: task.id });
  for (const s of steps) await c.call('task/update', { id: task.id, claimToken, ...s });
  return task.id;
}

// Agents.
const api = await agent('codex-api', { label: 'Codex · API service', client: 'codex', tags: ['backend'], capabilities: ['code', 'shell'], host: 'devbox-1', cwd: '/src/api' });
const web = await agent('claude-web', { label: 'Claude · web app', client: 'claude-code', tags: ['frontend'], capabilities: ['code', 'review'], host: 'devbox-2', cwd: '/src/web' });
const ci = await agent('ci-runner', { label: 'CI runner', client: 'script', tags: ['ci'], capabilities: ['build', 'test', 'deploy'], host: 'ci-7' });
await ci.call('agent/update', { status: 'busy' });
const docs = await agent('docs-writer', { label: 'Docs writer', client: 'claude-code', tags: ['docs'], capabilities: ['write'] });
await docs.close({ leave: true });

// Tasks across the board.
await progress(ci, 'Deploy v2.3 to staging', 'cap:deploy', [{ status: 'in_progress', progress: 60, note: 'api and web rolled out, running smoke tests' }]);
await progress(api, 'Add GET /v2/orders with cursor pagination', 'codex-api', [{ status: 'in_progress', progress: 35 }]);
await progress(web, 'Orders table on the new endpoint', 'claude-web', []);
await progress(api, 'Rotate staging DB credentials', 'tag:backend', [
  { status: 'in_progress', progress: 50 },
  { status: 'blocked', note: 'waiting for vault access' },
]);
await progress(ci, 'Bump pino to 10.4', 'tag:backend', [{ status: 'done' }]);
await progress(ci, 'Nightly e2e on WebKit', 'cap:test', [
  { status: 'in_progress', progress: 80 },
  { status: 'failed', note: 'checkout.spec.ts timed out' },
]);
await post('/api/tasks', { title: 'Review PR #482: orders pagination', target: 'tag:frontend', from: 'ext:github' });
for (let i = 0; i < 3; i++) await post('/api/tasks', { title: 'Alert: p95 latency above 800 ms on /orders', target: 'tag:backend', from: 'ext:alertmanager', dedupeKey: 'p95-orders' });
// Release notes: callbacks to the release pipeline; the receiver gives up after three, so the last is a dead letter.
const notes = await progress(
  web,
  'Publish release notes for v2.3',
  'claude-web',
  [
    { status: 'in_progress', progress: 50 },
    { status: 'done', note: 'published to the changelog' },
  ],
  { callbackUrl: hookUrl, body: 'Collect merged PRs since v2.2, group by area, publish to the changelog.' },
);

// A pending approval, as the Codex adapter forwards it.
const params = { threadId: 'thr_8f2', turnId: 'turn_3', itemId: 'item_12', command: ['pnpm', 'prisma', 'migrate', 'deploy'], cwd: '/src/api', reason: 'apply the orders cursor index migration' };
const { title, body } = describeApproval({ id: 12, method: 'item/commandExecution/requestApproval', params });
await api.call('task/create', {
  title,
  body: `${body}\n\n${answerLine(DECISIONS)}`,
  target: 'broadcast',
  dedupeKey: 'codex-approval:thr_8f2:12',
  meta: {
    kind: APPROVAL_TASK_KIND,
    method: 'item/commandExecution/requestApproval',
    requestId: '12',
    threadId: params.threadId,
    turnId: params.turnId,
    command: params.command.join(' '),
    cwd: params.cwd,
    reason: params.reason,
    choices: [...DECISIONS],
    agentId: 'codex-api',
  },
});

// Messages: a build channel, a conversation with a thread, a note from the dashboard, a claimable report.
await post('/api/messages', { to: 'broadcast', channel: 'build', body: 'main@4f2c1e9 is green: 412 tests, 0 failures, 3m12s', from: 'ext:ci' });
const ask = await web.send('codex-api', 'Can you add GET /v2/orders with pagination? The orders page needs it for the new table.', { subject: 'orders API' });
const answer = await api.send('claude-web', 'On it: cursor-based, ?after=<id>&limit=50, newest first. PR in about 20 minutes.', { replyTo: ask.message.id });
await web.send('codex-api', 'Great, I will build the table against a fixture meanwhile and switch when your PR lands.', { replyTo: answer.message.id });
await post('/api/messages', { to: 'tag:backend', body: 'Merge freeze on main at 17:00 for the v2.3 release cut.', from: 'ext:dashboard' });
await ci.send('broadcast', 'Flaky: orders.spec.ts › paginates failed 3 of the last 10 runs', { channel: 'build', claimable: true });
const pr = await api.send('claude-web', 'PR #482 is up: /v2/orders with cursor pagination, 14 new tests.', { replyTo: answer.message.id });
await web.send('codex-api', 'Reviewing now.', { replyTo: pr.message.id });
await post('/api/messages', { to: 'broadcast', channel: 'build', body: 'main@9b07d3a is green: 426 tests, 0 failures, 3m20s', from: 'ext:ci' });

// Wait for the callbacks to settle (delivered, delivered, delivered, …, dead).
for (const deadline = Date.now() + 10_000; ; ) {
  const { callbacks } = await api.call('task/get', { id: notes });
  if (callbacks.length > 0 && callbacks.every((c) => c.state !== 'pending') && callbacks.some((c) => c.state === 'dead')) break;
  if (Date.now() > deadline) throw new Error(`callbacks did not settle: ${JSON.stringify(callbacks)}`);
  await new Promise((r) => setTimeout(r, 50));
}

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium', args: CHROMIUM_ARGS });
async function open(viewport: { width: number; height: number }): Promise<Page> {
  const page = await (await browser.newContext({ viewport, deviceScaleFactor: 1 })).newPage();
  page.setDefaultTimeout(10_000);
  await page.goto(relay.url);
  await page.locator('.conn[data-state="live"]').waitFor();
  await page.locator('section.approvals li.approval').waitFor();
  await page.locator(`li.task[data-task-id="${notes}"]`).waitFor();
  // Labels are seconds-ago: let them settle, and let the progress bars finish their transition.
  await page.waitForTimeout(400);
  return page;
}
try {
  const page = await open({ width: 1280, height: 860 });
  await page.screenshot({ path: join(DOCS, 'dashboard.png') });

  await page.locator(`li.message[data-message-id="${ask.message.id}"] button`).click();
  await page.locator('.drawer .thread li').nth(3).waitFor();
  await page.screenshot({ path: join(DOCS, 'dashboard-thread.png') });
  await page.getByRole('button', { name: 'Close thread' }).click();

  await page.locator(`li.task[data-task-id="${notes}"] button`).click();
  await page.locator('.drawer .callbacks li.dead').waitFor();
  await page.screenshot({ path: join(DOCS, 'dashboard-task.png') });

  const phone = await open({ width: 390, height: 844 });
  await phone.screenshot({ path: join(DOCS, 'dashboard-phone.png') });
  console.log(`wrote ${['dashboard.png', 'dashboard-thread.png', 'dashboard-task.png', 'dashboard-phone.png'].map((f) => join('docs', f)).join(', ')}`);
} finally {
  await browser.close();
  for (const c of clients) await c.close();
  await relay.close();
  receiver.close();
  rmSync(dir, { recursive: true, force: true });
}
