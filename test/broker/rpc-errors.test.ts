import t, { type Test } from 'tap';
import { ERRORS } from '../../protocol/errors.js';
import { METHODS } from '../../protocol/method-table.js';
import { startRelay, type TestRelay } from '../helpers/relay.js';
import { connectAgent, WsRpc } from '../helpers/ws-client.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Every JSON-RPC error the relay can answer for a malformed or hostile frame, over a real
 * WebSocket (and POST /rpc for parity), with exact codes and ids.
 */

type Reply = { jsonrpc?: string; id?: unknown; result?: unknown; error?: { code: number; message: string; data?: any } };

const STACK = /\n\s*at\s|\bat\s+\S+\s+\(|\.(?:ts|js|mjs|cjs):\d+/;

/** Assert a single error reply: envelope, id, exact code, a message with no stack trace. */
function expectError(t: Test, reply: Reply, code: number, id: unknown, what: string): void {
  t.equal(reply.jsonrpc, '2.0', `${what}: jsonrpc is "2.0"`);
  t.equal(reply.id, id, `${what}: id is ${JSON.stringify(id)}`);
  t.equal(reply.error?.code, code, `${what}: code ${code}`);
  t.notOk('result' in reply, `${what}: carries no result`);
  t.type(reply.error?.message, 'string', `${what}: has a message`);
  t.notMatch(reply.error?.message ?? '', STACK, `${what}: message has no stack trace`);
}

function req(id: unknown, method: string, params?: unknown): string {
  return JSON.stringify({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) });
}

async function relayAndClient(t: Test, overrides: Parameters<typeof startRelay>[1] = {}): Promise<{ relay: TestRelay; rpc: WsRpc }> {
  const relay = await startRelay(t, overrides);
  const rpc = await WsRpc.connect(t, relay.wsUrl);
  return { relay, rpc };
}

