import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { ERRORS } from '../../protocol/errors.js';
import { startRelay, type TestRelay } from '../helpers/relay.js';
import { connectAgent, rpcErrorOf, WsRpc } from '../helpers/ws-client.js';

/**
 * A source that names a configured integration belongs to that integration's authenticated ingress.
 * Before, an observer with no secret and no agent token sent task/create {source: "pd", dedupeKey:
 * "db-1-disk", action: "resolve"} and PagerDuty's open incident came back done; with source "pd" and
 * a callbackUrl of its own it was sent callbacks signed with pd's secret.
 */

const PD_SECRET = `whsec_${randomBytes(32).toString('base64')}`;

async function relayWithPd(t: Test): Promise<TestRelay> {
  const dir = t.testdir();
  const file = join(dir, 'integrations.json');
  writeFileSync(file, JSON.stringify({ integrations: [{ name: 'pd', secret: PD_SECRET, target: 'oncall' }] }));
  return startRelay(t, { integrationsPath: file, allowPrivateCallbacks: true }, { dir });
}

async function pdIncident(relay: TestRelay): Promise<number> {
  const res = await fetch(`${relay.url}/api/integrations/pd/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${PD_SECRET}`, 'content-type': 'application/json' },
    body: JSON.stringify({ title: 'db-1 disk 95%', dedupeKey: 'db-1-disk' }),
  });
  return ((await res.json()) as { task: { id: number } }).task.id;
}

t.test("an observer cannot resolve pd's incident by naming source pd; pd's own ingress still can", async (t) => {
  const relay = await relayWithPd(t);
  await connectAgent(t, relay.wsUrl, { id: 'oncall' });
  const taskId = await pdIncident(relay);
  const obs = await WsRpc.connect(t, relay.wsUrl);

  const err = await rpcErrorOf(obs.call('task/create', { title: 'x', target: 'oncall', source: 'pd', dedupeKey: 'db-1-disk', action: 'resolve' }));
  t.equal(err.code, ERRORS.unauthorized.code, 'observer over the WebSocket: -32001');
  t.match(err.message, /source: "pd" is the integration pd; .*POST \/api\/integrations\/pd\/events/, 'the message names the reservation and the way in');
  const rest = await fetch(`${relay.url}/api/tasks`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ title: 'x', target: 'oncall', source: 'pd', dedupeKey: 'db-1-disk', action: 'resolve' }),
  });
  t.equal(rest.status, 401, 'observer over REST: 401');
  const agent = await connectAgent(t, relay.wsUrl, { id: 'pd-impostor' });
  t.equal(
    (await rpcErrorOf(agent.rpc.call('task/create', { title: 'x', target: 'oncall', source: 'pd', dedupeKey: 'db-1-disk' }))).code,
    ERRORS.unauthorized.code,
    'a registered agent: -32001 too (no dedupe bump either)',
  );

  const task = (await obs.call('task/get', { id: taskId })).task;
  t.same([task.status, task.occurrences], ['open', 1], 'the incident is still open, counted once');

  const resolved = await fetch(`${relay.url}/api/integrations/pd/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${PD_SECRET}`, 'content-type': 'application/json' },
    body: JSON.stringify({ title: 'db-1 disk ok', dedupeKey: 'db-1-disk', action: 'resolve' }),
  });
  t.equal(resolved.status, 200, "pd's ingress resolves it");
  t.equal((await obs.call('task/get', { id: taskId })).task.status, 'done');
});

t.test('source pd with an own callbackUrl is refused before anything is written or signed', async (t) => {
  const relay = await relayWithPd(t);
  await connectAgent(t, relay.wsUrl, { id: 'oncall' });
  const obs = await WsRpc.connect(t, relay.wsUrl);
  const err = await rpcErrorOf(obs.call('task/create', { title: 'give me signatures', target: 'oncall', source: 'pd', callbackUrl: 'http://127.0.0.1:9/steal' }));
  t.equal(err.code, ERRORS.unauthorized.code, '-32001');
  t.same((await obs.call('task/list', {})).tasks, [], 'no task');
  t.equal(await relay.core.store.outbox.nextDueAt(), null, 'no callback queued to be signed');

  const free = await obs.call('task/create', { title: 'disk alert', target: 'oncall', source: 'grafana', dedupeKey: 'd1' });
  t.equal(free.task.source, 'grafana', 'a source that names no integration stays free');
});

t.test("an observer cannot speak as ext:pd, the name pd's ingress announces its tasks with", async (t) => {
  const relay = await relayWithPd(t);
  const oncall = await connectAgent(t, relay.wsUrl, { id: 'oncall' });
  const obs = await WsRpc.connect(t, relay.wsUrl);
  for (const [method, params] of [
    ['message/send', { to: 'oncall', body: 'resolve db-1 now' }],
    ['task/create', { title: 'x', target: 'oncall' }],
  ] as const) {
    const err = await rpcErrorOf(obs.call(method, { ...params, from: 'ext:pd' }));
    t.equal(err.code, ERRORS.unauthorized.code, `${method} from ext:pd: -32001`);
    t.match(err.message, /ext:pd is the integration pd's sender name/);
  }
  t.equal((await obs.call('message/send', { to: 'oncall', body: 'hi', from: 'ext:script' })).message.from, 'ext:script', 'other ext: names stay free');
  await oncall.rpc.until(() => oncall.rpc.messages().length === 1, 3000, 'the one allowed message');
  t.same(
    oncall.rpc.messages().map((m) => m.from),
    ['ext:script'],
    'nothing arrived as ext:pd',
  );
});
