import { randomBytes } from 'node:crypto';
import t, { type Test } from 'tap';
import { ERRORS } from '../../protocol/errors.js';
import { LIMITS } from '../../protocol/limits.js';
import { ManualClock, onPostgres, startRelay, type TestRelay } from '../helpers/relay.js';
import { connectAgent, WsRpc } from '../helpers/ws-client.js';

/**
 * POST /rpc (the WebSocket's JSON-RPC over HTTP), GET /healthz and GET /metrics, over real HTTP
 * against an in-process relay.
 */

interface Res {
  status: number;
  body: any;
  text: string;
  type: string | null;
}

type Reply = { jsonrpc?: string; id?: unknown; result?: any; error?: { code: number; message: string; data?: any } };

const STACK = /\n\s*at\s|\bat\s+\S+\s+\(|\.(?:ts|js|mjs|cjs):\d+/;

async function http(relay: TestRelay, method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<Res> {
  const res = await fetch(`${relay.url}${path}`, {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body,
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, body: json, text, type: res.headers.get('content-type') };
}

const rpcPost = (relay: TestRelay, payload: unknown, headers?: Record<string, string>) => http(relay, 'POST', '/rpc', typeof payload === 'string' ? payload : JSON.stringify(payload), headers);

const req = (id: unknown, method: string, params?: unknown) => ({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) });

function expectError(t: Test, reply: Reply | undefined, code: number, id: unknown, what: string, msg?: RegExp | string): void {
  t.equal(reply?.jsonrpc, '2.0', `${what}: jsonrpc "2.0"`);
  t.equal(reply?.id, id, `${what}: id ${JSON.stringify(id)}`);
  t.equal(reply?.error?.code, code, `${what}: code ${code}`);
  t.notOk(reply && 'result' in reply, `${what}: no result`);
  t.notMatch(reply?.error?.message ?? '', STACK, `${what}: no stack trace`);
  if (msg !== undefined) t.match(reply?.error?.message, msg, `${what}: message matches ${String(msg)}`);
}

/** One metric sample's value from Prometheus text, or undefined when the series is absent. */
function sample(text: string, name: string, labels = ''): number | undefined {
  const escaped = `${name}${labels}`.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const m = new RegExp(`^${escaped} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}

t.test('POST /rpc: a single request, agent identity by params, and a notification (204)', async (t) => {
  const relay = await startRelay(t);
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });

  const reg = await rpcPost(relay, req(1, 'agent/register', { id: 'alice', label: 'Alice' }));
  t.equal(reg.status, 200, 'HTTP 200');
  t.match(reg.type ?? '', /application\/json/, 'JSON content type');
  t.equal(reg.body.jsonrpc, '2.0', 'a JSON-RPC response');
  t.equal(reg.body.id, 1, 'echoing the id');
  t.equal(reg.body.result.agent.id, 'alice', 'the agent is registered');
  const token: string = reg.body.result.agentToken;
  t.type(token, 'string', 'with its agentToken');

  // Over HTTP an agent is named by agentId + agentToken params.
  const sent = await rpcPost(relay, req('s1', 'message/send', { agentId: 'alice', agentToken: token, to: 'bob', body: 'hello over /rpc' }));
  t.equal(sent.body.id, 's1');
  t.equal(sent.body.result.message.from, 'alice', 'the message is sent as the authenticated agent');
  await bob.rpc.until(() => bob.rpc.messages().length === 1, 3000, 'bob receives it');
  t.same(bob.rpc.messages()[0], sent.body.result.message, 'the WebSocket agent receives exactly the message /rpc returned');

  const hb = await rpcPost(relay, req(2, 'agent/heartbeat', { agentId: 'alice', agentToken: token, status: 'busy' }));
  t.equal(hb.body.result.agent.status, 'busy', 'agent-only methods work with agentId + agentToken');
  const wrong = await rpcPost(relay, req(3, 'message/send', { agentId: 'alice', agentToken: 'not-her-token', to: 'bob', body: 'x' }));
  t.equal(wrong.status, 200, 'a JSON-RPC error is still HTTP 200 on /rpc');
  expectError(t, wrong.body, ERRORS.unauthorized.code, 3, 'a wrong agentToken', /alice/);
  const anon = await rpcPost(relay, req(4, 'agent/heartbeat', {}));
  expectError(t, anon.body, ERRORS.notRegistered.code, 4, 'an agent method without identity');
  const noId = await rpcPost(relay, req(5, 'message/read', { agentToken: token, upTo: 1 }));
  expectError(t, noId.body, ERRORS.invalidParams.code, 5, 'agentToken without agentId', /agentId/);
  const sub = await rpcPost(relay, req(6, 'stream/subscribe', { topics: ['messages'] }));
  expectError(t, sub.body, ERRORS.invalidRequest.code, 6, 'stream/subscribe needs a live connection', /stream/);
  t.equal(bob.rpc.messages().length, 1, 'the refused send reached nobody');

  // A notification is run, and answered with 204 and no body.
  const note = await rpcPost(relay, { jsonrpc: '2.0', method: 'message/send', params: { to: 'bob', body: 'fire and forget', from: 'ext:cron' } });
  t.equal(note.status, 204, 'a notification gets 204');
  t.equal(note.text, '', 'with an empty body');
  await bob.rpc.until(() => bob.rpc.messages().length === 2, 3000, 'the notification ran');
  t.same([bob.rpc.messages()[1]!.from, bob.rpc.messages()[1]!.body], ['ext:cron', 'fire and forget'], 'its effect is real');
  const failing = await rpcPost(relay, { jsonrpc: '2.0', method: 'no/such-method' });
  t.equal(failing.status, 204, 'a failing notification also gets 204');
  t.equal(failing.text, '', 'with an empty body');
  const onlyNotes = await rpcPost(relay, [
    { jsonrpc: '2.0', method: 'agent/list' },
    { jsonrpc: '2.0', method: 'message/send', params: { body: 'no target' } },
  ]);
  t.equal(onlyNotes.status, 204, 'a batch of notifications only gets 204');
  t.equal(onlyNotes.text, '', 'and no body');

  const disc = await rpcPost(relay, req(7, 'rpc.discover'));
  t.ok(
    disc.body.result.methods.some((m: { name: string }) => m.name === 'message/send'),
    'rpc.discover works over /rpc',
  );
});

/** A batch mixing writes, reads and every kind of error, run as an observer. */
const MIXED = [
  req(1, 'agent/list'),
  req(2, 'message/send', { to: 'broadcast', body: 'batch hello', from: 'ext:ci' }),
  req(3, 'task/create', { title: 'from a batch', target: 'alice', from: 'ext:ci' }),
  req(4, 'message/get', { id: 999 }),
  req(5, 'task/claim', { id: 1 }),
  req(6, 'no/such-method'),
  req(7, 'message/send', { body: 'no target' }),
  { jsonrpc: '2.0', method: 'agent/list' },
  { id: 8, method: 'agent/list' },
  req('nine', 'thread/get', { id: 999 }),
  42,
  req(10, 'task/list', { status: 'open' }),
];

function checkMixed(t: Test, answers: Reply[], what: string): void {
  t.ok(Array.isArray(answers), `${what}: answered with one array`);
  t.equal(answers.length, 11, `${what}: one answer per entry but the notification`);
  const byId = (id: unknown) => answers.find((a) => a.id === id);
  t.same(
    byId(1)?.result?.agents?.map((a: { id: string }) => a.id),
    ['alice'],
    `${what}: agent/list answered`,
  );
  t.equal(byId(2)?.result?.message?.body, 'batch hello', `${what}: message/send answered`);
  t.same(byId(2)?.result?.recipients, ['alice'], `${what}: broadcast reached alice`);
  t.equal(byId(3)?.result?.created, true, `${what}: task/create answered`);
  expectError(t, byId(4), ERRORS.notFound.code, 4, `${what}: unknown message`);
  expectError(t, byId(5), ERRORS.notRegistered.code, 5, `${what}: claim as an observer`);
  expectError(t, byId(6), ERRORS.methodNotFound.code, 6, `${what}: unknown method`);
  expectError(t, byId(7), ERRORS.invalidParams.code, 7, `${what}: bad params`, /\bto\b/);
  expectError(t, byId(8), ERRORS.invalidRequest.code, 8, `${what}: missing jsonrpc`);
  expectError(t, byId('nine'), ERRORS.notFound.code, 'nine', `${what}: unknown thread`);
  expectError(t, byId(null), ERRORS.invalidRequest.code, null, `${what}: a non-object entry`);
  t.ok(Array.isArray(byId(10)?.result?.tasks), `${what}: task/list answered`);
}

t.test('POST /rpc: a mixed batch gets one array with the same results and errors as the WebSocket', async (t) => {
  // Two fresh relays on the same fixed clock: one batch over HTTP, the same batch over a WebSocket.
  const at = 1_700_000_000_000;
  const overHttp = await startRelay(t, {}, { clock: new ManualClock(at) });
  const overWs = await startRelay(t, {}, { clock: new ManualClock(at) });
  for (const relay of [overHttp, overWs]) {
    const r = await rpcPost(relay, req(0, 'agent/register', { id: 'alice' }));
    t.equal(r.body.result.agent.id, 'alice', 'alice is registered');
  }
  const observer = await WsRpc.connect(t, overWs.wsUrl);

  const res = await rpcPost(overHttp, MIXED);
  t.equal(res.status, 200, 'HTTP 200');
  t.match(res.type ?? '', /application\/json/, 'JSON content type');
  checkMixed(t, res.body, 'HTTP');
  const ws = await observer.sendRaw(JSON.stringify(MIXED));
  checkMixed(t, ws, 'WebSocket');
  t.same(res.body, ws, 'the HTTP answer equals the WebSocket answer, entry for entry');

  const stored = await rpcPost(overHttp, req(11, 'message/list', {}));
  t.same(
    stored.body.result.messages.map((m: { body: string }) => m.body),
    ['batch hello', 'from a batch'],
    'the writes of the batch were committed (send and the task announcement)',
  );
  t.same(stored.body.result, await observer.call('message/list', {}), 'both relays hold the same messages');
});

t.test('POST /rpc: empty batch, batch over the limit, malformed JSON, oversize body, wrong verbs', async (t) => {
  const relay = await startRelay(t, { maxFrameBytes: 16 * 1024 });

  const empty = await rpcPost(relay, '[]');
  t.equal(empty.status, 200, 'an empty batch: HTTP 200');
  t.notOk(Array.isArray(empty.body), 'answered with a single error');
  expectError(t, empty.body, ERRORS.invalidRequest.code, null, 'an empty batch', /empty batch/);

  const over = Array.from({ length: LIMITS.maxBatch + 1 }, (_, i) => req(i + 1, 'message/send', { to: 'broadcast', body: `m${i}`, from: 'ext:ci' }));
  const tooMany = await rpcPost(relay, over);
  t.equal(tooMany.status, 200, 'a batch over the limit: HTTP 200');
  t.notOk(Array.isArray(tooMany.body), 'refused whole, not per entry');
  expectError(t, tooMany.body, ERRORS.tooLarge.code, null, `a batch of ${LIMITS.maxBatch + 1}`, String(LIMITS.maxBatch + 1));
  t.same((await rpcPost(relay, req(1, 'message/list', {}))).body.result.messages, [], 'no entry of the refused batch ran');
  const full = await rpcPost(
    relay,
    Array.from({ length: LIMITS.maxBatch }, (_, i) => req(i + 1, 'agent/list')),
  );
  t.equal(full.body.length, LIMITS.maxBatch, `a batch of exactly ${LIMITS.maxBatch} is served`);

  for (const [what, text] of [
    ['truncated JSON', '{"jsonrpc":"2.0","id":1,"method":'],
    ['plain text', 'hello'],
    ['an empty body', ''],
    ['a truncated batch', '[{"jsonrpc":"2.0","id":1,"method":"agent/list"},'],
  ] as const) {
    const res = await rpcPost(relay, text);
    t.equal(res.status, 200, `${what}: HTTP 200`);
    expectError(t, res.body, ERRORS.parseError.code, null, what, /parse error/);
  }

  const big = await rpcPost(relay, req(1, 'message/send', { to: 'broadcast', body: 'x'.repeat(20 * 1024), from: 'ext:ci' }));
  t.equal(big.status, 413, 'a body over maxFrameBytes: 413');
  t.equal(big.body?.error?.code, ERRORS.tooLarge.code, 'with -32005');
  t.same((await rpcPost(relay, req(2, 'message/list', {}))).body.result.messages, [], 'nothing was stored');

  for (const verb of ['GET', 'PUT', 'DELETE', 'PATCH']) {
    const res = await http(relay, verb, '/rpc', verb === 'GET' || verb === 'DELETE' ? undefined : JSON.stringify(req(1, 'agent/list')));
    t.equal(res.status, 405, `${verb} /rpc: 405`);
    t.equal(res.body?.error?.code, ERRORS.invalidRequest.code, `${verb} /rpc: -32600 in the body`);
    t.match(res.body?.error?.message, /POST/, `${verb} /rpc: the message says to use POST`);
  }
  const ok = await rpcPost(relay, req(9, 'agent/list'));
  t.same(ok.body, { jsonrpc: '2.0', id: 9, result: { agents: [] } }, 'the relay keeps serving');
});

t.test('POST /rpc with a relay token needs the bearer', async (t) => {
  const relayToken = `relay-${randomBytes(16).toString('hex')}`;
  const relay = await startRelay(t, { token: relayToken });
  const none = await rpcPost(relay, req(1, 'agent/list'));
  t.equal(none.status, 401, 'no bearer: 401');
  t.equal(none.body?.error?.code, ERRORS.unauthorized.code, 'with -32001');
  const wrong = await rpcPost(relay, req(1, 'agent/list'), { authorization: 'Bearer not-the-relay-token' });
  t.equal(wrong.status, 401, 'a wrong bearer: 401');
  const ok = await rpcPost(relay, req(1, 'agent/list'), { authorization: `Bearer ${relayToken}` });
  t.equal(ok.status, 200, 'the right bearer: 200');
  t.same(ok.body.result, { agents: [] }, 'and the call is served');
  t.equal((await http(relay, 'GET', '/healthz')).status, 401, '/healthz needs the bearer too');
  t.equal((await http(relay, 'GET', '/metrics')).status, 401, '/metrics needs the bearer too');
  t.equal((await http(relay, 'GET', '/healthz', undefined, { authorization: `Bearer ${relayToken}` })).status, 200, '/healthz with the bearer: 200');
  t.notMatch(relay.logText(), relayToken, 'the relay token is not logged');
});

t.test('GET /healthz reports the relay and its database', async (t) => {
  const relay = await startRelay(t);
  const first = await http(relay, 'GET', '/healthz');
  t.equal(first.status, 200, '/healthz: 200');
  t.match(first.type ?? '', /application\/json/, 'JSON');
  t.match(first.body, { ok: true, dbWritable: true, agents: 0, connections: 0, cursor: 0 }, 'healthy, writable, empty');

  const a = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  await a.rpc.call('message/send', { to: 'alice', body: 'note to self' });
  const after = await http(relay, 'GET', '/healthz');
  t.match(after.body, { ok: true, dbWritable: true, agents: 1, connections: 1, cursor: 1 }, 'counts follow what happened');
});

t.test('GET /metrics is Prometheus text with the relay metrics, and values follow what happens', async (t) => {
  const relay = await startRelay(t);
  const scrape = async () => {
    const res = await http(relay, 'GET', '/metrics');
    t.equal(res.status, 200, '/metrics: 200');
    t.match(res.type ?? '', /^text\/plain; version=0\.0\.4/, 'Prometheus text content type');
    return res.text;
  };
  const before = await scrape();
  for (const [name, type] of [
    ['agent_relay_connections', 'gauge'],
    ['agent_relay_agents', 'gauge'],
    ['agent_relay_message_cursor', 'gauge'],
    ['agent_relay_tasks', 'gauge'],
    ['agent_relay_outbox', 'gauge'],
    ['agent_relay_commit_seconds', 'histogram'],
    ['agent_relay_store_apply_seconds', 'histogram'],
    ['agent_relay_store_commit_seconds', 'histogram'],
    ['agent_relay_nodejs_eventloop_lag_seconds', 'gauge'],
    ['agent_relay_nodejs_eventloop_lag_p99_seconds', 'gauge'],
  ] as const) {
    t.match(before, new RegExp(`^# TYPE ${name} ${type}$`, 'm'), `${name} is a ${type}`);
    t.match(before, new RegExp(`^# HELP ${name} \\S`, 'm'), `${name} has help text`);
  }
  for (const status of ['online', 'busy', 'away', 'offline']) t.equal(sample(before, 'agent_relay_agents', `{status="${status}"}`), 0, `agents ${status}: 0`);
  t.equal(sample(before, 'agent_relay_connections', '{kind="ws"}'), 0, 'no WebSocket connections');
  t.equal(sample(before, 'agent_relay_message_cursor'), 0, 'no messages');
  t.equal(sample(before, 'agent_relay_tasks', '{status="open"}') ?? 0, 0, 'no open tasks');
  t.equal(sample(before, 'agent_relay_outbox', '{state="pending"}'), 0, 'outbox depth 0');
  t.type(sample(before, 'agent_relay_commit_seconds_count'), 'number', 'commit latency has a count');
  t.equal(sample(before, 'agent_relay_commit_seconds_bucket', '{le="+Inf"}'), sample(before, 'agent_relay_commit_seconds_count'), 'the +Inf bucket equals the count');
  t.ok(Number.isFinite(sample(before, 'agent_relay_nodejs_eventloop_lag_seconds')), 'event-loop lag has a value');
  const names = [...before.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!);
  t.ok(names.includes('agent_relay_process_resident_memory_bytes'), 'process metrics are there, under agent_relay_process_');
  t.same(
    names.filter((n) => !n.startsWith('agent_relay_') || n.includes('process_process')),
    [],
    'every name has the agent_relay_ prefix once, none process_process',
  );

  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  await connectAgent(t, relay.wsUrl, { id: 'bob' });
  await http(relay, 'POST', '/api/agents', JSON.stringify({ id: 'carol' }));
  await alice.rpc.call('message/send', { to: 'bob', body: 'hi' });
  await alice.rpc.call('task/create', { title: 'count me', target: 'bob' });
  await alice.rpc.call('agent/heartbeat', { status: 'busy' });

  const after = await scrape();
  t.equal(sample(after, 'agent_relay_agents', '{status="online"}'), 2, 'agents online went up to 2 (bob, carol)');
  t.equal(sample(after, 'agent_relay_agents', '{status="busy"}'), 1, 'agents busy: alice');
  t.equal(sample(after, 'agent_relay_connections', '{kind="ws"}'), 2, 'two WebSocket connections');
  t.equal(sample(after, 'agent_relay_message_cursor'), 2, 'message cursor moved (the send and the task announcement)');
  t.equal(sample(after, 'agent_relay_tasks', '{status="open"}'), 1, 'one open task');
  t.ok(sample(after, 'agent_relay_commit_seconds_count')! > sample(before, 'agent_relay_commit_seconds_count')!, 'commits were observed in the latency histogram');
  const inWriter = (text: string) => sample(text, 'agent_relay_store_apply_seconds_sum')! + sample(text, 'agent_relay_store_commit_seconds_sum')!;
  if (onPostgres) {
    t.equal(sample(after, 'agent_relay_store_apply_seconds_count'), 0, 'PostgreSQL store: no SQLite writer thread to time');
  } else {
    // Every batch the commit queue hands over is one the writer thread applies: the counts move
    // together, and its time in the writer is part of the wait the event loop saw.
    t.equal(
      sample(after, 'agent_relay_store_apply_seconds_count')! - sample(before, 'agent_relay_store_apply_seconds_count')!,
      sample(after, 'agent_relay_commit_seconds_count')! - sample(before, 'agent_relay_commit_seconds_count')!,
      'one writer-thread timing per group commit',
    );
    t.equal(sample(after, 'agent_relay_store_commit_seconds_count'), sample(after, 'agent_relay_store_apply_seconds_count'), 'a COMMIT timed for every batch applied');
    t.ok(inWriter(after) > inWriter(before), 'the writer thread took some time');
    t.ok(inWriter(after) <= sample(after, 'agent_relay_commit_seconds_sum')!, "the writer thread's share is no more than the commits' whole wait");
  }
  t.notMatch(after, alice.token, 'no token in the metrics');
});