async function post(relay: TestRelay, body: string): Promise<{ status: number; type: string | null; text: string }> {
  const res = await fetch(`http://127.0.0.1:${relay.port}/rpc`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  return { status: res.status, type: res.headers.get('content-type'), text: await res.text() };
}

t.test('a frame that is not JSON gets a parse error with id null', async (t) => {
  const { rpc } = await relayAndClient(t);
  expectError(t, await rpc.sendRaw('{"jsonrpc":"2.0","id":1,"method":'), ERRORS.parseError.code, null, 'truncated JSON');
  expectError(t, await rpc.sendRaw('hello'), ERRORS.parseError.code, null, 'plain text');
  expectError(t, await rpc.sendRaw(''), ERRORS.parseError.code, null, 'empty frame');
  t.same(await rpc.call('agent/list', {}), { agents: [] }, 'the connection still serves calls');
});

t.test('an empty batch, a non-object entry and a missing jsonrpc are invalid requests', async (t) => {
  const { rpc } = await relayAndClient(t);
  expectError(t, await rpc.sendRaw('[]'), ERRORS.invalidRequest.code, null, 'empty batch');

  const nonObject = await rpc.sendRaw('[1]');
  t.ok(Array.isArray(nonObject), 'a batch is answered with an array');
  t.equal(nonObject.length, 1, 'one answer for one entry');
  expectError(t, nonObject[0], ERRORS.invalidRequest.code, null, 'non-object batch entry');

  expectError(t, await rpc.sendRaw('"just a string"'), ERRORS.invalidRequest.code, null, 'a bare string');
  expectError(t, await rpc.sendRaw('42'), ERRORS.invalidRequest.code, null, 'a bare number');
  expectError(t, await rpc.sendRaw(JSON.stringify({ id: 7, method: 'agent/list' })), ERRORS.invalidRequest.code, 7, 'missing jsonrpc');
  expectError(t, await rpc.sendRaw(JSON.stringify({ jsonrpc: '1.0', id: 8, method: 'agent/list' })), ERRORS.invalidRequest.code, 8, 'jsonrpc "1.0"');
  expectError(t, await rpc.sendRaw(JSON.stringify({ jsonrpc: '2.0', id: 9 })), ERRORS.invalidRequest.code, 9, 'missing method');
  expectError(t, await rpc.sendRaw(JSON.stringify({ jsonrpc: '2.0', id: 10, method: 42 })), ERRORS.invalidRequest.code, 10, 'numeric method');
  expectError(t, await rpc.sendRaw(JSON.stringify({ jsonrpc: '2.0', id: 11, method: 'agent/list', params: 'x' })), ERRORS.invalidRequest.code, 11, 'string params');
  expectError(t, await rpc.sendRaw(JSON.stringify({ jsonrpc: '2.0', id: 12, result: 1 })), ERRORS.invalidRequest.code, 12, 'a response sent as a request');
});

t.test('a batch over 100 entries is refused whole with -32005, and 100 entries are served', async (t) => {
  const { relay, rpc } = await relayAndClient(t);
  const over = Array.from({ length: 101 }, (_, i) => ({ jsonrpc: '2.0', id: i + 1, method: 'message/send', params: { to: 'broadcast', body: `m${i}` } }));
  const reply = await rpc.sendRaw(JSON.stringify(over));
  t.notOk(Array.isArray(reply), 'the refusal is a single error, not per entry');
  expectError(t, reply, ERRORS.tooLarge.code, null, 'batch of 101');
  t.match(reply.error.message, /101/, 'the message names the batch size');
  const listed = await rpc.call('message/list', {});
  t.equal(listed.messages.length, 0, 'no entry of the refused batch ran');

  const full = Array.from({ length: 100 }, (_, i) => ({ jsonrpc: '2.0', id: i + 1, method: 'agent/list' }));
  const answers = await rpc.sendRaw(JSON.stringify(full));
  t.ok(Array.isArray(answers), 'a batch of 100 is answered with an array');
  t.equal(answers.length, 100, 'every entry is answered');
  t.same(
    answers.map((a: Reply) => a.id).sort((a: any, b: any) => a - b),
    full.map((f) => f.id),
    'each id once',
  );
  t.ok(
    answers.every((a: Reply) => a.error === undefined),
    'none failed',
  );
  t.ok(relay.port > 0);
});

const MIXED_BATCH = JSON.stringify([
  { jsonrpc: '2.0', id: 1, method: 'agent/list' },
  { jsonrpc: '2.0', id: 2, method: 'no/such-method' },
  { jsonrpc: '2.0', method: 'agent/list' },
  { jsonrpc: '2.0', method: 'no/such-method' },
  { id: 3, method: 'agent/list' },
  { jsonrpc: '2.0', id: 4, method: 'message/send', params: { body: 'no target' } },
  7,
  { jsonrpc: '2.0', id: 's5', method: 'message/list', params: {} },
]);

function checkMixed(t: Test, answers: Reply[]): void {
  t.ok(Array.isArray(answers), 'a batch is answered with an array');
  t.equal(answers.length, 6, 'six answers: the two notifications get none');
  const byId = (id: unknown) => answers.filter((a) => a.id === id);
  t.same(byId(1)[0]?.result, { agents: [] }, 'valid entry 1 answered with its result');
  expectError(t, byId(2)[0]!, ERRORS.methodNotFound.code, 2, 'entry 2 unknown method');
  expectError(t, byId(3)[0]!, ERRORS.invalidRequest.code, 3, 'entry 3 missing jsonrpc');
  expectError(t, byId(4)[0]!, ERRORS.invalidParams.code, 4, 'entry 4 bad params');
  t.match(byId(4)[0]!.error!.message, /\bto\b/, 'entry 4 names the missing field');
  expectError(t, byId(null)[0]!, ERRORS.invalidRequest.code, null, 'entry 7 non-object');
  t.equal(byId(null).length, 1, 'exactly one id-null answer');
  t.same(byId('s5')[0]?.result, { messages: [], cursor: 0 }, 'valid entry s5 answered with its result');
}

t.test('a mixed batch answers each entry on its own and leaves notifications unanswered', async (t) => {
  const { rpc } = await relayAndClient(t);
  checkMixed(t, await rpc.sendRaw(MIXED_BATCH));

  // A batch of notifications only gets no reply at all: the next frame answered is the next request.
  const onlyNotes = JSON.stringify([
    { jsonrpc: '2.0', method: 'agent/list' },
    { jsonrpc: '2.0', method: 'nope' },
  ]);
  const next = await (async () => {
    rpc.ws.send(onlyNotes);
    return rpc.sendRaw(req('after', 'agent/list'));
  })();
  t.equal(next.id, 'after', 'the notification-only batch got no reply');
});

t.test('an unknown method gets -32601 naming it, including prototype names', async (t) => {
  const { rpc } = await relayAndClient(t);
  const reply = await rpc.sendRaw(req(1, 'agent/explode'));
  expectError(t, reply, ERRORS.methodNotFound.code, 1, 'agent/explode');
  t.match(reply.error.message, 'agent/explode', 'the message names the method');
  for (const name of ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'rpc.other']) {
    expectError(t, await rpc.sendRaw(req(name, name)), ERRORS.methodNotFound.code, name, `method ${name}`);
  }
  const long = 'x'.repeat(5000);
  const longReply = await rpc.sendRaw(req(2, long));
  expectError(t, longReply, ERRORS.methodNotFound.code, 2, 'a 5000-char method name');
  t.ok(longReply.error.message.length < 300, 'the echoed name is truncated');
});

