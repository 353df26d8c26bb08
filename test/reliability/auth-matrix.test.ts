import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import WebSocket from 'ws';
import { REST_ROUTES } from '../../adapters/http/rest.js';
import { ERRORS } from '../../protocol/errors.js';
import { DISCOVER_METHOD, METHODS, type MethodName } from '../../protocol/method-table.js';
import { startRelay, type TestRelay } from '../helpers/relay.js';
import { WsRpc } from '../helpers/ws-client.js';
import { figure, uniqueDir } from './support.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The auth matrix: every method and every HTTP endpoint × {no relay token, a wrong relay token,
 * another agent's agent token} is refused, and nothing refused changes anything. Webhook ingress
 * takes no relay token: its column is {no secret, a wrong secret, another integration's secret}.
 * Then Origin and Host refusals (cross-site WebSocket hijacking, DNS rebinding) on every endpoint,
 * with and without a relay token, and a scan of every log line for every secret used.
 * test/broker/auth-origin.test.ts covers the admission rules one by one; this is the whole grid.
 */

const TOKEN = `relay-${randomBytes(16).toString('hex')}`;
const WRONG = `relay-${randomBytes(16).toString('hex')}`;
const BEARER = `Bearer ${TOKEN}`;

interface Reply {
  status: number;
  text: string;
}

function http(port: number, method: string, path: string, headers: Record<string, string>, body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      // SSE answers stream forever: the status is all this needs.
      if (res.headers['content-type']?.startsWith('text/event-stream')) {
        resolve({ status: res.statusCode ?? 0, text: '' });
        req.destroy();
      }
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Status of an upgrade attempt: 101 when accepted. */
function upgrade(port: number, headers: Record<string, string>, protocols: string[] = []): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/rpc`, protocols, { headers });
    ws.once('open', () => {
      ws.close();
      resolve(101);
    });
    ws.once('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? -1);
      ws.terminate();
    });
    ws.once('error', () => resolve(-1));
  });
}

/** Valid params for each method, aimed at the victim's things, so that only auth can refuse them. */
function paramsFor(method: MethodName | typeof DISCOVER_METHOD, ids: { task: number; message: number }): Record<string, unknown> {
  switch (method) {
    case 'agent/register':
      return { id: 'victim' };
    case 'agent/update':
      return { id: 'victim', label: 'pwned' };
    case 'agent/heartbeat':
      return { status: 'busy' };
    case 'message/send':
      return { to: 'victim', body: 'forged' };
    case 'message/list':
      return { unread: true };
    case 'message/read':
      return { upTo: ids.message };
    case 'message/get':
    case 'message/claim':
    case 'thread/get':
      return { id: ids.message };
    case 'message/ack':
      return { id: ids.message, state: 'injected' };
    case 'task/create':
      return { title: 'forged', target: 'victim' };
    case 'task/claim':
    case 'task/get':
      return { id: ids.task };
    case 'task/release':
      return { id: ids.task, claimToken: 1 };
    case 'task/update':
      return { id: ids.task, claimToken: 1, status: 'done' };
    case 'stream/subscribe':
      return { topics: ['messages'] };
    case 'message/search':
      return { query: 'secret' };
    case 'lease/acquire':
      return { resources: ['src/**'] };
    case 'lease/renew':
    case 'lease/release':
      return { leaseId: 1, token: 1 };
    default:
      return {};
  }
}

const ALL_METHODS = [...(Object.keys(METHODS) as MethodName[]), DISCOVER_METHOD] as const;

/** One concrete path per REST route: agent ids → victim, numeric ids → the seeded message/task. */
function restPaths(ids: { task: number; message: number }): Array<{ verb: string; path: string; method: MethodName }> {
  return REST_ROUTES.map((r) => {
    const id = r.method.startsWith('task/') ? ids.task : ids.message;
    const path = r.pattern.source
      .replace(/^\^|\$$/g, '')
      .replace('(?<id>[^/]+)', 'victim')
      .replace('(?<id>\\d+)', String(id))
      .replace(/\\\//g, '/');
    return { verb: r.verb, path, method: r.method };
  });
}

function bodyFor(method: MethodName, ids: { task: number; message: number }): string | undefined {
  const p = { ...paramsFor(method, ids) };
  delete p.id;
  return JSON.stringify(method === 'agent/register' ? { id: 'victim' } : p);
}

interface Setup {
  relay: TestRelay;
  ids: { task: number; message: number };
  victim: { token: string };
  attacker: { token: string };
  secrets: { ci: string; other: string; wrong: string };
}

async function setup(t: Test): Promise<Setup> {
  const dir = uniqueDir(t);
  const secrets = { ci: `whsec_${randomBytes(24).toString('base64')}`, other: `whsec_${randomBytes(24).toString('base64')}`, wrong: `whsec_${randomBytes(24).toString('base64')}` };
  const integrations = join(dir, 'integrations.json');
  writeFileSync(
    integrations,
    JSON.stringify({
      integrations: [
        { name: 'ci', secret: secrets.ci, target: 'victim' },
        { name: 'other', secret: secrets.other, target: 'victim' },
      ],
    }),
  );
  const relay = await startRelay(t, { token: TOKEN, logLevel: 'trace', integrationsPath: integrations }, { dir });
  const headers = { Authorization: BEARER };
  const v = await WsRpc.connect(t, relay.wsUrl, { headers });
  const victim = await v.call('agent/register', { id: 'victim', capabilities: ['work'] });
  const a = await WsRpc.connect(t, relay.wsUrl, { headers });
  const attacker = await a.call('agent/register', { id: 'attacker' });
  const message = (await a.call('message/send', { to: 'victim', body: 'for the victim only' })).message;
  const task = (await a.call('task/create', { title: 'victim work', target: 'victim' })).task;
  const claim = await v.call('task/claim', { id: task.id });
  t.equal(claim.claimToken, 1, 'the victim owns the task (claim token 1)');
  // The victim's pushed state is bookkeeping written a little later: let it land before the
  // snapshot the refused calls are compared against.
  await waitFor(async () => (await relay.core.store.deliveries.get('victim', message.id))?.state === 'pushed', 'the message to the victim to read pushed', 5000);
  await v.close();
  await a.close();
  return { relay, ids: { task: task.id, message: message.id }, victim: { token: victim.agentToken }, attacker: { token: attacker.agentToken }, secrets };
}

/** Everything a refused call could have changed. */
async function state(relay: TestRelay): Promise<string> {
  const s = relay.core.store;
  const victim = (await s.agents.get('victim'))!;
  return JSON.stringify({
    maxMessage: await s.messages.maxId(),
    tasks: await s.tasks.countByStatus(),
    task: await s.tasks.get(1),
    victim: { ...victim, lastSeenAt: 0 },
    deliveries: await s.deliveries.forMessage(1),
  });
}

t.test('every method and endpoint × no token, wrong token, another agent’s token: all refused, nothing changed', async (t) => {
  const { relay, ids, victim, attacker, secrets } = await setup(t);
  const port = relay.port;
  const before = await state(relay);
  const failures: string[] = [];
  let cells = 0;
  const expect = (what: string, ok: boolean) => {
    cells++;
    if (!ok) failures.push(what);
  };

  // WebSocket: without the relay token nobody gets a connection to call anything on.
  for (const method of ALL_METHODS) {
    expect(`ws ${method} × no token`, (await upgrade(port, {})) === 401);
    expect(`ws ${method} × wrong token`, (await upgrade(port, { Authorization: `Bearer ${WRONG}` })) === 401);
    expect(`ws ${method} × wrong subprotocol token`, (await upgrade(port, {}, ['agent-relay.v1', `bearer.${WRONG}`])) === 401);
  }
  // With the relay token, another agent's token does not make the caller the victim: on a fresh
  // connection, and on the attacker's own registered connection.
  const fresh = await WsRpc.connect(t, relay.wsUrl, { headers: { Authorization: BEARER } });
  const own = await WsRpc.connect(t, relay.wsUrl, { headers: { Authorization: BEARER } });
  await own.call('agent/register', { id: 'attacker', agentToken: attacker.token });
  for (const method of ALL_METHODS) {
    const params = { ...paramsFor(method, ids), ...(method === 'agent/register' ? { agentToken: attacker.token } : { agentId: 'victim', agentToken: attacker.token }) };
    for (const [name, conn] of [
      ['fresh', fresh],
      ['registered', own],
    ] as const) {
      const err = await conn.call(method, params).then(
        () => null,
        (e: { code?: number }) => e,
      );
      // stream/subscribe has no identity fields: the foreign token is refused as an unknown key.
      const want = method === 'stream/subscribe' ? ERRORS.invalidParams.code : ERRORS.unauthorized.code;
      expect(`ws ${method} × another agent's token (${name} connection): got ${err ? err.code : 'a result'}`, err?.code === want);
    }
  }

  // POST /rpc carries every method too.
  for (const method of ALL_METHODS) {
    const frame = (params: Record<string, unknown>) => JSON.stringify({ jsonrpc: '2.0', id: 1, method, params });
    const plain = frame(paramsFor(method, ids));
    expect(`POST /rpc ${method} × no token`, (await http(port, 'POST', '/rpc', {}, plain)).status === 401);
    expect(`POST /rpc ${method} × wrong token`, (await http(port, 'POST', '/rpc', { Authorization: `Bearer ${WRONG}` }, plain)).status === 401);
    const params = { ...paramsFor(method, ids), ...(method === 'agent/register' ? { agentToken: attacker.token } : { agentId: 'victim', agentToken: attacker.token }) };
    const r = await http(port, 'POST', '/rpc', { Authorization: BEARER }, frame(params));
    const code = (JSON.parse(r.text) as { error?: { code: number } }).error?.code;
    const want = method === 'stream/subscribe' ? ERRORS.invalidRequest.code : ERRORS.unauthorized.code;
    expect(`POST /rpc ${method} × another agent's token: got ${code ?? 'a result'}`, code === want);
  }

  // Every REST route, the inbox, the stream, health, metrics and the dashboard.
  const endpoints: Array<{ verb: string; path: string; body?: string | undefined }> = [
    ...restPaths(ids).map((r) => ({ verb: r.verb, path: r.path, body: r.verb === 'GET' ? undefined : bodyFor(r.method, ids) })),
    { verb: 'GET', path: '/api/agents/victim/inbox' },
    { verb: 'GET', path: '/api/agents/victim/inbox?wait=1' },
    { verb: 'GET', path: '/api/stream?agentId=victim' },
    { verb: 'GET', path: '/api/stream' },
    { verb: 'GET', path: '/healthz' },
    { verb: 'GET', path: '/metrics' },
  ];
  for (const e of endpoints) {
    const what = `${e.verb} ${e.path}`;
    expect(`${what} × no token`, (await http(port, e.verb, e.path, {}, e.body)).status === 401);
    expect(`${what} × wrong token`, (await http(port, e.verb, e.path, { Authorization: `Bearer ${WRONG}` }, e.body)).status === 401);
    const foreign = await http(port, e.verb, e.path, { Authorization: BEARER, 'X-Agent-Id': 'victim', 'X-Agent-Token': attacker.token }, e.body);
    expect(`${what} × another agent's token: ${foreign.status}`, foreign.status === 401);
  }

  // The dashboard page and its bundles are static and hold no data: served without the relay
  // token (the page asks for it), but a foreign agent token presented there is still refused.
  const page = await http(port, 'GET', '/', {});
  expect(`GET / × no token serves only the static page: ${page.status}`, page.status === 200 && !page.text.includes('victim') && !page.text.includes(TOKEN));
  expect('GET / × another agent’s token', (await http(port, 'GET', '/', { Authorization: BEARER, 'X-Agent-Id': 'victim', 'X-Agent-Token': attacker.token })).status === 401);

  // Webhook ingress authenticates with the integration's secret, not the relay token.
  const hook = (headers: Record<string, string>) => http(port, 'POST', '/api/integrations/ci/events', headers, JSON.stringify({ title: 'forged alert' }));
  expect('ingress × no secret', (await hook({})).status === 401);
  expect('ingress × relay token only', (await hook({ Authorization: BEARER })).status === 401);
  expect('ingress × wrong secret', (await hook({ Authorization: `Bearer ${secrets.wrong}` })).status === 401);
  expect('ingress × another integration’s secret', (await hook({ Authorization: `Bearer ${secrets.other}` })).status === 401);
  expect(
    'ingress × another integration’s secret as a signature',
    (await hook({ 'webhook-id': 'msg_1', 'webhook-timestamp': String(Math.floor(Date.now() / 1000)), 'webhook-signature': 'v1,AAAA' })).status === 401,
  );
  expect('ingress × the victim’s agent token', (await hook({ Authorization: `Bearer ${victim.token}` })).status === 401);

  t.same(failures, [], `every cell of the matrix refused (${cells} cells)`);
  const unchanged = t.same(JSON.parse(await state(relay)), JSON.parse(before), 'nothing the refused calls aimed at changed (messages, tasks, the claim, the victim)');

  // A valid credential in the same places is served: the refusals are about the credential.
  const served = await http(port, 'GET', '/api/agents/victim/inbox', { Authorization: BEARER, 'X-Agent-Token': victim.token });
  t.equal(served.status, 200, 'the victim’s own token is served');
  const hookOk = await hook({ Authorization: `Bearer ${secrets.ci}` });
  t.equal(hookOk.status, 201, 'the right integration secret is served');

  const logs = relay.logText();
  const secretsUsed = { relay: TOKEN, wrong_relay: WRONG, victim: victim.token, attacker: attacker.token, ci: secrets.ci, other: secrets.other, wrong_secret: secrets.wrong };
  const leaked = Object.entries(secretsUsed)
    .filter(([, s]) => logs.includes(s))
    .map(([k]) => k);
  t.ok(relay.logs.length > 20, `the relay logged at trace level (${relay.logs.length} lines)`);
  t.same(leaked, [], 'no token or secret appears in any log line');
  figure(t, 'auth-matrix', { cells, refused: cells - failures.length, not_refused: failures.length, state_changed: !unchanged, log_lines: relay.logs.length, secrets_in_logs: leaked.length });
});

