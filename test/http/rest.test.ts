import { createHmac, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { ERRORS } from '../../protocol/errors.js';
import { ManualClock, startRelay, type TestRelay } from '../helpers/relay.js';
import { connectAgent, rpcErrorOf, WsRpc } from '../helpers/ws-client.js';

/**
 * The REST surface of PROTOCOL.md ("HTTP adapters") over real HTTP against an in-process relay:
 * every endpoint with its real effect (seen over the WebSocket or a later read), and the HTTP
 * status a user expects for each JSON-RPC error.
 */

interface Res {
  status: number;
  body: any;
  text: string;
  type: string | null;
}

interface Who {
  id: string;
  token: string;
}

interface ApiOptions {
  /** JSON-encoded as the request body. */
  body?: unknown;
  /** Sent as is (for malformed bodies). */
  raw?: string;
  headers?: Record<string, string>;
  /** X-Agent-Id + X-Agent-Token. */
  as?: Who;
  /** Only X-Agent-Token (routes whose path names the agent). */
  token?: string;
}

const STACK = /\n\s*at\s|\bat\s+\S+\s+\(|\.(?:ts|js|mjs|cjs):\d+/;

async function api(relay: TestRelay, method: string, path: string, opts: ApiOptions = {}): Promise<Res> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.as) {
    headers['x-agent-id'] = opts.as.id;
    headers['x-agent-token'] = opts.as.token;
  }
  if (opts.token !== undefined) headers['x-agent-token'] = opts.token;
  let body: string | undefined;
  if (opts.raw !== undefined) body = opts.raw;
  else if (opts.body !== undefined) body = JSON.stringify(opts.body);
  if (body !== undefined && !headers['content-type']) headers['content-type'] = 'application/json';
  const res = await fetch(`${relay.url}${path}`, { method, headers, body, signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, body: json, text, type: res.headers.get('content-type') };
}

/** Assert an HTTP error answer: status, JSON-RPC code in the body, a message matching `msg`, no stack. */
function expectHttpError(t: Test, res: Res, status: number, code: number, what: string, msg?: RegExp | string): void {
  t.equal(res.status, status, `${what}: HTTP ${status}`);
  t.match(res.type ?? '', /application\/json/, `${what}: JSON body`);
  t.equal(res.body?.error?.code, code, `${what}: code ${code}`);
  t.type(res.body?.error?.message, 'string', `${what}: has a message`);
  t.notMatch(res.body?.error?.message ?? '', STACK, `${what}: no stack trace`);
  if (msg !== undefined) t.match(res.body?.error?.message, msg, `${what}: message matches ${String(msg)}`);
}

/** Register an agent over REST. */
async function register(t: Test, relay: TestRelay, params: Record<string, unknown>): Promise<Who & { res: Res }> {
  const res = await api(relay, 'POST', '/api/agents', { body: params });
  t.equal(res.status < 300, true, `POST /api/agents ${JSON.stringify(params)} succeeds (${res.status})`);
  return { id: res.body.agent.id, token: res.body.agentToken, res };
}

/** Re-read until `cond` holds (delivery states and callbacks are written after the answer); bounded. */
async function eventually<T>(read: () => Promise<T>, cond: (v: T) => boolean, what: string, ms = 5000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await read();
    if (cond(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const states = (deliveries: Array<{ agentId: string; state: string }>) => Object.fromEntries(deliveries.map((d) => [d.agentId, d.state]));
const kinds = (events: Array<{ kind: string }>) => events.map((e) => e.kind);

t.test('agents: register, list, update and heartbeat over REST, seen over the WebSocket', async (t) => {
  const clock = new ManualClock(1_700_000_000_000);
  const relay = await startRelay(t, {}, { clock });
  const observer = await WsRpc.connect(t, relay.wsUrl);

  const reg = await api(relay, 'POST', '/api/agents', { body: { id: 'carol', label: 'Carol', tags: ['http'], capabilities: ['review'], client: 'curl' } });
  t.equal(reg.status, 201, 'registering a new agent is a create');
  t.equal(reg.body.created, true);
  t.equal(reg.body.agent.id, 'carol', 'the agent is named as asked');
  t.equal(reg.body.agent.status, 'online', 'a registered agent is online');
  t.equal(reg.body.agent.connected, false, 'a REST agent holds no live connection');
  t.equal(reg.body.cursor, 0, 'cursor is the highest message id (none yet)');
  t.type(reg.body.agentToken, 'string', 'an agentToken is returned');
  t.ok(reg.body.agentToken.length >= 16, 'the token is long enough to be a secret');
  t.notOk('tokenHash' in reg.body.agent, 'the token hash never leaves the relay');
  const carol: Who = { id: 'carol', token: reg.body.agentToken };

  const wsList = await observer.call('agent/list', {});
  const restList = await api(relay, 'GET', '/api/agents');
  t.equal(restList.status, 200, 'GET /api/agents: 200');
  t.same(restList.body, wsList, 'GET /api/agents answers exactly what agent/list answers over the WebSocket');
  t.same(
    restList.body.agents.map((a: { id: string }) => a.id),
    ['carol'],
    'the REST registration is visible to WebSocket clients',
  );
  t.same(
    (await api(relay, 'GET', '/api/agents?tag=http')).body.agents.map((a: { id: string }) => a.id),
    ['carol'],
    '?tag= filters',
  );
  t.same(
    (await api(relay, 'GET', '/api/agents?capability=review')).body.agents.map((a: { id: string }) => a.id),
    ['carol'],
    '?capability= filters',
  );
  t.same((await api(relay, 'GET', '/api/agents?tag=nope')).body.agents, [], '?tag= with no match is empty');
  t.same((await api(relay, 'GET', '/api/agents?status=busy')).body.agents, [], '?status=busy: nobody yet');
  expectHttpError(t, await api(relay, 'GET', '/api/agents?status=sleeping'), 400, ERRORS.invalidParams.code, 'GET /api/agents?status=sleeping', /\bstatus\b/);

  // Taking over an existing id needs its token.
  expectHttpError(t, await api(relay, 'POST', '/api/agents', { body: { id: 'carol' } }), 401, ERRORS.unauthorized.code, 're-register without the token', /carol/);
  expectHttpError(t, await api(relay, 'POST', '/api/agents', { body: { id: 'carol', agentToken: 'not-the-token' } }), 401, ERRORS.unauthorized.code, 're-register with a wrong token');
  const again = await api(relay, 'POST', '/api/agents', { body: { id: 'carol', agentToken: carol.token } });
  t.equal(again.status, 200, 're-registering an existing agent with its token: 200 (nothing created)');
  t.equal(again.body.agentToken, carol.token, 'the same token is kept');
  t.equal(again.body.agent.label, 'Carol', 'fields not given are kept');
  expectHttpError(t, await api(relay, 'POST', '/api/agents', { body: { id: 'Not Valid' } }), 400, ERRORS.invalidParams.code, 'register with a bad id', /\bid\b/);
  expectHttpError(t, await api(relay, 'POST', '/api/agents', { body: { id: 'x', colour: 'red' } }), 400, ERRORS.invalidParams.code, 'register with an unknown field', /colour/);

  // PATCH /api/agents/:id — the path names the agent; X-Agent-Token proves it is the caller.
  const patched = await api(relay, 'PATCH', '/api/agents/carol', { token: carol.token, body: { label: 'Carol B', tags: ['http', 'ops'], status: 'busy' } });
  t.equal(patched.status, 200, 'PATCH /api/agents/carol with its token: 200');
  t.equal(patched.body.agent.label, 'Carol B', 'label changed');
  t.equal(patched.body.agent.status, 'busy', 'the agent itself may change its status');
  const seen = (await observer.call('agent/list', { tag: 'ops' })).agents;
  t.same(
    seen.map((a: { id: string; label: string; status: string }) => [a.id, a.label, a.status]),
    [['carol', 'Carol B', 'busy']],
    'the update is what WebSocket clients see',
  );
  const withId = await api(relay, 'PATCH', '/api/agents/carol', { as: carol, body: { label: 'Carol C' } });
  t.equal(withId.status, 200, 'X-Agent-Id naming the same agent is accepted too');
  t.equal(withId.body.agent.label, 'Carol C');
  const byObserver = await api(relay, 'PATCH', '/api/agents/carol', { body: { label: 'Carol D' } });
  t.equal(byObserver.status, 200, 'an observer may change the label');
  t.equal(byObserver.body.agent.label, 'Carol D');
  expectHttpError(t, await api(relay, 'PATCH', '/api/agents/carol', { body: { tags: ['http'] } }), 401, ERRORS.unauthorized.code, 'an observer changing tags', /\btags\b.*own agentToken/);
  expectHttpError(t, await api(relay, 'PATCH', '/api/agents/carol', { body: { status: 'offline' } }), 401, ERRORS.unauthorized.code, 'an observer changing status', /\bstatus\b/);
  expectHttpError(t, await api(relay, 'PATCH', '/api/agents/carol', { token: 'wrong-token', body: { label: 'x' } }), 401, ERRORS.unauthorized.code, 'PATCH with a wrong X-Agent-Token');
  expectHttpError(t, await api(relay, 'PATCH', '/api/agents/carol', { token: carol.token, body: { label: 7 } }), 400, ERRORS.invalidParams.code, 'PATCH with a numeric label', /\blabel\b/);
  expectHttpError(t, await api(relay, 'PATCH', '/api/agents/nobody', { body: { label: 'x' } }), 404, ERRORS.notFound.code, 'PATCH an unknown agent', /nobody/);

  // Heartbeat: keeps the agent seen (exact time from the manual clock) and may set status.
  const dave = await register(t, relay, { id: 'dave' });
  clock.advance(5000);
  const hb = await api(relay, 'POST', '/api/agents/carol/heartbeat', { token: carol.token, body: { status: 'away' } });
  t.equal(hb.status, 200, 'heartbeat: 200');
  t.equal(hb.body.agent.lastSeenAt, clock.now(), 'lastSeenAt moved to the heartbeat time');
  t.equal(hb.body.agent.status, 'away', 'heartbeat may set status');
  const listed = (await api(relay, 'GET', '/api/agents?status=away')).body.agents;
  t.same(
    listed.map((a: { id: string }) => a.id),
    ['carol'],
    'the new status is listed',
  );
  const hbEmpty = await api(relay, 'POST', '/api/agents/carol/heartbeat', { token: carol.token });
  t.equal(hbEmpty.status, 200, 'a heartbeat without a body is fine');
  t.equal(hbEmpty.body.agent.status, 'away', 'and keeps the status');
  expectHttpError(t, await api(relay, 'POST', '/api/agents/carol/heartbeat'), 401, ERRORS.unauthorized.code, 'heartbeat without X-Agent-Token', /X-Agent-Token/i);
  expectHttpError(t, await api(relay, 'POST', '/api/agents/carol/heartbeat', { token: 'wrong-token' }), 401, ERRORS.unauthorized.code, 'heartbeat with a wrong token');
  expectHttpError(t, await api(relay, 'POST', '/api/agents/carol/heartbeat', { token: dave.token }), 401, ERRORS.unauthorized.code, "heartbeat with another agent's token");
  expectHttpError(t, await api(relay, 'POST', '/api/agents/ghost/heartbeat', { token: carol.token }), 401, ERRORS.unauthorized.code, 'heartbeat for an unknown agent');
  expectHttpError(
    t,
    await api(relay, 'POST', '/api/agents/carol/heartbeat', { token: carol.token, body: { status: 'napping' } }),
    400,
    ERRORS.invalidParams.code,
    'heartbeat with a bad status',
    /\bstatus\b/,
  );
  expectHttpError(
    t,
    await api(relay, 'PATCH', '/api/agents/carol', { as: dave, body: { label: 'hijacked' } }),
    401,
    ERRORS.unauthorized.code,
    'an agent updating another agent',
    /dave cannot update agent carol/,
  );
  const carolNow = (await observer.call('agent/list', {})).agents.find((a: { id: string }) => a.id === 'carol');
  t.not(carolNow.label, 'hijacked', 'the refused update changed nothing');
  t.equal(carolNow.status, 'away', 'refused heartbeats changed nothing');
});

t.test('messages: a REST send reaches a WebSocket agent; list, read, ack, get with delivery states, threads', async (t) => {
  const relay = await startRelay(t);
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const carol = await register(t, relay, { id: 'carol' });

  const sent = await api(relay, 'POST', '/api/messages', { as: carol, body: { to: 'bob', body: 'hello bob', subject: 'greeting', meta: { k: 1 } } });
  t.equal(sent.status, 201, 'POST /api/messages: 201');
  t.equal(sent.body.message.from, 'carol', 'an agent sends as itself');
  t.same(sent.body.recipients, ['bob'], 'recipients resolved and returned');
  t.same(sent.body.warnings, [], 'bob is online and ready: no warnings');
  await bob.rpc.until(() => bob.rpc.messages().length === 1, 3000, 'bob receives the REST message');
  t.same(bob.rpc.messages()[0], sent.body.message, 'the WebSocket push carries exactly the message REST returned');

  // The same send over the WebSocket answers the same shape.
  const wsSent = await bob.rpc.call('message/send', { to: 'carol', body: 'hello carol', replyTo: sent.body.message.id });
  t.same(Object.keys(sent.body).sort(), Object.keys(wsSent).sort(), 'REST and WebSocket sends answer the same fields');
  t.same(Object.keys(sent.body.message).sort(), Object.keys(wsSent.message).sort(), 'with the same message fields');
  t.equal(wsSent.message.threadId, sent.body.message.id, 'the reply joins the thread of the REST message');

  const fromCi = await api(relay, 'POST', '/api/messages', { body: { to: 'carol', body: 'build failed', from: 'ext:ci' } });
  t.equal(fromCi.status, 201, 'an observer may send');
  t.equal(fromCi.body.message.from, 'ext:ci', 'with an ext: sender of its choosing');
  t.same(fromCi.body.warnings, [], 'carol is online: no warning');
  const queued = await api(relay, 'GET', `/api/messages/${fromCi.body.message.id}`);
  t.same(
    queued.body.deliveries.map((d: { agentId: string; state: string }) => [d.agentId, d.state]),
    [['carol', 'queued']],
    'carol has no socket and has not polled: queued, not delivered',
  );
  const nobody = await api(relay, 'POST', '/api/messages', { body: { to: 'tag:nobody-has-it', body: 'anyone?' } });
  t.equal(nobody.status, 201, 'zero recipients is not an error');
  t.same(nobody.body.recipients, [], 'no recipients');
  t.same(
    nobody.body.warnings.map((w: { reason: string }) => w.reason),
    ['no_recipients'],
    'but it is reported',
  );

  expectHttpError(t, await api(relay, 'POST', '/api/messages', { body: { body: 'no target' } }), 400, ERRORS.invalidParams.code, 'send without to', /\bto\b/);
  const bad = await api(relay, 'POST', '/api/messages', { body: { to: 'bob', body: 42 } });
  expectHttpError(t, bad, 400, ERRORS.invalidParams.code, 'send with a numeric body', /\bbody\b/);
  t.ok(Array.isArray(bad.body.error.data?.issues), 'data.issues lists the zod issues');
  t.equal(bad.body.error.data.issues[0].path, 'body', 'data names the field');
  expectHttpError(t, await api(relay, 'POST', '/api/messages', { body: { to: 'bob', body: 'x', from: 'carol' } }), 400, ERRORS.invalidParams.code, 'an observer impersonating an agent', /\bfrom\b/);
  expectHttpError(
    t,
    await api(relay, 'POST', '/api/messages', { as: carol, body: { to: 'bob', body: 'x', from: 'ext:ci' } }),
    400,
    ERRORS.invalidParams.code,
    'an agent choosing a sender',
    /\bfrom\b/,
  );
  expectHttpError(t, await api(relay, 'POST', '/api/messages', { body: { to: 'nobody', body: 'x' } }), 404, ERRORS.notFound.code, 'send to an unknown agent id', /nobody/);
  expectHttpError(
    t,
    await api(relay, 'POST', '/api/messages', { as: { id: 'carol', token: 'wrong-token' }, body: { to: 'bob', body: 'x' } }),
    401,
    ERRORS.unauthorized.code,
    'send with a wrong X-Agent-Token',
  );
  expectHttpError(t, await api(relay, 'POST', '/api/messages', { body: { to: 'bob', body: 'x', replyTo: 999 } }), 404, ERRORS.notFound.code, 'reply to an unknown message', /replyTo/);
  t.equal(bob.rpc.messages().length, 1, 'no refused send reached bob');

  // GET /api/messages: carol's inbox by her identity; observers see every message.
  const inbox = await api(relay, 'GET', '/api/messages', { as: carol });
  t.equal(inbox.status, 200, 'GET /api/messages: 200');
  t.same(
    inbox.body.messages.map((m: { id: number }) => m.id),
    [wsSent.message.id, fromCi.body.message.id],
    "carol's inbox holds what was sent to her, in order",
  );
  t.equal(inbox.body.cursor, fromCi.body.message.id, 'cursor is the last id returned');
  const rpcInbox = await api(relay, 'POST', '/rpc', { body: { jsonrpc: '2.0', id: 1, method: 'message/list', params: { agentId: 'carol', agentToken: carol.token } } });
  t.same(inbox.body, rpcInbox.body.result, 'the same listing as message/list over POST /rpc');
  const since = await api(relay, 'GET', `/api/messages?since=${wsSent.message.id}`, { as: carol });
  t.same(
    since.body.messages.map((m: { id: number }) => m.id),
    [fromCi.body.message.id],
    '?since= pages by cursor',
  );
  const all = await api(relay, 'GET', '/api/messages');
  t.equal(all.body.messages.length, 4, 'an observer without agentId lists every message');
  const limited = await api(relay, 'GET', '/api/messages?limit=1');
  t.same(
    limited.body.messages.map((m: { id: number }) => m.id),
    [sent.body.message.id],
    '?limit= caps the page',
  );
  expectHttpError(t, await api(relay, 'GET', '/api/messages?limit=0'), 400, ERRORS.invalidParams.code, '?limit=0', /\blimit\b/);
  expectHttpError(t, await api(relay, 'GET', '/api/messages?since=abc'), 400, ERRORS.invalidParams.code, '?since=abc', /\bsince\b/);
  expectHttpError(t, await api(relay, 'GET', '/api/messages?agentId=carol'), 401, ERRORS.unauthorized.code, "an observer asking for carol's inbox", /inbox of agent carol/);
  expectHttpError(t, await api(relay, 'GET', '/api/messages?agentId=nobody'), 401, ERRORS.unauthorized.code, 'inbox of an unknown agent: no hint that it does not exist', /nobody/);

  // Delivery states: carol (no socket) went queued → pushed by her own poll; bob by his WebSocket.
  const ciId = fromCi.body.message.id;
  const got = await eventually(
    () => api(relay, 'GET', `/api/messages/${ciId}`),
    (r) => states(r.body.deliveries).carol === 'pushed',
    "carol's poll recorded as pushed",
  );
  t.equal(got.status, 200, 'GET /api/messages/:id: 200');
  t.same(got.body.message, fromCi.body.message, 'the stored message');
  t.same(
    got.body.deliveries.map((d: { agentId: string }) => d.agentId),
    ['carol'],
    'one delivery per recipient',
  );
  const toBob = await eventually(
    () => api(relay, 'GET', `/api/messages/${sent.body.message.id}`),
    (r) => states(r.body.deliveries).bob === 'pushed',
    "bob's push recorded",
  );
  t.same(toBob.body, await bob.rpc.call('message/get', { id: sent.body.message.id }), 'the same answer as message/get over the WebSocket');

  // Ack: the adapter confirms hand-over.
  const acked = await api(relay, 'POST', `/api/messages/${ciId}/ack`, { as: carol, body: { state: 'injected' } });
  t.equal(acked.status, 200, 'POST /api/messages/:id/ack: 200');
  t.same([acked.body.delivery.agentId, acked.body.delivery.messageId, acked.body.delivery.state], ['carol', ciId, 'injected'], 'the delivery moved to injected');
  t.equal(states((await api(relay, 'GET', `/api/messages/${ciId}`)).body.deliveries).carol, 'injected', 'GET shows injected');
  expectHttpError(t, await api(relay, 'POST', `/api/messages/${ciId}/ack`, { as: carol, body: { state: 'pushed' } }), 400, ERRORS.invalidParams.code, 'ack with state pushed', /\bstate\b/);
  expectHttpError(
    t,
    await api(relay, 'POST', `/api/messages/${sent.body.message.id}/ack`, { as: carol, body: { state: 'injected' } }),
    404,
    ERRORS.notFound.code,
    'ack of a message not delivered to the caller',
  );
  expectHttpError(t, await api(relay, 'POST', `/api/messages/${ciId}/ack`, { body: { state: 'injected' } }), 401, ERRORS.unauthorized.code, 'ack without X-Agent-Token', /X-Agent-Token/i);

  // Read markers.
  const read = await api(relay, 'POST', '/api/messages/read', { as: carol, body: { ids: [ciId] } });
  t.equal(read.status, 200, 'POST /api/messages/read: 200');
  t.equal(read.body.marked, 1, 'one message marked');
  const unread = await api(relay, 'GET', '/api/messages?unread=true', { as: carol });
  t.same(
    unread.body.messages.map((m: { id: number }) => m.id),
    [wsSent.message.id],
    '?unread=true no longer lists it',
  );
  t.equal(states((await api(relay, 'GET', `/api/messages/${ciId}`)).body.deliveries).carol, 'read', 'GET shows read');
  const upTo = await api(relay, 'POST', '/api/messages/read', { as: carol, body: { upTo: ciId } });
  t.equal(upTo.body.marked, 1, 'upTo marks the remaining one');
  t.same((await api(relay, 'GET', '/api/messages?unread=1', { as: carol })).body.messages, [], 'nothing unread');
  t.equal((await bob.rpc.call('message/list', { agentId: 'bob', unread: true })).messages.length, 1, "carol's reading does not touch bob's read state");
  expectHttpError(t, await api(relay, 'POST', '/api/messages/read', { as: carol, body: {} }), 400, ERRORS.invalidParams.code, 'read with neither ids nor upTo', /\bids\b/);
  expectHttpError(t, await api(relay, 'POST', '/api/messages/read', { as: carol, body: { ids: ['one'] } }), 400, ERRORS.invalidParams.code, 'read with a bad id', /\bids\b/);
  expectHttpError(t, await api(relay, 'POST', '/api/messages/read', { body: { ids: [ciId] } }), 401, ERRORS.unauthorized.code, 'read without X-Agent-Token', /X-Agent-Token/i);
  expectHttpError(t, await api(relay, 'GET', '/api/messages?unread=true'), 400, ERRORS.invalidParams.code, 'unread without an agent', /\bunread\b/);

  // Threads.
  const thread = await api(relay, 'GET', `/api/threads/${wsSent.message.id}`);
  t.equal(thread.status, 200, 'GET /api/threads/:id: 200');
  t.equal(thread.body.threadId, sent.body.message.id, 'threadId is the root');
  t.same(
    thread.body.messages.map((m: { id: number }) => m.id),
    [sent.body.message.id, wsSent.message.id],
    'root and reply, in order',
  );
  t.same(thread.body, await bob.rpc.call('thread/get', { id: sent.body.message.id }), 'the same answer as thread/get over the WebSocket');

  expectHttpError(t, await api(relay, 'GET', '/api/messages/999'), 404, ERRORS.notFound.code, 'GET an unknown message', /999/);
  expectHttpError(t, await api(relay, 'GET', '/api/threads/999'), 404, ERRORS.notFound.code, 'GET an unknown thread', /999/);
});

t.test('claimable messages: claim over REST, and a second claimer gets 409 naming the owner', async (t) => {
  const relay = await startRelay(t);
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob', tags: ['dev'] });
  const carol = await register(t, relay, { id: 'carol', tags: ['dev'] });
  const dave = await register(t, relay, { id: 'dave', tags: ['dev'] });

  const sent = await api(relay, 'POST', '/api/messages', { body: { to: 'tag:dev', body: 'fix the build', claimable: true, from: 'ext:ci' } });
  t.equal(sent.status, 201, 'a claimable send: 201');
  t.ok(sent.body.task, 'the claimable message created a task');
  t.equal(sent.body.message.taskId, sent.body.task.id, 'the message carries the task id');
  t.same([...sent.body.recipients].sort(), ['bob', 'carol', 'dave'], 'every dev is offered it');
  await bob.rpc.until(() => bob.rpc.messages().some((m) => m.taskId === sent.body.task.id), 3000, 'bob is offered the task');

  const id = sent.body.message.id;
  const won = await api(relay, 'POST', `/api/messages/${id}/claim`, { as: carol });
  t.equal(won.status, 200, 'POST /api/messages/:id/claim: 200');
  t.equal(won.body.task.claimedBy, 'carol', 'carol owns the task');
  t.equal(won.body.task.status, 'claimed');
  t.equal(won.body.claimToken, 1, 'the first attempt');

  const lost = await api(relay, 'POST', `/api/messages/${id}/claim`, { as: dave });
  expectHttpError(t, lost, 409, ERRORS.conflict.code, 'a second claimer over REST', /carol/);
  t.equal(lost.body.error.data?.owner, 'carol', 'data.owner names the holder');
  const wsLost = await rpcErrorOf(bob.rpc.call('message/claim', { id }));
  t.equal(wsLost.code, ERRORS.conflict.code, 'a WebSocket claimer gets the same -32003');
  t.same(wsLost.error, lost.body.error, 'with the same error body as REST');
  t.equal((await api(relay, 'GET', `/api/tasks/${sent.body.task.id}`)).body.task.claimedBy, 'carol', 'the losers changed nothing');

  const plain = await api(relay, 'POST', '/api/messages', { body: { to: 'bob', body: 'just chatting' } });
  expectHttpError(t, await api(relay, 'POST', `/api/messages/${plain.body.message.id}/claim`, { as: carol }), 409, ERRORS.conflict.code, 'claiming a message that is not claimable', /not claimable/);
  expectHttpError(t, await api(relay, 'POST', '/api/messages/999/claim', { as: carol }), 404, ERRORS.notFound.code, 'claiming an unknown message');
  expectHttpError(t, await api(relay, 'POST', `/api/messages/${id}/claim`), 401, ERRORS.unauthorized.code, 'claiming without X-Agent-Token', /X-Agent-Token/i);
  expectHttpError(t, await api(relay, 'POST', `/api/messages/${id}/claim`, { as: { id: 'dave', token: carol.token } }), 401, ERRORS.unauthorized.code, "claiming with another agent's token");
});

t.test('tasks: create, dedupe, list, get, claim, update, release and events over REST', async (t) => {
  const relay = await startRelay(t);
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const carol = await register(t, relay, { id: 'carol' });
  const dave = await register(t, relay, { id: 'dave' });

  const created = await api(relay, 'POST', '/api/tasks', { body: { title: 'Deploy', target: 'bob', body: 'ship it', dedupeKey: 'deploy-1', from: 'ext:ci' } });
  t.equal(created.status, 201, 'POST /api/tasks creating a task: 201');
  t.equal(created.body.created, true);
  const task = created.body.task;
  t.same([task.status, task.source, task.target, task.occurrences], ['open', 'ext:ci', 'bob', 1], 'an open task from ext:ci');
  await bob.rpc.until(() => bob.rpc.messages().some((m) => m.taskId === task.id && m.claimable), 3000, 'bob is offered the task');
  t.equal(bob.rpc.messages()[0]!.id, task.messageId, 'the announcement is the task message');

  const dup = await api(relay, 'POST', '/api/tasks', { body: { title: 'Deploy', target: 'bob', dedupeKey: 'deploy-1', from: 'ext:ci' } });
  t.equal(dup.status, 200, 'a deduped create creates nothing: 200');
  t.equal(dup.body.created, false);
  t.equal(dup.body.task.id, task.id, 'the existing task is returned');
  t.equal(dup.body.task.occurrences, 2, 'its occurrences were bumped');
  const other = await api(relay, 'POST', '/api/tasks', { as: carol, body: { title: 'Review', target: 'carol', channel: 'code' } });
  t.equal(other.status, 201, 'an agent may create a task');
  t.equal(other.body.task.source, 'carol', 'the source defaults to the creating agent');
  expectHttpError(t, await api(relay, 'POST', '/api/tasks', { body: { target: 'bob' } }), 400, ERRORS.invalidParams.code, 'create without a title', /\btitle\b/);
  expectHttpError(t, await api(relay, 'POST', '/api/tasks', { body: { title: 'x', target: 'bob', action: 'resolve' } }), 400, ERRORS.invalidParams.code, 'resolve without a dedupeKey', /dedupeKey/);
  expectHttpError(
    t,
    await api(relay, 'POST', '/api/tasks', { body: { title: 'x', target: 'bob', callbackUrl: 'http://example.com/hook' } }),
    400,
    ERRORS.invalidParams.code,
    'a callbackUrl with no callback secret configured',
    /callbackUrl/,
  );

  // Lists and one task.
  const list = await api(relay, 'GET', '/api/tasks');
  t.equal(list.status, 200, 'GET /api/tasks: 200');
  t.same(list.body.tasks.map((x: { id: number }) => x.id).sort(), [task.id, other.body.task.id].sort(), 'both tasks are listed');
  t.same(list.body, await bob.rpc.call('task/list', {}), 'the same listing as task/list over the WebSocket');
  t.same(
    (await api(relay, 'GET', '/api/tasks?target=bob')).body.tasks.map((x: { id: number }) => x.id),
    [task.id],
    '?target= filters',
  );
  t.same(
    (await api(relay, 'GET', '/api/tasks?channel=code')).body.tasks.map((x: { id: number }) => x.id),
    [other.body.task.id],
    '?channel= filters',
  );
  t.same((await api(relay, 'GET', '/api/tasks?status=done')).body.tasks, [], '?status=done: none yet');
  t.same(
    (await api(relay, 'GET', `/api/tasks?since=${task.id}`)).body.tasks.map((x: { id: number }) => x.id),
    [other.body.task.id],
    '?since= pages by id',
  );
  expectHttpError(t, await api(relay, 'GET', '/api/tasks?status=bogus'), 400, ERRORS.invalidParams.code, '?status=bogus', /\bstatus\b/);
  expectHttpError(t, await api(relay, 'GET', '/api/tasks?limit=abc'), 400, ERRORS.invalidParams.code, '?limit=abc', /\blimit\b/);

  const one = await api(relay, 'GET', `/api/tasks/${task.id}`);
  t.equal(one.status, 200, 'GET /api/tasks/:id: 200');
  t.same(one.body.task, dup.body.task, 'the task as last returned');
  t.same(kinds(one.body.events), ['task.created', 'task.deduped'], 'with its events');
  t.same(one.body.callbacks, [], 'and its callback deliveries (none: no callback URL)');
  t.same(one.body, await bob.rpc.call('task/get', { id: task.id }), 'the same answer as task/get over the WebSocket');

  // Claim: exactly one owner, 409 naming it for everyone else.
  const claim = await api(relay, 'POST', `/api/tasks/${task.id}/claim`, { as: carol });
  t.equal(claim.status, 200, 'POST /api/tasks/:id/claim: 200');
  t.same([claim.body.task.status, claim.body.task.claimedBy, claim.body.claimToken], ['claimed', 'carol', 1], 'carol holds attempt 1');
  const lost = await api(relay, 'POST', `/api/tasks/${task.id}/claim`, { as: dave });
  expectHttpError(t, lost, 409, ERRORS.conflict.code, 'a second claimer', /already claimed by carol/);
  t.equal(lost.body.error.data?.owner, 'carol', 'data.owner names the holder');
  const wsLost = await rpcErrorOf(bob.rpc.call('task/claim', { id: task.id }));
  t.same(wsLost.error, lost.body.error, 'a WebSocket claimer gets the same error');
  expectHttpError(t, await api(relay, 'POST', `/api/tasks/${task.id}/claim`), 401, ERRORS.unauthorized.code, 'claim without X-Agent-Token', /X-Agent-Token/i);
  expectHttpError(t, await api(relay, 'POST', '/api/tasks/999/claim', { as: dave }), 404, ERRORS.notFound.code, 'claim an unknown task', /999/);

  // Update by the owner with its claim token.
  const progress = await api(relay, 'PATCH', `/api/tasks/${task.id}`, { as: carol, body: { claimToken: 1, status: 'in_progress', progress: 40, note: 'halfway' } });
  t.equal(progress.status, 200, 'PATCH /api/tasks/:id: 200');
  t.same([progress.body.task.status, progress.body.task.progress], ['in_progress', 40], 'status and progress changed');
  expectHttpError(t, await api(relay, 'PATCH', `/api/tasks/${task.id}`, { as: carol, body: { progress: 50 } }), 400, ERRORS.invalidParams.code, 'update without a claimToken', /claimToken/);
  expectHttpError(t, await api(relay, 'PATCH', `/api/tasks/${task.id}`, { as: carol, body: { claimToken: 1, progress: 101 } }), 400, ERRORS.invalidParams.code, 'progress over 100', /\bprogress\b/);
  expectHttpError(
    t,
    await api(relay, 'PATCH', `/api/tasks/${task.id}`, { as: carol, body: { claimToken: 1, status: 'open' } }),
    400,
    ERRORS.invalidParams.code,
    'status open is not settable',
    /\bstatus\b/,
  );
  const notOwner = await api(relay, 'PATCH', `/api/tasks/${task.id}`, { as: dave, body: { claimToken: 1, progress: 90 } });
  expectHttpError(t, notOwner, 409, ERRORS.conflict.code, 'an update by someone else', /carol/);
  t.equal(notOwner.body.error.data?.owner, 'carol', 'data.owner names the holder');
  expectHttpError(t, await api(relay, 'PATCH', '/api/tasks/999', { as: carol, body: { claimToken: 1, progress: 1 } }), 404, ERRORS.notFound.code, 'update an unknown task');

  // Release: back to open, announced again; the old token goes stale.
  const before = bob.rpc.messages().length;
  const released = await api(relay, 'POST', `/api/tasks/${task.id}/release`, { as: carol, body: { claimToken: 1, note: 'need help' } });
  t.equal(released.status, 200, 'POST /api/tasks/:id/release: 200');
  t.same([released.body.task.status, released.body.task.claimedBy], ['open', null], 'the task is open again');
  await bob.rpc.until(() => bob.rpc.messages().length > before, 3000, 'the task is announced again');
  t.equal(bob.rpc.messages().at(-1)!.taskId, task.id, 'the new announcement offers the same task');
  expectHttpError(t, await api(relay, 'POST', `/api/tasks/${task.id}/release`, { body: { claimToken: 1 } }), 401, ERRORS.unauthorized.code, 'release without X-Agent-Token', /X-Agent-Token/i);
  expectHttpError(t, await api(relay, 'POST', '/api/tasks/999/release', { as: carol, body: { claimToken: 1 } }), 404, ERRORS.notFound.code, 'release an unknown task');

  const reclaim = await api(relay, 'POST', `/api/tasks/${task.id}/claim`, { as: dave });
  t.equal(reclaim.body.claimToken, 2, 'the next claim is attempt 2');
  const stale = await api(relay, 'PATCH', `/api/tasks/${task.id}`, { as: carol, body: { claimToken: 1, status: 'done' } });
  expectHttpError(t, stale, 409, ERRORS.staleClaim.code, 'an update with the released token', /stale/);
  t.equal(stale.body.error.data?.owner, 'dave', 'the stale-claim error names the current owner');
  const done = await api(relay, 'PATCH', `/api/tasks/${task.id}`, { as: dave, body: { claimToken: 2, status: 'done' } });
  t.equal(done.status, 200, 'the owner closes the task');
  t.same([done.body.task.status, done.body.task.progress], ['done', 100], 'done at 100%');
  t.type(done.body.task.closedAt, 'number', 'closedAt is set');
  expectHttpError(t, await api(relay, 'PATCH', `/api/tasks/${task.id}`, { as: dave, body: { claimToken: 2, progress: 1 } }), 409, ERRORS.conflict.code, 'an update after done', /done/);
  const canceled = await api(relay, 'PATCH', `/api/tasks/${other.body.task.id}`, { body: { status: 'canceled' } });
  t.equal(canceled.status, 200, 'anyone may cancel unfinished work');
  t.equal(canceled.body.task.status, 'canceled');

  // Events.
  const events = await api(relay, 'GET', `/api/events?taskId=${task.id}`);
  t.equal(events.status, 200, 'GET /api/events: 200');
  t.same(kinds(events.body.events), ['task.created', 'task.deduped', 'task.claimed', 'task.updated', 'task.released', 'task.claimed', 'task.closed'], 'every change of the task, in order');
  t.same(events.body, await bob.rpc.call('event/list', { taskId: task.id }), 'the same answer as event/list over the WebSocket');
  const claimed = await api(relay, 'GET', '/api/events?kind=task.claimed');
  t.same(
    claimed.body.events.map((e: { agentId: string }) => e.agentId),
    ['carol', 'dave'],
    '?kind= filters',
  );
  const firstId = events.body.events[0].id;
  const after = await api(relay, 'GET', `/api/events?since=${firstId}&taskId=${task.id}&limit=2`);
  t.same(
    after.body.events.map((e: { id: number }) => e.id),
    events.body.events.slice(1, 3).map((e: { id: number }) => e.id),
    '?since= and ?limit= page',
  );
  const everything = await api(relay, 'GET', '/api/events');
  t.ok(kinds(everything.body.events).includes('agent.online'), 'agent events are listed too');
  expectHttpError(t, await api(relay, 'GET', '/api/events?kind=task.exploded'), 400, ERRORS.invalidParams.code, '?kind=bogus', /\bkind\b/);
  expectHttpError(t, await api(relay, 'GET', '/api/events?since=-1'), 400, ERRORS.invalidParams.code, '?since=-1', /\bsince\b/);
  expectHttpError(t, await api(relay, 'GET', '/api/tasks/999'), 404, ERRORS.notFound.code, 'GET an unknown task', /999/);
});

t.test('GET /api/tasks/:id shows the callback deliveries of the task', async (t) => {
  const received: Array<{ headers: http.IncomingHttpHeaders; body: string }> = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const hookUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  const key = randomBytes(24);
  const relay = await startRelay(t, { callbackSecret: `whsec_${key.toString('base64')}`, allowPrivateCallbacks: true });

  const created = await api(relay, 'POST', '/api/tasks', { body: { title: 'with callback', target: 'broadcast', callbackUrl: hookUrl, from: 'ext:ci' } });
  t.equal(created.status, 201, 'a task with a callback URL is created');
  t.equal(created.body.task.callbackUrl, hookUrl, 'and keeps its callback URL');
  const id = created.body.task.id;

  const got = await eventually(
    () => api(relay, 'GET', `/api/tasks/${id}`),
    (r) => r.body.callbacks?.length === 1 && r.body.callbacks[0].state === 'delivered',
    'the task.created callback to be delivered',
  );
  const cb = got.body.callbacks[0];
  const event = got.body.events[0];
  t.equal(event.kind, 'task.created', 'the task has its created event');
  t.same(
    [cb.webhookId, cb.eventId, cb.url, cb.state, cb.attempts, cb.lastStatus, cb.lastError],
    [`msg_${event.id}`, event.id, hookUrl, 'delivered', 1, 204, null],
    'callbacks lists the delivery of that event: delivered on the first attempt with the receiver’s status',
  );
  t.same(
    Object.keys(cb).sort(),
    ['attempts', 'createdAt', 'eventId', 'lastError', 'lastStatus', 'nextAt', 'state', 'updatedAt', 'url', 'webhookId'],
    'each callback has exactly the documented fields (no secret, no payload)',
  );

  t.equal(received.length, 1, 'the receiver got one POST');
  const h = received[0]!.headers;
  t.equal(h['webhook-id'], cb.webhookId, 'webhook-id matches the listed delivery');
  const expected = `v1,${createHmac('sha256', key).update(`${h['webhook-id']}.${h['webhook-timestamp']}.${received[0]!.body}`).digest('base64')}`;
  t.equal(h['webhook-signature'], expected, 'the POST is signed (Standard Webhooks) with the configured secret');
  t.equal(JSON.parse(received[0]!.body).data.task.id, id, 'the payload names the task');
  t.same(got.body, await (await WsRpc.connect(t, relay.wsUrl)).call('task/get', { id }), 'the same answer as task/get over the WebSocket');
});

t.test('wrong verbs, unknown routes, malformed bodies and no stack traces', async (t) => {
  const relay = await startRelay(t);
  const carol = await register(t, relay, { id: 'carol' });

  for (const [verb, path] of [
    ['DELETE', '/api/agents'],
    ['PUT', '/api/agents'],
    ['GET', '/api/agents/carol/heartbeat'],
    ['DELETE', '/api/agents/carol'],
    ['PATCH', '/api/messages'],
    ['GET', '/api/messages/read'],
    ['GET', '/api/messages/1/claim'],
    ['PATCH', '/api/messages/1'],
    ['POST', '/api/threads/1'],
    ['PUT', '/api/tasks'],
    ['DELETE', '/api/tasks/1'],
    ['GET', '/api/tasks/1/release'],
    ['POST', '/api/events'],
  ] as const) {
    const res = await api(relay, verb, path, verb === 'GET' || verb === 'DELETE' ? {} : { body: {} });
    expectHttpError(t, res, 405, ERRORS.invalidRequest.code, `${verb} ${path}`, new RegExp(verb));
  }
  for (const path of ['/api/nope', '/nope', '/api/messages/abc', '/api/tasks/1/explode', '/api/agents/carol/extra/segments', '/api']) {
    expectHttpError(t, await api(relay, 'GET', path), 404, ERRORS.notFound.code, `GET ${path}`, /not found/);
  }

  const parse = await api(relay, 'POST', '/api/messages', { raw: '{"to":"carol","body":' });
  expectHttpError(t, parse, 400, ERRORS.parseError.code, 'a body that is not JSON', /JSON/);
  expectHttpError(t, await api(relay, 'POST', '/api/messages', { raw: '["carol","hi"]' }), 400, ERRORS.invalidParams.code, 'an array body', /object/);
  expectHttpError(t, await api(relay, 'POST', '/api/tasks', { raw: '"a string"' }), 400, ERRORS.invalidParams.code, 'a string body', /object/);
  expectHttpError(t, await api(relay, 'POST', '/api/messages', { raw: '' }), 400, ERRORS.invalidParams.code, 'an empty body on send', /\bto\b/);
  expectHttpError(t, await api(relay, 'PATCH', '/api/tasks/1', { as: carol, raw: '{bad json' }), 400, ERRORS.parseError.code, 'PATCH with bad JSON');
  t.same((await api(relay, 'GET', '/api/messages')).body.messages, [], 'nothing was stored by any refused request');
  t.notMatch(relay.logText(), STACK, 'caller errors leave no stack trace in the log');
});

t.test('a body over maxFrameBytes gets 413 and stores nothing', async (t) => {
  const relay = await startRelay(t, { maxFrameBytes: 4096 });
  const carol = await register(t, relay, { id: 'carol' });

  const big = await api(relay, 'POST', '/api/messages', { body: { to: 'carol', body: 'x'.repeat(10 * 1024), from: 'ext:ci' } });
  expectHttpError(t, big, 413, ERRORS.tooLarge.code, 'a 10 KB send', /4096/);
  expectHttpError(t, await api(relay, 'POST', '/api/tasks', { body: { title: 'big', target: 'carol', body: 'y'.repeat(8 * 1024) } }), 413, ERRORS.tooLarge.code, 'an 8 KB task');
  expectHttpError(t, await api(relay, 'PATCH', '/api/agents/carol', { token: carol.token, body: { meta: { blob: 'z'.repeat(5000) } } }), 413, ERRORS.tooLarge.code, 'a 5 KB agent update');

  const fits = await api(relay, 'POST', '/api/messages', { body: { to: 'carol', body: 'w'.repeat(3900), from: 'ext:ci' } });
  t.equal(fits.status, 201, 'a body under the limit is accepted');
  const stored = await api(relay, 'GET', '/api/messages');
  t.same(
    stored.body.messages.map((m: { body: string }) => m.body.length),
    [3900],
    'only the body under the limit was stored',
  );
  t.same((await api(relay, 'GET', '/api/tasks')).body.tasks, [], 'no task was stored');
  t.same((await api(relay, 'GET', '/api/agents')).body.agents[0].meta, {}, 'the agent was not updated');
});

t.test('with a relay token every REST request needs the bearer (401 otherwise)', async (t) => {
  const relayToken = `relay-${randomBytes(16).toString('hex')}`;
  const relay = await startRelay(t, { token: relayToken });
  const auth = { authorization: `Bearer ${relayToken}` };

  const none = await api(relay, 'GET', '/api/agents');
  expectHttpError(t, none, 401, ERRORS.unauthorized.code, 'no Authorization header');
  expectHttpError(t, await api(relay, 'GET', '/api/agents', { headers: { authorization: 'Bearer wrong-token-wrong-token' } }), 401, ERRORS.unauthorized.code, 'a wrong bearer');
  expectHttpError(t, await api(relay, 'GET', '/api/agents', { headers: { authorization: relayToken } }), 401, ERRORS.unauthorized.code, 'the token without "Bearer"');
  expectHttpError(t, await api(relay, 'POST', '/api/agents', { body: { id: 'carol' } }), 401, ERRORS.unauthorized.code, 'a register without the bearer');
  expectHttpError(t, await api(relay, 'POST', '/api/messages', { body: { to: 'broadcast', body: 'x' } }), 401, ERRORS.unauthorized.code, 'a send without the bearer');
  t.notMatch(none.text, relayToken, 'the refusal does not echo the token');

  const reg = await api(relay, 'POST', '/api/agents', { headers: auth, body: { id: 'carol' } });
  t.ok(reg.status === 200 || reg.status === 201, 'with the bearer the request is served');
  const carol: Who = { id: 'carol', token: reg.body.agentToken };
  const sent = await api(relay, 'POST', '/api/messages', { headers: auth, as: carol, body: { to: 'carol', body: 'note to self' } });
  t.equal(sent.status, 201, 'relay bearer and X-Agent-Token together');
  expectHttpError(t, await api(relay, 'POST', '/api/messages', { as: carol, body: { to: 'carol', body: 'x' } }), 401, ERRORS.unauthorized.code, 'an agent token does not replace the relay token');
  expectHttpError(
    t,
    await api(relay, 'POST', '/api/messages', { headers: auth, as: { id: 'carol', token: relayToken }, body: { to: 'carol', body: 'x' } }),
    401,
    ERRORS.unauthorized.code,
    'the relay token is not an agent token',
  );
  t.equal((await api(relay, 'GET', '/api/messages', { headers: auth })).body.messages.length, 1, 'only the authorized send was stored');
  t.notMatch(relay.logText(), relayToken, 'the relay token never reaches a log line');
  t.notMatch(relay.logText(), carol.token, 'the agent token never reaches a log line');
});

t.test('agent tokens never reach a log line, whatever the request does', async (t) => {
  const relay = await startRelay(t, { logLevel: 'trace' });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const carol = await register(t, relay, { id: 'carol', tags: ['dev'] });
  const wrong = `wrong-${randomBytes(12).toString('hex')}`;

  await api(relay, 'POST', '/api/agents', { body: { id: 'carol', agentToken: carol.token, label: 'again' } });
  await api(relay, 'POST', '/api/agents', { body: { id: 'carol', agentToken: wrong } });
  await api(relay, 'PATCH', '/api/agents/carol', { token: carol.token, body: { status: 'busy' } });
  await api(relay, 'POST', '/api/agents/carol/heartbeat', { token: carol.token });
  await api(relay, 'POST', '/api/agents/carol/heartbeat', { token: wrong });
  const sent = await api(relay, 'POST', '/api/messages', { as: carol, body: { to: 'bob', body: 'hi', claimable: true } });
  await api(relay, 'POST', '/api/messages', { as: { id: 'carol', token: wrong }, body: { to: 'bob', body: 'hi' } });
  await api(relay, 'GET', '/api/messages', { as: carol });
  await api(relay, 'POST', `/api/messages/${sent.body.message.id}/claim`, { as: carol });
  await api(relay, 'POST', '/api/messages/read', { as: carol, body: { upTo: 1 } });
  await api(relay, 'PATCH', `/api/tasks/${sent.body.task.id}`, { as: carol, body: { claimToken: 1, status: 'done' } });
  await bob.rpc.call('agent/register', { id: 'bob', agentToken: bob.token }).catch(() => undefined);
  await bob.rpc.call('agent/register', { id: 'carol', agentToken: carol.token }).catch(() => undefined);
  await bob.rpc.close();
  await eventually(
    () => api(relay, 'GET', '/api/agents'),
    (r) => r.body.agents.find((a: { id: string }) => a.id === 'bob')?.connected === false,
    'bob to be seen disconnected',
  );

  t.ok(relay.logs.length > 0, 'the relay did log (at trace level)');
  const text = relay.logText();
  t.notMatch(text, carol.token, "carol's token is not in the log");
  t.notMatch(text, bob.token, "bob's token is not in the log");
  t.notMatch(text, wrong, 'a wrong token presented is not in the log either');
});

t.test('a malformed percent-escape in a path is 404, never 500', async (t) => {
  const relay = await startRelay(t);
  for (const path of ['/api/agents/%ZZ/inbox', '/api/agents/%E0%A4%A', '/api/integrations/%ZZ/events']) {
    const method = path.endsWith('/events') ? 'POST' : path.endsWith('/inbox') ? 'GET' : 'PATCH';
    const res = await fetch(`${relay.url}${path}`, { method, headers: { 'content-type': 'application/json' }, body: method === 'GET' ? undefined : '{}' });
    t.equal(res.status, 404, `${method} ${path}`);
    await res.arrayBuffer();
  }
});

t.test('leases over REST: POST /api/leases (201), GET /api/leases, renew and release by path id', async (t) => {
  const relay = await startRelay(t);
  const alice = await register(t, relay, { id: 'alice' });
  const bob = await register(t, relay, { id: 'bob' });
  const got = await api(relay, 'POST', '/api/leases', { as: alice, body: { resources: ['src/auth/**'], ttlMs: 60_000, reason: 'login rewrite' } });
  t.equal(got.status, 201, 'POST /api/leases granting: 201');
  t.equal(got.body.lease.agentId, 'alice');
  const { lease, token } = got.body;

  const refused = await api(relay, 'POST', '/api/leases', { as: bob, body: { resources: ['src/auth/a.ts'] } });
  expectHttpError(t, refused, 409, ERRORS.conflict.code, 'an overlapping lease', /held exclusive by alice/);
  t.match(refused.body.error.data, { holder: 'alice', reason: 'login rewrite', expiresAt: lease.expiresAt });
  expectHttpError(t, await api(relay, 'POST', '/api/leases', { body: { resources: ['x'] } }), 401, ERRORS.unauthorized.code, 'without an agent identity', /X-Agent-Token/);
  expectHttpError(t, await api(relay, 'POST', '/api/leases', { as: bob, body: { resources: ['a/**b'] } }), 400, ERRORS.invalidParams.code, 'an ambiguous pattern', /a\/\*\*b/);

  const list = await api(relay, 'GET', '/api/leases?resource=src/auth/x.ts');
  t.equal(list.status, 200, 'GET /api/leases: 200, for any caller');
  t.same(
    list.body.leases.map((l: { id: number }) => l.id),
    [lease.id],
  );
  t.same((await api(relay, 'GET', '/api/leases?holder=bob')).body.leases, []);

  const renewed = await api(relay, 'POST', `/api/leases/${lease.id}/renew`, { as: alice, body: { token, ttlMs: 120_000 } });
  t.equal(renewed.status, 200);
  t.ok(renewed.body.token > token, 'a renewal answers a new token');
  expectHttpError(t, await api(relay, 'POST', `/api/leases/${lease.id}/renew`, { as: alice, body: { token } }), 409, ERRORS.staleClaim.code, 'renewal by a stale token');
  expectHttpError(t, await api(relay, 'POST', `/api/leases/${lease.id}/release`, { as: bob, body: { token: renewed.body.token } }), 409, ERRORS.conflict.code, "another agent's release");
  const released = await api(relay, 'POST', `/api/leases/${lease.id}/release`, { as: alice, body: { token: renewed.body.token } });
  t.equal(released.status, 200);
  t.equal(released.body.lease.endedBy, 'released');
  t.equal((await api(relay, 'POST', '/api/leases', { as: bob, body: { resources: ['src/auth/a.ts'] } })).status, 201, 'free again');
});
