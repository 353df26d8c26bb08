import t from 'tap';
import { ERRORS } from '../../protocol/errors.js';
import { startRelay } from '../helpers/relay.js';
import { connectAgent, WsRpc } from '../helpers/ws-client.js';

/**
 * A half identity over HTTP is refused, never dropped: X-Agent-Id without X-Agent-Token used to be
 * served as ext:observer (the message below went out "from" the observer while the caller believed
 * it spoke as ci), and a token naming no agent was a 400 about a body field.
 */

async function post(url: string, path: string, headers: Record<string, string>, body: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json() };
}

t.test('X-Agent-Id without X-Agent-Token is 401 naming the missing header, and nothing is sent', async (t) => {
  const relay = await startRelay(t);
  const ci = await connectAgent(t, relay.wsUrl, { id: 'ci' });
  await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const res = await post(relay.url, '/api/messages', { 'x-agent-id': 'ci' }, { to: 'bob', body: 'build is green' });
  t.equal(res.status, 401, 'HTTP 401');
  t.equal(res.body.error.code, ERRORS.unauthorized.code, '-32001');
  t.match(res.body.error.message, /X-Agent-Token is missing/, 'the message names the missing header');
  const obs = await WsRpc.connect(t, relay.wsUrl);
  t.same((await obs.call('message/list', {})).messages, [], 'no message was sent, as ext:observer or anyone');

  const both = await post(relay.url, '/api/messages', { 'x-agent-id': 'ci', 'x-agent-token': ci.token }, { to: 'bob', body: 'build is green' });
  t.equal(both.status, 201, 'with both headers the send goes through');
  t.equal(both.body.message.from, 'ci', 'as ci');
  const neither = await post(relay.url, '/api/messages', {}, { to: 'bob', body: 'from a script' });
  t.equal(neither.status, 201, 'with neither header the caller is an observer');
  t.equal(neither.body.message.from, 'ext:observer');
});

t.test('X-Agent-Token without X-Agent-Id is 401 where the path does not name the agent, accepted where it does', async (t) => {
  const relay = await startRelay(t);
  const ci = await connectAgent(t, relay.wsUrl, { id: 'ci' });
  const res = await post(relay.url, '/api/messages', { 'x-agent-token': ci.token }, { to: 'ci', body: 'x' });
  t.equal(res.status, 401, 'HTTP 401');
  t.equal(res.body.error.code, ERRORS.unauthorized.code, '-32001');
  t.match(res.body.error.message, /X-Agent-Id is missing/, 'the message names the missing header');
  const hb = await post(relay.url, '/api/agents/ci/heartbeat', { 'x-agent-token': ci.token }, {});
  t.equal(hb.status, 200, 'the heartbeat path names the agent: the token alone is enough');
});