t.test('bad params get -32602 naming the field', async (t) => {
  const { rpc } = await relayAndClient(t);
  const cases: Array<[string, unknown, RegExp]> = [
    ['message/send', { body: 'hi' }, /\bto\b/],
    ['message/send', { to: 'Not A Target!', body: 'hi' }, /\bto\b/],
    ['message/send', { to: 'bob', body: 42 }, /\bbody\b/],
    ['message/send', { to: 'bob', body: 'hi', claimable: 'yes' }, /\bclaimable\b/],
    ['message/list', { limit: 0 }, /\blimit\b/],
    ['message/get', { id: -1 }, /\bid\b/],
    ['agent/register', { id: 'UPPER CASE' }, /\bid\b/],
  ];
  for (const [method, params, field] of cases) {
    const err = await rpc.call(method, params).then(
      () => null,
      (e: { code: number; error: { message: string; data?: any } }) => e,
    );
    t.ok(err, `${method} ${JSON.stringify(params)} is refused`);
    t.equal(err?.code, ERRORS.invalidParams.code, `${method} ${JSON.stringify(params)}: -32602`);
    t.match(err?.error.message, field, `${method}: the message names ${field}`);
    t.notMatch(err?.error.message ?? '', STACK, `${method}: no stack trace`);
    t.ok(Array.isArray(err?.error.data?.issues), `${method}: data.issues lists the zod issues`);
  }
  const sent = await rpc.call('message/list', {});
  t.equal(sent.messages.length, 0, 'no refused send was stored');
});

t.test('an unknown extra param key gets -32602 naming the key', async (t) => {
  const { rpc } = await relayAndClient(t);
  const err = await rpc.call('message/send', { to: 'bob', body: 'hi', bogusField: 1 }).catch((e) => e);
  t.equal(err.code, ERRORS.invalidParams.code, '-32602');
  t.match(err.error.message, 'bogusField', 'the message names the unknown key');
  const err2 = await rpc.call('agent/list', { stauts: 'online' }).catch((e) => e);
  t.equal(err2.code, ERRORS.invalidParams.code, 'a typo in a read method: -32602');
  t.match(err2.error.message, 'stauts', 'the message names the typo');
});

t.test('params given as an array get -32602', async (t) => {
  const { rpc } = await relayAndClient(t);
  expectError(t, await rpc.sendRaw(req(1, 'message/send', ['bob', 'hi'])), ERRORS.invalidParams.code, 1, 'positional params');
  expectError(t, await rpc.sendRaw(req(2, 'agent/list', [])), ERRORS.invalidParams.code, 2, 'empty positional params');
  const ok = await rpc.sendRaw(JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'agent/list' }));
  t.same(ok.result, { agents: [] }, 'omitted params are fine');
});

