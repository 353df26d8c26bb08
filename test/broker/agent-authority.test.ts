import t from 'tap';
import { ERRORS } from '../../protocol/errors.js';
import { startRelay } from '../helpers/relay.js';
import { connectAgent, rpcErrorOf, WsRpc } from '../helpers/ws-client.js';

/**
 * An agent's routing fields, meta, status and readiness change only with its own token; an
 * observer may change its label (the dashboard does). Before, `PATCH /api/agents/bob` with no token
 * emptied bob's tags, capabilities and channels and tag:review stopped reaching him, while a
 * registered agent doing the same was refused. And `system: true` (never pruned) is the operator's.
 */

async function patch(url: string, id: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const res = await fetch(`${url}/api/agents/${id}`, { method: 'PATCH', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json() };
}

t.test('PATCH /api/agents/bob without his token cannot reroute him; tag:review still reaches him', async (t) => {
  const relay = await startRelay(t);
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob', tags: ['review'], capabilities: ['ts'], channels: ['code'], meta: { team: 'core' } });
  const obs = await WsRpc.connect(t, relay.wsUrl);

  const res = await patch(relay.url, 'bob', { tags: [], capabilities: [], channels: [] });
  t.equal(res.status, 401, 'HTTP 401');
  t.equal(res.body.error.code, ERRORS.unauthorized.code, '-32001');
  t.match(res.body.error.message, /tags, capabilities, channels of agent bob change only with its own agentToken/, 'names the fields and what is needed');
  for (const fields of [{ meta: {} }, { ready: false }, { status: 'away' }] as const) {
    const err = await rpcErrorOf(obs.call('agent/update', { id: 'bob', ...fields }));
    t.equal(err.code, ERRORS.unauthorized.code, `an observer over the WebSocket changing ${Object.keys(fields)[0]}: -32001`);
  }
  const after = (await obs.call('agent/list', {})).agents.find((a: any) => a.id === 'bob');
  t.same([after.tags, after.capabilities, after.channels, after.meta, after.ready, after.status], [['review'], ['ts'], ['code'], { team: 'core' }, true, 'online'], 'bob is as he registered');
  const sent = await obs.call('message/send', { to: 'tag:review', channel: 'code', body: 'please review #12' });
  t.same(sent.recipients, ['bob'], 'tag:review still reaches bob');

  const label = await patch(relay.url, 'bob', { label: 'Bob (reviewer)' });
  t.equal(label.status, 200, 'an observer may still change the label (the dashboard edits it)');
  t.equal(label.body.agent.label, 'Bob (reviewer)');
  const own = await patch(relay.url, 'bob', { tags: ['review', 'ops'] }, { 'x-agent-token': bob.token });
  t.equal(own.status, 200, 'with his own token bob changes his tags');
  t.same(own.body.agent.tags, ['review', 'ops']);
  const viaWs = await bob.rpc.call('agent/update', { channels: [] });
  t.same(viaWs.agent.channels, [], 'and over his own connection');
});

t.test('system: true is refused unless the operator lists the id in AGENT_RELAY_SYSTEM_AGENTS', async (t) => {
  const relay = await startRelay(t, { systemAgents: ['relay-bot'] });
  const rpc = await WsRpc.connect(t, relay.wsUrl);
  const err = await rpcErrorOf(rpc.call('agent/register', { id: 'mallory', system: true }));
  t.equal(err.code, ERRORS.unauthorized.code, '-32001');
  t.match(err.message, /AGENT_RELAY_SYSTEM_AGENTS/, 'names the setting that grants it');
  t.notOk(relay.core.agents.has('mallory'), 'nothing was registered');

  const listed = await connectAgent(t, relay.wsUrl, { id: 'relay-bot' });
  t.equal((await listed.rpc.call('agent/list', {})).agents[0].system, true, 'a listed id is a system agent, asked or not');
  const plain = await connectAgent(t, relay.wsUrl, { id: 'alice', system: false });
  const again = await plain.rpc.call('agent/register', { id: 'alice', agentToken: plain.token, system: false });
  t.equal(again.agent.system, false, 'system: false stays accepted');
});

t.test('an agent stored as system stays system after a restart without the setting (rows keep what they had)', async (t) => {
  const dir = t.testdir();
  const first = await startRelay(t, { systemAgents: ['old-bot'] }, { dir });
  const bot = await connectAgent(t, first.wsUrl, { id: 'old-bot', system: true });
  await bot.rpc.close();
  await first.close();
  const second = await startRelay(t, {}, { dir });
  const rpc = await WsRpc.connect(t, second.wsUrl);
  const back = await rpc.call('agent/register', { id: 'old-bot', agentToken: bot.token, system: true });
  t.equal(back.agent.system, true, 'the stored system flag is kept and may be restated');
});
