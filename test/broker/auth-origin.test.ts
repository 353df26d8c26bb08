import { request } from 'node:http';
import t, { type Test } from 'tap';
import { CLOSE_CODES, shouldReconnect } from '../../protocol/close-codes.js';
import { ERRORS } from '../../protocol/errors.js';
import { startRelay, type TestRelay } from '../helpers/relay.js';
import { WsRpc } from '../helpers/ws-client.js';

/**
 * Admission before any upgrade or HTTP request: relay token, Host (DNS rebinding), Origin
 * (cross-site WebSocket hijacking); tokens never logged; per-connection rate limit.
 */

const TOKEN = 'relay-token-0123456789abcdef';
const WRONG = 'relay-token-fedcba9876543210';
const BEARER = { Authorization: `Bearer ${TOKEN}` };

function startTokenRelay(t: Test, overrides: Parameters<typeof startRelay>[1] = {}): Promise<TestRelay> {
  return startRelay(t, { token: TOKEN, logLevel: 'trace', ...overrides });
}

/** The HTTP status of a refused upgrade, or 101 when the upgrade was accepted. */
async function upgradeStatus(t: Test, url: string, options: Parameters<typeof WsRpc.connect>[2] = {}): Promise<number> {
  try {
    const rpc = await WsRpc.connect(t, url, options);
    await rpc.close();
    return 101;
  } catch (err) {
    return (err as { status?: number }).status ?? -1;
  }
}

/** A raw HTTP request (node:http lets a test set Host and Origin freely). */
function httpPost(port: number, path: string, headers: Record<string, string>, body: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'POST', headers: { 'content-type': 'application/json', ...headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const LIST = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'agent/list' });

t.test('an upgrade without the relay token is refused with 401 before upgrading', async (t) => {
  const relay = await startTokenRelay(t);
  t.equal(await upgradeStatus(t, relay.wsUrl), 401, 'no token: 401');
  t.equal(await upgradeStatus(t, relay.wsUrl, { headers: { Authorization: `Bearer ${WRONG}` } }), 401, 'wrong token: 401');
  t.equal(await upgradeStatus(t, relay.wsUrl, { headers: { Authorization: `Bearer ${TOKEN}x` } }), 401, 'token with a suffix: 401');
  t.equal(await upgradeStatus(t, relay.wsUrl, { headers: { Authorization: `Bearer ${TOKEN.slice(0, -1)}` } }), 401, 'token prefix: 401');
  t.equal(await upgradeStatus(t, relay.wsUrl, { headers: { Authorization: TOKEN } }), 401, 'token without the Bearer scheme: 401');
  t.equal(await upgradeStatus(t, relay.wsUrl, { headers: { Authorization: 'Bearer ' } }), 401, 'empty bearer: 401');
  t.equal(await upgradeStatus(t, relay.wsUrl, { protocols: ['agent-relay.v1', `bearer.${WRONG}`] }), 401, 'wrong subprotocol token: 401');
  t.equal(relay.core.sessions.size, 0, 'no refused upgrade became a session');
});

t.test('Authorization: Bearer TOKEN is admitted and served', async (t) => {
  const relay = await startTokenRelay(t);
  const rpc = await WsRpc.connect(t, relay.wsUrl, { headers: BEARER });
  t.same(await rpc.call('agent/list', {}), { agents: [] }, 'calls are answered');
  const lower = await WsRpc.connect(t, relay.wsUrl, { headers: { authorization: `bearer ${TOKEN}` } });
  t.same(await lower.call('agent/list', {}), { agents: [] }, 'the scheme is case-insensitive');
});

t.test('browser-style subprotocols carry the token and the relay answers agent-relay.v1', async (t) => {
  const relay = await startTokenRelay(t);
  const rpc = await WsRpc.connect(t, relay.wsUrl, { protocols: ['agent-relay.v1', `bearer.${TOKEN}`] });
  t.equal(rpc.ws.protocol, 'agent-relay.v1', 'the relay chose agent-relay.v1, never the bearer entry');
  t.same(await rpc.call('agent/list', {}), { agents: [] }, 'calls are answered');
});

t.test('a foreign Origin is refused with 403 even with a valid token', async (t) => {
  const relay = await startTokenRelay(t, { allowedOrigins: ['https://dash.example.com'] });
  t.equal(await upgradeStatus(t, relay.wsUrl, { headers: BEARER, origin: 'http://evil.example' }), 403, 'http://evil.example: 403');
  t.equal(
    await upgradeStatus(t, relay.wsUrl, { protocols: ['agent-relay.v1', `bearer.${TOKEN}`], origin: 'http://evil.example' }),
    403,
    'a browser on evil.example offering the token subprotocol: 403',
  );
  t.equal(await upgradeStatus(t, relay.wsUrl, { headers: BEARER, origin: `http://127.0.0.1:${relay.port + 1}` }), 403, 'loopback on another port: 403');
  t.equal(await upgradeStatus(t, relay.wsUrl, { headers: BEARER, origin: 'null' }), 403, 'Origin null (sandboxed frame, file://): 403');
  t.equal(await upgradeStatus(t, relay.wsUrl, { headers: BEARER, origin: 'https://dash.example.com.evil.example' }), 403, 'an allowed origin as a prefix: 403');
  t.equal(await upgradeStatus(t, relay.wsUrl, { origin: 'http://evil.example' }), 401, 'no token and a foreign origin: 401 first');
});