t.test('a frame over maxFrameBytes gets -32005 and the connection serves the next call', async (t) => {
  const { rpc } = await relayAndClient(t, { maxFrameBytes: 4096 });
  const big = req(1, 'message/send', { to: 'broadcast', body: 'x'.repeat(10 * 1024) });
  t.ok(Buffer.byteLength(big) > 10 * 1024, 'the frame is over 10 KB');
  const reply = await rpc.sendRaw(big);
  expectError(t, reply, ERRORS.tooLarge.code, null, '10 KB frame');
  t.match(reply.error.message, /4096/, 'the message names the limit');
  t.equal(rpc.closeCode, null, 'the socket stays open');

  const fits = req(2, 'message/send', { to: 'broadcast', body: 'y'.repeat(3900) });
  t.ok(Buffer.byteLength(fits) <= 4096, 'a frame under the limit');
  const fitReply = await rpc.sendRaw(fits);
  t.equal(fitReply.id, 2, 'a frame under the limit is answered');
  t.notOk(fitReply.error, 'and succeeds');
  const listed = await rpc.call('message/list', {});
  t.same(
    listed.messages.map((m: { body: string }) => m.body.length),
    [3900],
    'only the frame under the limit was stored',
  );
});

t.test('a frame past the transport ceiling drops only that connection', async (t) => {
  const { relay, rpc } = await relayAndClient(t, { maxFrameBytes: 4096 });
  const bystander = await WsRpc.connect(t, relay.wsUrl);
  rpc.ws.send(req(1, 'message/send', { to: 'broadcast', body: 'x'.repeat(64 * 1024) }));
  const code = await Promise.race([rpc.closed, new Promise<number>((r) => setTimeout(() => r(-1), 3000))]);
  t.not(code, -1, 'the offending connection is closed');
  t.same(await bystander.call('message/list', {}), { messages: [], cursor: 0 }, 'nothing was stored and others are served');
});

t.test('POST /rpc over maxFrameBytes is refused with 413 and -32005', async (t) => {
  const { relay } = await relayAndClient(t, { maxFrameBytes: 4096 });
  const res = await post(relay, req(1, 'message/send', { to: 'broadcast', body: 'x'.repeat(10 * 1024) }));
  t.equal(res.status, 413, 'HTTP 413');
  t.equal(JSON.parse(res.text).error.code, ERRORS.tooLarge.code, '-32005 in the body');
  const ok = await post(relay, req(2, 'agent/list'));
  t.equal(ok.status, 200, 'the next request is served');
  t.same(JSON.parse(ok.text).result, { agents: [] }, 'with its result');
});

t.test('a nesting bomb gets -32600 and the relay keeps serving', async (t) => {
  const { relay, rpc } = await relayAndClient(t);
  expectError(t, await rpc.sendRaw('['.repeat(100_000)), ERRORS.invalidRequest.code, null, '100000 [');
  expectError(t, await rpc.sendRaw(`${'{"a":'.repeat(50_000)}1${'}'.repeat(50_000)}`), ERRORS.invalidRequest.code, null, '50000 nested objects');
  const deepParams = `{"jsonrpc":"2.0","id":5,"method":"message/send","params":{"to":"bob","body":"x","meta":${'{"a":'.repeat(40)}1${'}'.repeat(40)}}}`;
  expectError(t, await rpc.sendRaw(deepParams), ERRORS.invalidRequest.code, null, 'meta nested 40 deep');
  t.same(await rpc.call('agent/list', {}), { agents: [] }, 'the same connection still answers');

  // Brackets inside a string are text, not nesting.
  const brackets = '['.repeat(5000) + '{'.repeat(5000);
  const sent = await rpc.call('message/send', { to: 'broadcast', body: brackets });
  t.equal(sent.message.body, brackets, 'brackets inside a string are accepted');

  const other = await WsRpc.connect(t, relay.wsUrl);
  t.same((await other.call('message/list', {})).messages.length, 1, 'a new connection is served');
});