t.test('Origin and Host refusals on every endpoint: cross-site WebSocket hijacking and DNS rebinding', async (t) => {
  const dir = uniqueDir(t);
  const secret = `whsec_${randomBytes(24).toString('base64')}`;
  writeFileSync(join(dir, 'integrations.json'), JSON.stringify({ integrations: [{ name: 'ci', secret, target: 'broadcast' }] }));
  let cells = 0;
  const failures: string[] = [];
  for (const withToken of [true, false]) {
    const relay = await startRelay(t, { ...(withToken ? { token: TOKEN } : {}), integrationsPath: join(dir, 'integrations.json') }, { dir: join(dir, withToken ? 'token' : 'open') });
    const port = relay.port;
    const auth: Record<string, string> = withToken ? { Authorization: BEARER } : {};
    const label = withToken ? 'token relay' : 'tokenless relay';
    const expect = (what: string, got: number, want: number) => {
      cells++;
      if (got !== want) failures.push(`${label}: ${what}: ${got}, wanted ${want}`);
    };
    const evilOrigins = ['http://evil.example', 'null', `http://127.0.0.1:${port + 1}`, `http://localhost.evil.example:${port}`, `https://127.0.0.1.evil.example`];
    const evilHosts = [`evil.example:${port}`, 'evil.example', `127.0.0.1.evil.example:${port}`, `localhost.evil.example:${port}`, `[::1].evil:${port}`];
    // Cross-site WebSocket hijacking: a page on another origin, offering the token as a browser can.
    for (const origin of evilOrigins) {
      expect(`upgrade with Origin ${origin}`, await upgrade(port, { ...auth, Origin: origin }, withToken ? ['agent-relay.v1', `bearer.${TOKEN}`] : ['agent-relay.v1']), 403);
    }
    for (const host of evilHosts) expect(`upgrade with Host ${host}`, await upgrade(port, { ...auth, Host: host }), 403);
    expect('upgrade from the relay’s own origin', await upgrade(port, { ...auth, Origin: `http://127.0.0.1:${port}` }), 101);

    const endpoints: Array<{ verb: string; path: string; body?: string | undefined }> = [
      ...restPaths({ task: 1, message: 1 }).map((r) => ({ verb: r.verb, path: r.path, body: r.verb === 'GET' ? undefined : '{}' })),
      { verb: 'POST', path: '/rpc', body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'agent/list' }) },
      { verb: 'GET', path: '/api/agents/x/inbox' },
      { verb: 'GET', path: '/api/stream' },
      { verb: 'POST', path: '/api/integrations/ci/events', body: JSON.stringify({ title: 'x' }) },
      { verb: 'GET', path: '/healthz' },
      { verb: 'GET', path: '/metrics' },
      { verb: 'GET', path: '/' },
    ];
    for (const e of endpoints) {
      const headers = e.path.startsWith('/api/integrations') ? { Authorization: `Bearer ${secret}` } : auth;
      for (const origin of evilOrigins.slice(0, 2)) expect(`${e.verb} ${e.path} with Origin ${origin}`, (await http(port, e.verb, e.path, { ...headers, Origin: origin }, e.body)).status, 403);
      for (const host of evilHosts.slice(0, 2)) expect(`${e.verb} ${e.path} with Host ${host}`, (await http(port, e.verb, e.path, { ...headers, Host: host }, e.body)).status, 403);
    }
    expect('GET /healthz from the relay’s own origin', (await http(port, 'GET', '/healthz', { ...auth, Origin: `http://localhost:${port}` })).status, 200);
    t.equal(await relay.core.store.messages.maxId(), 0, `${label}: nothing refused wrote anything`);
  }
  t.same(failures, [], `every foreign Origin and rebinding Host was refused with 403 (${cells} cells)`);
  figure(t, 'origin-host', { cells, refused_or_admitted_as_expected: cells - failures.length, wrong: failures.length });
});