t.test("the relay's own origin and an origin from allowedOrigins are admitted", async (t) => {
  const relay = await startTokenRelay(t, { allowedOrigins: ['https://dash.example.com'] });
  t.equal(await upgradeStatus(t, relay.wsUrl, { headers: BEARER, origin: `http://127.0.0.1:${relay.port}` }), 101, 'own origin http://127.0.0.1:PORT');
  t.equal(await upgradeStatus(t, relay.wsUrl, { headers: BEARER, origin: `http://localhost:${relay.port}` }), 101, 'own origin http://localhost:PORT');
  t.equal(await upgradeStatus(t, relay.wsUrl, { headers: BEARER, origin: 'https://dash.example.com' }), 101, 'allowed origin');
  t.equal(await upgradeStatus(t, relay.wsUrl, { headers: BEARER, origin: 'https://DASH.example.com' }), 101, 'allowed origin, any case');
  t.equal(await upgradeStatus(t, relay.wsUrl, { headers: BEARER }), 101, 'no Origin (a non-browser client)');
  const rpc = await WsRpc.connect(t, relay.wsUrl, { headers: BEARER, origin: 'https://dash.example.com' });
  t.same(await rpc.call('agent/list', {}), { agents: [] }, 'an admitted browser origin is served');
});

t.test('a DNS-rebinding Host is refused with 403', async (t) => {
  const relay = await startTokenRelay(t);
  t.equal(await upgradeStatus(t, relay.wsUrl, { headers: { ...BEARER, Host: `evil.example:${relay.port}` } }), 403, 'Host evil.example:PORT');
  t.equal(await upgradeStatus(t, relay.wsUrl, { headers: { ...BEARER, Host: 'evil.example' } }), 403, 'Host evil.example');
  t.equal(await upgradeStatus(t, relay.wsUrl, { headers: { ...BEARER, Host: `localhost:${relay.port}` } }), 101, 'Host localhost:PORT is fine');
  const post = await httpPost(relay.port, '/rpc', { ...BEARER, Host: `evil.example:${relay.port}` }, LIST);
  t.equal(post.status, 403, 'POST /rpc with a rebinding Host: 403');
  const own = await httpPost(relay.port, '/rpc', BEARER, LIST);
  t.equal(own.status, 200, 'POST /rpc with the real Host: 200');
});

t.test('a DNS-rebinding Host is refused even when no token is configured', async (t) => {
  const relay = await startRelay(t);
  t.equal(await upgradeStatus(t, relay.wsUrl, { headers: { Host: `evil.example:${relay.port}` } }), 403, 'upgrade: 403');
  t.equal(await upgradeStatus(t, relay.wsUrl, { origin: 'http://evil.example' }), 403, 'foreign origin without a token: 403');
  const post = await httpPost(relay.port, '/rpc', { Host: `evil.example:${relay.port}` }, LIST);
  t.equal(post.status, 403, 'POST /rpc: 403');
  const cross = await httpPost(relay.port, '/rpc', { Origin: 'http://evil.example' }, LIST);
  t.equal(cross.status, 403, 'POST /rpc from a foreign origin: 403');
});

t.test('POST /rpc without the relay token is refused with 401', async (t) => {
  const relay = await startTokenRelay(t);
  const url = `http://127.0.0.1:${relay.port}/rpc`;
  const none = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: LIST });
  t.equal(none.status, 401, 'no token: 401');
  const body = (await none.json()) as { error?: { code: number; message: string } };
  t.equal(body.error?.code, ERRORS.unauthorized.code, 'the body carries -32001');
  const wrong = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', Authorization: `Bearer ${WRONG}` }, body: LIST });
  t.equal(wrong.status, 401, 'wrong token: 401');
  await wrong.text();
  const ok = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...BEARER }, body: LIST });
  t.equal(ok.status, 200, 'right token: 200');
  t.same(((await ok.json()) as { result: unknown }).result, { agents: [] }, 'and the call is answered');
  const health = await fetch(`http://127.0.0.1:${relay.port}/healthz`);
  t.equal(health.status, 401, 'other HTTP routes need the token too');
  await health.text();
});