t.test('a binary frame gets -32600 and the connection stays usable', async (t) => {
  const { rpc } = await relayAndClient(t);
  const reply = await rpc.sendRaw(Buffer.from(req(1, 'agent/list')), { binary: true });
  expectError(t, reply, ERRORS.invalidRequest.code, null, 'binary frame');
  t.match(reply.error.message, /binary/, 'the message says binary frames are refused');
  t.same(await rpc.call('agent/list', {}), { agents: [] }, 'the next text frame is served');
});

t.test('bad ids get -32600 with id null', async (t) => {
  const { rpc } = await relayAndClient(t);
  const bad: Array<[string, string]> = [
    ['a string of 129 chars', JSON.stringify('i'.repeat(129))],
    ['a fractional number', '1.5'],
    ['an unsafe integer', '9007199254740993'],
    ['an exponent overflow', '1e400'],
    ['an object', '{}'],
    ['an array', '[1]'],
    ['a boolean', 'true'],
  ];
  for (const [what, idText] of bad) {
    const reply = await rpc.sendRaw(`{"jsonrpc":"2.0","id":${idText},"method":"agent/list"}`);
    expectError(t, reply, ERRORS.invalidRequest.code, null, `id ${what}`);
  }
  const good: unknown[] = ['i'.repeat(128), Number.MAX_SAFE_INTEGER, -5, 0, null];
  for (const id of good) {
    const reply = await rpc.sendRaw(req(id, 'agent/list'));
    t.equal(reply.id, id, `id ${typeof id === 'string' ? `string of ${id.length}` : id} is echoed`);
    t.same(reply.result, { agents: [] }, `id ${typeof id === 'string' ? `string of ${id.length}` : id} is served`);
  }
});

t.test('__proto__ and constructor keys in params and meta are refused or harmless', async (t) => {
  const { rpc } = await relayAndClient(t);
  const before = Object.getOwnPropertyNames(Object.prototype).sort();

  for (const key of ['__proto__', 'constructor', 'prototype']) {
    const frame = `{"jsonrpc":"2.0","id":"${key}","method":"message/send","params":{"to":"bob","body":"x","${key}":{"polluted":true,"system":true}}}`;
    const reply = await rpc.sendRaw(frame);
    expectError(t, reply, ERRORS.invalidParams.code, key, `params key ${key}`);
    t.match(reply.error.message, key, `the message names ${key}`);
  }
  const regFrame = '{"jsonrpc":"2.0","id":"reg","method":"agent/register","params":{"id":"mallory","__proto__":{"system":true}}}';
  expectError(t, await rpc.sendRaw(regFrame), ERRORS.invalidParams.code, 'reg', 'register with __proto__');

  const metaFrame =
    '{"jsonrpc":"2.0","id":"meta","method":"message/send","params":{"to":"broadcast","body":"x","meta":' + '{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}},"ok":1}}}';
  const metaReply = await rpc.sendRaw(metaFrame);
  t.equal(metaReply.id, 'meta', 'meta with prototype keys is answered');
  if (metaReply.error) {
    t.equal(metaReply.error.code, ERRORS.invalidParams.code, 'refused as invalid params');
  } else {
    const got = await rpc.call('message/get', { id: metaReply.result.message.id });
    t.equal(got.message.meta.ok, 1, 'ordinary meta keys are kept');
    t.notOk(got.message.meta.polluted, 'no key leaked out of __proto__');
  }

  const agentMeta = await rpc.call('agent/register', { id: 'carol' });
  const regMeta = '{"jsonrpc":"2.0","id":"ameta","method":"agent/update","params":{"label":"c","tags":["__proto__","constructor"]}}';
  const updated = await rpc.sendRaw(regMeta);
  t.equal(updated.id, 'ameta', 'prototype names as tag values are answered');
  t.equal(agentMeta.agent.system, false, 'the agent is not a system agent');

  t.same(Object.getOwnPropertyNames(Object.prototype).sort(), before, 'Object.prototype gained no property');
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'a fresh object has no polluted key');
  t.equal(({} as Record<string, unknown>).system, undefined, 'a fresh object has no system key');
  t.same(await rpc.call('agent/list', {}).then((r) => r.agents.map((a: { id: string }) => a.id)), ['carol'], 'the relay keeps serving');
});

