import t from 'tap';
import { ERRORS } from '../../protocol/errors.js';
import { startRelay } from '../helpers/relay.js';
import { connectAgent, rpcErrorOf, WsRpc } from '../helpers/ws-client.js';

/**
 * One read rule on every transport: an agent's inbox is read only with its own credential. Before,
 * `message/list {agentId: "bob", unread: true}` from an observer (or from alice) returned bob's direct
 * messages and unread state over the WebSocket and POST /rpc, while GET /api/agents/bob/inbox asked
 * for his token.
 */

async function get(url: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const res = await fetch(`${url}${path}`, { headers, signal: AbortSignal.timeout(5000) });
  const body = res.headers.get('content-type')?.startsWith('text/event-stream') ? (await res.body?.cancel(), null) : await res.json();
  return { status: res.status, body };
}

async function rpcPost(url: string, params: unknown): Promise<any> {
  const res = await fetch(`${url}/rpc`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'message/list', params }) });
  return res.json();
}

t.test("bob's inbox is refused to observers and to other agents on every transport, and served to bob", async (t) => {
  const relay = await startRelay(t);
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  await alice.rpc.call('message/send', { to: 'bob', body: 'the staging password rotated' });
  const obs = await WsRpc.connect(t, relay.wsUrl);

  const unauthorized = ERRORS.unauthorized.code;
  const ws = await rpcErrorOf(obs.call('message/list', { agentId: 'bob', unread: true }));
  t.equal(ws.code, unauthorized, 'observer over the WebSocket: -32001');
  t.match(ws.message, /inbox of agent bob is read only with its own credential/, 'the message names the rule');
  t.equal((await rpcErrorOf(alice.rpc.call('message/list', { agentId: 'bob' }))).code, unauthorized, 'alice over her own connection: -32001');
  t.equal((await rpcPost(relay.url, { agentId: 'bob', unread: true })).error.code, unauthorized, 'POST /rpc without a token: -32001');
  t.equal((await rpcPost(relay.url, { agentId: 'bob', agentToken: alice.token })).error.code, unauthorized, "POST /rpc with alice's token: -32001");
  for (const path of ['/api/messages?agentId=bob&unread=true', '/api/agents/bob/inbox?unread=true', '/api/stream?agentId=bob']) {
    const res = await get(relay.url, path);
    t.same([res.status, res.body?.error?.code], [401, unauthorized], `GET ${path} without a token: 401 -32001`);
  }
  t.equal((await get(relay.url, '/api/messages?agentId=nobody')).status, 401, 'an unknown id gets the same answer: no hint of which ids exist');

  const own = [
    (await bob.rpc.call('message/list', { unread: true })).messages,
    (await rpcPost(relay.url, { agentId: 'bob', agentToken: bob.token, unread: true })).result.messages,
    (await get(relay.url, '/api/messages?agentId=bob&unread=true', { 'x-agent-id': 'bob', 'x-agent-token': bob.token })).body.messages,
    (await get(relay.url, '/api/agents/bob/inbox?unread=true', { 'x-agent-token': bob.token })).body.messages,
  ];
  for (const messages of own)
    t.same(
      messages.map((m: any) => m.body),
      ['the staging password rotated'],
      'bob reads his inbox with his credential',
    );
  t.equal((await get(relay.url, '/api/stream?agentId=bob', { 'x-agent-token': bob.token })).status, 200, 'and opens his stream');
  t.equal((await obs.call('message/list', {})).messages.length, 1, 'the global feed (no agentId) stays open to observers');
});