t.test('neither the relay token nor an agentToken ever reaches the log', async (t) => {
  const relay = await startTokenRelay(t);
  // Refusals of every kind, each offering a token.
  await upgradeStatus(t, relay.wsUrl, { headers: { Authorization: `Bearer ${WRONG}` } });
  await upgradeStatus(t, relay.wsUrl, { protocols: ['agent-relay.v1', `bearer.${WRONG}`] });
  await upgradeStatus(t, relay.wsUrl, { headers: BEARER, origin: 'http://evil.example' });
  await upgradeStatus(t, relay.wsUrl, { headers: { ...BEARER, Host: `evil.example:${relay.port}` } });
  await httpPost(relay.port, '/rpc', { Authorization: `Bearer ${WRONG}` }, LIST);
  await httpPost(relay.port, '/rpc', { ...BEARER, Origin: 'http://evil.example' }, LIST);

  const rpc = await WsRpc.connect(t, relay.wsUrl, { protocols: ['agent-relay.v1', `bearer.${TOKEN}`] });
  const reg = await rpc.call('agent/register', { id: 'alice', label: 'Alice' });
  const agentToken: string = reg.agentToken;
  t.type(agentToken, 'string', 'an agentToken was issued');
  t.ok(agentToken.length >= 16, 'the agentToken is not trivially short');
  await rpc.close();
  // Resume with the token, use it over HTTP, and present a wrong one.
  const again = await WsRpc.connect(t, relay.wsUrl, { headers: BEARER });
  await again.call('agent/register', { id: 'alice', agentToken });
  const refused = await again.call('agent/register', { id: 'alice', agentToken: `${agentToken}x` }).catch((e) => e);
  t.equal(refused.code, ERRORS.unauthorized.code, 'a wrong agentToken is refused with -32001');
  const viaHttp = await httpPost(relay.port, '/rpc', BEARER, JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'message/send', params: { to: 'alice', body: 'hi', agentId: 'alice', agentToken } }));
  t.equal(viaHttp.status, 200, 'an agent call over HTTP with agentToken is served');
  t.notOk(JSON.parse(viaHttp.text).error, 'without error');
  await httpPost(relay.port, '/rpc', BEARER, JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'message/list', params: { agentId: 'alice', agentToken: 'not-the-token-at-all' } }));
  await again.close();

  const logs = relay.logText();
  t.ok(logs.length > 0, 'the relay did log (at trace level)');
  t.notOk(logs.includes(TOKEN), 'the relay token is not in the log');
  t.notOk(logs.includes(WRONG), 'a wrong relay token offered is not in the log either');
  t.notOk(logs.includes(agentToken), 'the agentToken is not in the log');
});

t.test('a flood of frames gets -32005 and then close 4003, while another connection is served', async (t) => {
  const relay = await startRelay(t, { rateLimitPerSec: 50, rateBurst: 50 });
  const flooder = await WsRpc.connect(t, relay.wsUrl);
  const bystander = await WsRpc.connect(t, relay.wsUrl);
  for (let i = 0; i < 500; i++) flooder.ws.send(JSON.stringify({ jsonrpc: '2.0', id: i + 1, method: 'agent/list' }));
  const code = await Promise.race([flooder.closed, new Promise<number>((r) => setTimeout(() => r(-1), 5000))]);
  t.equal(code, CLOSE_CODES.rateLimited, 'the flooder is closed with 4003');
  t.equal(code, 4003, '4003 exactly');
  t.ok(shouldReconnect(code), 'a client would reconnect and resume after 4003');

  const frames = flooder.raw as Array<{ id: unknown; result?: unknown; error?: { code: number; message: string } }>;
  const served = frames.filter((f) => f.result !== undefined);
  const limited = frames.filter((f) => f.error?.code === ERRORS.tooLarge.code);
  t.ok(served.length >= 50 && served.length < 500, `the burst was served (${served.length} answers), not the whole flood`);
  t.ok(limited.length >= 1, `over-limit frames got -32005 (${limited.length})`);
  t.ok(
    limited.every((f) => f.id === null),
    'rate-limit errors carry id null',
  );
  t.match(limited[0]?.error?.message, /rate/, 'the message says rate limited');
  t.equal(served.length + limited.length, frames.length, 'every frame received was an answer or a rate-limit error');
  t.ok(frames.length < 500, 'the relay stopped answering before the flood ended');

  t.same(await bystander.call('agent/list', {}), { agents: [] }, 'the other connection is still answered');
  t.equal(bystander.closeCode, null, 'and stays open');
  const fresh = await WsRpc.connect(t, relay.wsUrl);
  t.same(await fresh.call('agent/list', {}), { agents: [] }, 'a reconnect is served');
});

t.test('a connection under the rate limit is never throttled', async (t) => {
  const relay = await startRelay(t, { rateLimitPerSec: 50, rateBurst: 50 });
  const rpc = await WsRpc.connect(t, relay.wsUrl);
  const answers = await Promise.all(Array.from({ length: 40 }, () => rpc.call('agent/list', {})));
  t.equal(answers.length, 40, 'a burst within rateBurst is fully answered');
  t.equal(rpc.closeCode, null, 'and the connection stays open');
});