t.test('a lone UTF-16 surrogate in any string field is refused with -32602 naming the field; a paired one is stored as sent', async (t) => {
  const relay = await startRelay(t);
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  // JSON.stringify writes a lone surrogate as its \uXXXX escape, as a hostile client would.
  const cases: Array<{ method: string; params: Record<string, unknown>; path: string }> = [
    { method: 'message/send', params: { to: 'bob', body: 'a\ud800b' }, path: 'body' },
    { method: 'message/send', params: { to: 'bob', body: 'x', meta: { note: ['ok', 'tail\udfff'] } }, path: 'meta.note.1' },
    { method: 'message/send', params: { to: 'bob', body: 'x', meta: { 'k\ud83d': 1 } }, path: 'meta (a key)' },
    { method: 'task/create', params: { title: '\udc00title', target: 'bob' }, path: 'title' },
    { method: 'agent/update', params: { label: 'l\ud800' }, path: 'label' },
  ];
  for (const [i, c] of cases.entries()) {
    const reply = await alice.rpc.sendRaw(req(i, c.method, c.params));
    expectError(t, reply, ERRORS.invalidParams.code, i, `${c.method} ${c.path}`);
    t.equal(reply.error?.message.startsWith(`invalid params: ${c.path}: contains a lone UTF-16 surrogate`), true, `names ${c.path}: ${reply.error?.message}`);
  }
  const overHttp = await post(relay, req('h', 'message/send', { agentId: 'alice', agentToken: alice.token, to: 'bob', body: 'a\ud800' }));
  t.match(JSON.parse(overHttp.text).error, { code: ERRORS.invalidParams.code, message: /^invalid params: body: contains a lone UTF-16 surrogate/ }, 'POST /rpc refuses it too');
  t.same((await bob.rpc.call('message/list', {})).messages, [], 'nothing was stored');

  const body = 'pair \ud83d\ude00 kept';
  const sent = await alice.rpc.call('message/send', { to: 'bob', body, meta: { '\ud83d\ude00': 'ok' } });
  await waitFor(() => bob.rpc.messages().some((m) => m.id === sent.message.id), 'the live push');
  const live = bob.rpc.messages().find((m) => m.id === sent.message.id)!;
  const replay = (await bob.rpc.call('message/get', { id: sent.message.id })).message;
  t.equal(live.body, body, 'the live push carries the body as sent');
  t.same({ body: replay.body, meta: replay.meta }, { body: live.body, meta: live.meta }, 'the replay of the same id is identical');
});

t.test('a notification gets no reply, even when it fails', async (t) => {
  const { rpc } = await relayAndClient(t);
  const notes = [
    JSON.stringify({ jsonrpc: '2.0', method: 'agent/list' }),
    JSON.stringify({ jsonrpc: '2.0', method: 'no/such-method' }),
    JSON.stringify({ jsonrpc: '2.0', method: 'message/send', params: { body: 'no target' } }),
    JSON.stringify({ jsonrpc: '2.0', method: 'message/read', params: { upTo: 1 } }),
  ];
  const before = rpc.raw.length;
  for (const n of notes) rpc.ws.send(n);
  const reply = await rpc.sendRaw(req('probe', 'agent/list'));
  t.equal(reply.id, 'probe', 'the first reply is for the request after the notifications');
  await new Promise((r) => setTimeout(r, 100));
  t.equal(rpc.raw.length - before, 1, 'no frame answered any notification');
});

t.test('caller errors write no stack trace to the console and only the relay logger logs', async (t) => {
  const { relay, rpc } = await relayAndClient(t);
  const printed: string[] = [];
  const saved = { warn: console.warn, error: console.error, log: console.log, write: process.stderr.write };
  const capture = (...args: unknown[]) => {
    printed.push(args.map((a) => (a instanceof Error ? String(a.stack) : String(a))).join(' '));
  };
  console.warn = capture;
  console.error = capture;
  console.log = capture;
  process.stderr.write = ((chunk: unknown) => {
    printed.push(String(chunk));
    return true;
  }) as typeof process.stderr.write;
  try {
    await rpc.call('message/send', { body: 'no target' }).catch(() => undefined);
    await rpc.call('message/send', ['positional']).catch(() => undefined);
    await rpc.call('message/get', { id: 999 }).catch(() => undefined);
    await rpc.call('task/claim', { id: 1 }).catch(() => undefined);
    await rpc.call('agent/register', { id: 'dave' });
    await rpc.call('message/get', { id: 12345 }).catch(() => undefined);
  } finally {
    console.warn = saved.warn;
    console.error = saved.error;
    console.log = saved.log;
    process.stderr.write = saved.write;
  }
  t.same(printed, [], 'nothing was printed to the console');
  t.notMatch(relay.logText(), STACK, 'no stack trace in the relay log for caller errors');
});

t.test('rpc.discover returns an OpenRPC document listing every method', async (t) => {
  const { rpc } = await relayAndClient(t);
  const doc = await rpc.call('rpc.discover');
  t.match(doc.openrpc, /^1\.\d+\.\d+$/, 'an OpenRPC version');
  t.type(doc.info?.version, 'string', 'info.version');
  const names: string[] = doc.methods.map((m: { name: string }) => m.name);
  t.same([...names].sort(), Object.keys(METHODS).sort(), 'exactly the methods of METHODS');
  t.equal(new Set(names).size, names.length, 'no method listed twice');
  for (const m of doc.methods as Array<{ name: string; params: unknown[]; result: { schema?: unknown } }>) {
    t.ok(Array.isArray(m.params) && m.params.length > 0 && m.result?.schema, `${m.name} has params and a result schema`);
  }
  const codes = Object.values(doc.components.errors as Record<string, { code: number }>)
    .map((e) => e.code)
    .sort();
  t.same(
    codes,
    Object.values(ERRORS)
      .map((e) => e.code)
      .sort(),
    'the error catalogue is published',
  );
  const withParams = await rpc.call('rpc.discover', {});
  t.same(withParams, doc, 'empty params give the same document');
});

t.test('POST /rpc answers the same results and errors as the WebSocket', async (t) => {
  const { relay, rpc } = await relayAndClient(t);
  const frames: Array<[string, string]> = [
    ['a parse error', '{"jsonrpc":'],
    ['an unknown method', req(1, 'agent/explode')],
    ['bad params', req(2, 'message/send', { body: 'x' })],
    ['an unknown key', req(3, 'agent/list', { bogus: true })],
    ['a bad id', `{"jsonrpc":"2.0","id":1.5,"method":"agent/list"}`],
    ['a deep nest', '['.repeat(1000)],
    ['an empty batch', '[]'],
    ['a batch over 100', JSON.stringify(Array.from({ length: 101 }, (_, i) => ({ jsonrpc: '2.0', id: i, method: 'agent/list' })))],
    ['a valid call', req(4, 'agent/list')],
    ['rpc.discover', req(5, 'rpc.discover')],
    ['a mixed batch', MIXED_BATCH],
  ];
  for (const [what, frame] of frames) {
    const ws = await rpc.sendRaw(frame);
    const http = await post(relay, frame);
    t.equal(http.status, 200, `${what}: HTTP 200`);
    t.match(http.type ?? '', /application\/json/, `${what}: JSON content type`);
    t.same(JSON.parse(http.text), ws, `${what}: same answer over HTTP and WebSocket`);
  }
  checkMixed(t, JSON.parse((await post(relay, MIXED_BATCH)).text));

  const note = await post(relay, JSON.stringify({ jsonrpc: '2.0', method: 'agent/list' }));
  t.equal(note.status, 204, 'a notification over HTTP gets 204');
  t.equal(note.text, '', 'with no body');

  const sub = JSON.parse((await post(relay, req(6, 'stream/subscribe', { topics: ['messages'] }))).text);
  expectError(t, sub, ERRORS.invalidRequest.code, 6, 'stream/subscribe over HTTP');

  const get = await fetch(`http://127.0.0.1:${relay.port}/rpc`);
  t.equal(get.status, 405, 'GET /rpc is 405');
  await get.text();
});
