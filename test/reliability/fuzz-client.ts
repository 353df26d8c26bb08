/**
 * The fuzzer, run as its own process by fuzz.serial.ts (the relay lives in the test process, where
 * Object.prototype and a latency probe are watched). Frames come from fast-check generators, each
 * built together with the answer the JSON-RPC 2.0 spec and the relay's contract require for it:
 * an error code and id, a result, or silence (notifications). Nothing here asks the relay's own
 * code what the answer should be.
 *
 * Config: FUZZ_CONFIG (JSON). Control: stdin lines `on` / `off` pause and resume between cases;
 * it starts paused and prints `ready` once connected. The last stdout line is a JSON summary.
 */
import fc from 'fast-check';
import { Agent, request } from 'node:http';
import WebSocket from 'ws';

interface Config {
  wsUrl: string;
  httpUrl: string;
  seed: number;
  wsFrames: number;
  httpFrames: number;
  restCases: number;
  ingressCases: number;
  maxFrameBytes: number;
  integration: string;
  secret: string;
}

const cfg = JSON.parse(process.env.FUZZ_CONFIG ?? '{}') as Config;

const E = {
  parse: -32700,
  invalidRequest: -32600,
  methodNotFound: -32601,
  invalidParams: -32602,
  unauthorized: -32001,
  notFound: -32002,
  notRegistered: -32004,
  tooLarge: -32005,
} as const;

const KNOWN = [
  'agent/register',
  'agent/update',
  'agent/heartbeat',
  'agent/list',
  'message/send',
  'message/list',
  'message/read',
  'message/get',
  'message/ack',
  'message/claim',
  'thread/get',
  'task/create',
  'task/claim',
  'task/update',
  'task/release',
  'task/list',
  'task/get',
  'lease/acquire',
  'lease/renew',
  'lease/release',
  'lease/list',
  'event/list',
  'stream/subscribe',
  'rpc.discover',
];
const STACK = /\n\s*at\s|\bat\s+\S+\s+\(|\.(?:ts|js|mjs|cjs):\d+/;

// ---------------------------------------------------------------------------------------------
// Expectations.

/** One JSON-RPC answer: `code` null means a result. `http` overrides for POST /rpc. */
interface Answer {
  id: unknown;
  code: number | null;
  http?: { id: unknown; code: number | null };
}
type EntryExp = Answer | 'silence';
interface Entry {
  text: string;
  exp: EntryExp;
  /** Valid as a batch member only (an array inside a batch). */
}
type FrameExp = { kind: 'reply'; answer: Answer } | { kind: 'batch'; answers: Answer[] } | { kind: 'silence' };
interface Frame {
  cat: string;
  text: string;
  exp: FrameExp;
  binary?: boolean;
  /** POST /rpc answers 413 (body over the limit). */
  oversize?: boolean;
}

const j = JSON.stringify;
/** An object text from raw member texts, so ids like 1e400 and keys like __proto__ survive. */
const obj = (members: Array<[string, string]>) => `{${members.map(([k, v]) => `${j(k)}:${v}`).join(',')}}`;
const fromHttp = (a: Answer): { id: unknown; code: number | null } => a.http ?? { id: a.id, code: a.code };

// ---------------------------------------------------------------------------------------------
// Generators.

const validId = fc.oneof(fc.integer({ min: -(2 ** 53 - 1), max: 2 ** 53 - 1 }), fc.string({ maxLength: 128 }), fc.constant(null));
/** Ids the relay must refuse: fractional, unsafe or overflowing numbers, huge strings, structures. */
const badIdText = fc.oneof(
  fc.tuple(fc.integer({ min: -1_000_000, max: 1_000_000 }), fc.integer({ min: 1, max: 999 })).map(([i, f]) => `${i}.${String(f).padStart(3, '0')}`),
  fc.bigInt({ min: 2n ** 53n, max: 10n ** 40n }).map((b) => String(b)),
  fc.bigInt({ min: 2n ** 53n, max: 10n ** 40n }).map((b) => `-${b}`),
  fc.constantFrom('1e400', '-1e400', '1e20', '-1e300', '9007199254740992'),
  fc
    .string({ minLength: 129, maxLength: 4000 })
    .filter((s) => s.length > 128)
    .map(j),
  fc.constantFrom('{}', '[]', 'true', 'false', '{"id":1}', '[1,2]'),
);

/** A method call with its params text and the answer it deserves from an observer. */
interface Call {
  method: string;
  params?: string;
  code: number | null;
  httpCode?: number | null;
}

const smallInt = fc.integer({ min: 1, max: 1000 });
const missingId = fc.integer({ min: 10_000_000, max: 2 ** 40 });

const validRead: fc.Arbitrary<Call> = fc.oneof(
  fc.constantFrom<Call>(
    { method: 'agent/list', code: null },
    { method: 'agent/list', params: '{}', code: null },
    { method: 'agent/list', params: '{"status":"online"}', code: null },
    { method: 'task/list', params: '{"status":"open"}', code: null },
    { method: 'rpc.discover', code: null },
    { method: 'rpc.discover', params: '{}', code: null },
  ),
  smallInt.map((n) => ({ method: 'message/list', params: j({ limit: n }), code: null })),
  smallInt.map((n) => ({ method: 'event/list', params: j({ limit: n, since: n }), code: null })),
  smallInt.map((n) => ({ method: 'task/list', params: j({ limit: n }), code: null })),
);
const notFound: fc.Arbitrary<Call> = fc.tuple(fc.constantFrom('message/get', 'task/get', 'thread/get'), missingId).map(([method, id]) => ({ method, params: j({ id }), code: E.notFound }));
const needsAgent: fc.Arbitrary<Call> = fc.tuple(fc.constantFrom('agent/heartbeat', 'message/read', 'message/ack', 'message/claim', 'task/claim', 'task/release'), smallInt).map(([method, n]) => {
  const params = method === 'agent/heartbeat' ? {} : method === 'message/read' ? { upTo: n } : method === 'message/ack' ? { id: n, state: 'injected' } : { id: n };
  return { method, params: j(params), code: E.notRegistered };
});
const badCredentials: fc.Arbitrary<Call> = fc
  .tuple(
    fc.constantFrom<[string, Record<string, unknown>]>(
      ['agent/list', {}],
      ['message/list', {}],
      ['task/list', {}],
      ['event/list', {}],
      ['message/get', { id: 1 }],
      ['task/get', { id: 1 }],
      ['thread/get', { id: 1 }],
      ['message/send', { to: 'broadcast', body: 'forged' }],
      ['task/create', { title: 'forged', target: 'broadcast' }],
      ['agent/update', { label: 'x' }],
      ['agent/heartbeat', {}],
      ['message/read', { upTo: 1 }],
      ['task/claim', { id: 1 }],
      ['task/update', { id: 1, status: 'canceled' }],
      ['rpc.discover', {}],
    ),
    fc.stringMatching(/^[a-z0-9]{1,20}$/),
    fc.string({ minLength: 1, maxLength: 256 }),
  )
  .map(([[method, params], who, token]) => ({ method, params: j({ ...params, agentId: `nobody-${who}`, agentToken: token }), code: E.unauthorized }));
const unknownMethod: fc.Arbitrary<Call> = fc
  .oneof(
    fc.string({ minLength: 1, maxLength: 60 }),
    fc.constantFrom('__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', 'rpc.other', 'agent/', 'Agent/List', 'agent/list ', ' agent/list', 'message/send/x'),
  )
  .filter((m) => m.length > 0 && !KNOWN.includes(m))
  .map((method) => ({ method, params: '{}', code: E.methodNotFound }));
/** stream/subscribe needs a live connection: over HTTP it is refused before its params are read. */
const paramsRefusal = (method: string): Pick<Call, 'code' | 'httpCode'> => (method === 'stream/subscribe' ? { code: E.invalidParams, httpCode: E.invalidRequest } : { code: E.invalidParams });
const withParams = KNOWN.filter((m) => m !== 'rpc.discover');
const extraKey: fc.Arbitrary<Call> = fc
  .tuple(
    fc.constantFrom(...withParams),
    fc.oneof(
      fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty'),
      fc.string({ minLength: 1, maxLength: 20 }).map((s) => `zz${s}`),
    ),
    fc.jsonValue({ maxDepth: 2 }),
  )
  .map(([method, key, value]) => ({ method, params: obj([[key, j(value) ?? 'null']]), ...paramsRefusal(method) }));
const arrayParams: fc.Arbitrary<Call> = fc
  .tuple(fc.constantFrom(...withParams), fc.array(fc.jsonValue({ maxDepth: 1 }), { maxLength: 4 }))
  .map(([method, arr]) => ({ method, params: j(arr), ...paramsRefusal(method) }));
const wrongTypes: fc.Arbitrary<Call> = fc.oneof(
  fc
    .tuple(fc.oneof(fc.integer(), fc.boolean(), fc.constant(null)), fc.oneof(fc.integer(), fc.boolean()))
    .map(([to, body]) => ({ method: 'message/send', params: j({ to, body }), code: E.invalidParams })),
  fc
    .tuple(
      fc.constantFrom('message/get', 'task/get', 'thread/get', 'task/claim', 'task/update', 'message/claim'),
      fc.oneof(fc.string(), fc.boolean(), fc.constant(null), fc.double({ noInteger: true }), fc.integer({ max: 0 })),
    )
    .map(([method, id]) => ({ method, params: j({ id }), code: E.invalidParams })),
  fc
    .tuple(fc.constantFrom('message/list', 'task/list', 'event/list'), fc.oneof(fc.string(), fc.integer({ min: 1001 }), fc.integer({ max: 0 })))
    .map(([method, limit]) => ({ method, params: j({ limit }), code: E.invalidParams })),
  fc
    .oneof(
      fc.integer(),
      fc.string().filter((s) => !['online', 'busy', 'away', 'offline'].includes(s)),
    )
    .map((status) => ({ method: 'agent/list', params: j({ status }), code: E.invalidParams })),
  fc.oneof(fc.integer(), fc.constant(''), fc.boolean()).map((title) => ({ method: 'task/create', params: j({ title, target: 'broadcast' }), code: E.invalidParams })),
  fc.oneof(fc.integer(), fc.stringMatching(/^[A-Z ]{1,10}$/)).map((id) => ({ method: 'agent/register', params: j({ id }), code: E.invalidParams })),
  fc.oneof(fc.string(), fc.integer()).map((topics) => ({ method: 'stream/subscribe', params: j({ topics }), code: E.invalidParams, httpCode: E.invalidRequest })),
);

/** A call as an entry: usually a request (answered), sometimes a notification (silence). */
function callEntry(cat: fc.Arbitrary<Call>): fc.Arbitrary<Entry> {
  return fc.tuple(cat, fc.option(validId, { freq: 3, nil: undefined }), fc.boolean()).map(([c, id, withJsonrpcFirst]) => {
    const members: Array<[string, string]> = [['method', j(c.method)]];
    if (c.params !== undefined) members.push(['params', c.params]);
    if (id !== undefined) members.push(['id', j(id)]);
    if (withJsonrpcFirst) members.unshift(['jsonrpc', '"2.0"']);
    else members.push(['jsonrpc', '"2.0"']);
    if (id === undefined) return { text: obj(members), exp: 'silence' as const };
    const http = c.httpCode !== undefined ? { id, code: c.httpCode } : undefined;
    return { text: obj(members), exp: { id, code: c.code, ...(http ? { http } : {}) } };
  });
}

/** Broken envelopes: answered -32600 with the id when the id itself is fine, else null, even without an id. */
const envelopeError: fc.Arbitrary<Entry> = fc
  .tuple(
    fc.oneof(
      fc
        .jsonValue({ maxDepth: 1 })
        .filter((v) => v !== '2.0')
        .map((v) => ({ jsonrpc: j(v) })),
      fc.constant({ jsonrpc: undefined }),
      fc.oneof(fc.integer(), fc.boolean(), fc.constant(null), fc.constant(''), fc.array(fc.string(), { maxLength: 2 })).map((m) => ({ method: j(m) })),
      fc.constant({ method: undefined }),
      fc.constantFrom('"x"', '1', 'true', 'null', '-5.5').map((p) => ({ params: p })),
      fc.constantFrom(['result', '1'], ['error', '{"code":1}'], ['result', 'null']).map(([k, v]) => ({ extra: [k, v] as [string, string] })),
    ),
    fc.option(validId, { freq: 3, nil: undefined }),
  )
  .map(([broken, id]) => {
    const b = broken as { jsonrpc?: string; method?: string; params?: string; extra?: [string, string] };
    const members: Array<[string, string]> = [];
    if (!('jsonrpc' in b)) members.push(['jsonrpc', '"2.0"']);
    else if (b.jsonrpc !== undefined) members.push(['jsonrpc', b.jsonrpc]);
    if (!('method' in b)) members.push(['method', '"agent/list"']);
    else if (b.method !== undefined) members.push(['method', b.method]);
    if (b.params !== undefined) members.push(['params', b.params]);
    if (b.extra) members.push(b.extra);
    if (id !== undefined) members.push(['id', j(id)]);
    return { text: obj(members), exp: { id: id === undefined ? null : id, code: E.invalidRequest } };
  });

/** A bad id makes any request invalid, answered with id null. */
const badIdEntry: fc.Arbitrary<Entry> = fc.tuple(badIdText, fc.constantFrom('agent/list', 'message/send', 'no/such', 'rpc.discover')).map(([idText, method]) => ({
  text: obj([
    ['jsonrpc', '"2.0"'],
    ['id', idText],
    ['method', j(method)],
    ['params', '{}'],
  ]),
  exp: { id: null, code: E.invalidRequest },
}));

const nonObjectEntry: fc.Arbitrary<Entry> = fc.jsonValue({ maxDepth: 0 }).map((v) => ({ text: j(v) ?? 'null', exp: { id: null, code: E.invalidRequest } }));

/** Prototype-named keys in the envelope itself: harmless, the call is served. */
const protoEnvelope: fc.Arbitrary<Entry> = fc
  .tuple(fc.constantFrom('__proto__', 'constructor', 'prototype'), fc.jsonValue({ maxDepth: 2 }), fc.option(validId, { freq: 3, nil: undefined }))
  .map(([key, value, id]) => {
    const members: Array<[string, string]> = [
      ['jsonrpc', '"2.0"'],
      [key, j(value) ?? 'null'],
      ['method', '"agent/list"'],
    ];
    if (id !== undefined) members.push(['id', j(id)]);
    return { text: obj(members), exp: id === undefined ? ('silence' as const) : { id, code: null } };
  });

const entry: fc.Arbitrary<Entry> = fc.oneof(
  { weight: 4, arbitrary: callEntry(validRead) },
  { weight: 2, arbitrary: callEntry(notFound) },
  { weight: 2, arbitrary: callEntry(needsAgent) },
  { weight: 2, arbitrary: callEntry(badCredentials) },
  { weight: 3, arbitrary: callEntry(unknownMethod) },
  { weight: 3, arbitrary: callEntry(extraKey) },
  { weight: 2, arbitrary: callEntry(arrayParams) },
  { weight: 3, arbitrary: callEntry(wrongTypes) },
  { weight: 3, arbitrary: envelopeError },
  { weight: 3, arbitrary: badIdEntry },
  { weight: 1, arbitrary: nonObjectEntry },
  { weight: 1, arbitrary: protoEnvelope },
);

const batchMember: fc.Arbitrary<Entry> = fc.oneof(
  { weight: 10, arbitrary: entry },
  // An array inside a batch is not a request.
  { weight: 1, arbitrary: fc.array(fc.jsonValue({ maxDepth: 1 }), { maxLength: 3 }).map((a) => ({ text: j(a), exp: { id: null, code: E.invalidRequest } })) },
);

function single(e: Entry, cat: string): Frame {
  return { cat, text: e.text, exp: e.exp === 'silence' ? { kind: 'silence' } : { kind: 'reply', answer: e.exp } };
}

const bracketCount = (s: string) => s.split('').filter((c) => c === '[' || c === '{').length;
const parses = (s: string) => {
  try {
    JSON.parse(s);
    return true;
  } catch {
    return false;
  }
};
const errorReply = (code: number): FrameExp => ({ kind: 'reply', answer: { id: null, code } });

const frame: fc.Arbitrary<Frame> = fc.oneof(
  { weight: 50, arbitrary: entry.map((e) => single(e, 'single')) },
  {
    weight: 12,
    arbitrary: fc.array(batchMember, { minLength: 1, maxLength: 15 }).map((members): Frame => {
      const answers = members.flatMap((m) => (m.exp === 'silence' ? [] : [m.exp]));
      return { cat: 'batch', text: `[${members.map((m) => m.text).join(',')}]`, exp: answers.length ? { kind: 'batch', answers } : { kind: 'silence' } };
    }),
  },
  { weight: 2, arbitrary: fc.constantFrom('[]', '[ ]', ' [\n] ', '\t[]').map((text): Frame => ({ cat: 'empty-batch', text, exp: errorReply(E.invalidRequest) })) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(
        fc.integer({ min: 101, max: 400 }),
        fc.constantFrom('1', '{"jsonrpc":"2.0","id":1,"method":"agent/list"}', '{"jsonrpc":"2.0","method":"message/send","params":{"to":"broadcast","body":"x"}}'),
      )
      .map(
        ([n, member]): Frame => ({
          cat: 'oversize-batch',
          text: `[${Array.from({ length: n }, () => member).join(',')}]`,
          exp: errorReply(E.tooLarge),
        }),
      ),
  },
  {
    weight: 10,
    arbitrary: fc
      .oneof(
        fc.string({ unit: 'binary', maxLength: 200 }),
        fc.string({ unit: fc.constantFrom('{', '}', '[', ']', '"', ':', ',', '1', 'e', '-', '.', ' ', 'n', 'u', 'l', 't', 'r', '\\'), maxLength: 60 }),
        fc.tuple(callEntry(validRead), fc.double({ min: 0, max: 1, noNaN: true })).map(([e, cut]) => e.text.slice(0, Math.floor(e.text.length * cut))),
      )
      .filter((s) => !parses(s) && bracketCount(s) <= 32)
      .map((text): Frame => ({ cat: 'malformed-json', text, exp: errorReply(E.parse) })),
  },
  {
    weight: 5,
    arbitrary: fc.tuple(fc.integer({ min: 33, max: 4000 }), fc.constantFrom('arrays', 'objects', 'unbalanced', 'in-params')).map(([d, shape]): Frame => {
      const text =
        shape === 'arrays'
          ? '['.repeat(d) + ']'.repeat(d)
          : shape === 'objects'
            ? `${'{"a":'.repeat(d)}1${'}'.repeat(d)}`
            : shape === 'unbalanced'
              ? '['.repeat(d)
              : `{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"to":"broadcast","body":"x","meta":${'{"a":'.repeat(d)}1${'}'.repeat(d)}}}`;
      return { cat: 'deep-nesting', text, exp: errorReply(E.invalidRequest) };
    }),
  },
  {
    weight: 2,
    arbitrary: fc.integer({ min: cfg.maxFrameBytes + 1, max: cfg.maxFrameBytes * 3 }).map(
      (size): Frame => ({
        cat: 'oversize-frame',
        text: `{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"to":"broadcast","body":"${'x'.repeat(size)}"}}`,
        exp: errorReply(E.tooLarge),
        oversize: true,
      }),
    ),
  },
  { weight: 2, arbitrary: callEntry(validRead).map((e): Frame => ({ cat: 'binary-frame', text: e.text, exp: errorReply(E.invalidRequest), binary: true })) },
);

// ---------------------------------------------------------------------------------------------
// Checking answers.

interface Mismatch {
  where: string;
  cat: string;
  frame: string;
  expected: unknown;
  got: unknown;
}
const mismatches: Mismatch[] = [];
const counts: Record<string, number> = {};
let checked = 0;
let stray = 0;
let mismatchCount = 0;
const note = (where: string, f: { cat: string; text: string }, expected: unknown, got: unknown) => {
  mismatchCount++;
  if (mismatches.length < 25)
    mismatches.push({
      where,
      cat: f.cat,
      frame: f.text.length > 300 ? `${f.text.slice(0, 300)}… (${f.text.length} chars)` : f.text,
      expected,
      got: typeof got === 'string' && got.length > 300 ? got.slice(0, 300) : got,
    });
};

function answerMatches(got: unknown, want: { id: unknown; code: number | null }): boolean {
  if (typeof got !== 'object' || got === null || Array.isArray(got)) return false;
  const g = got as { jsonrpc?: unknown; id?: unknown; result?: unknown; error?: { code?: unknown; message?: unknown } };
  if (g.jsonrpc !== '2.0' || g.id !== want.id) return false;
  if (want.code === null) return 'result' in g && !('error' in g);
  return !('result' in g) && g.error?.code === want.code && typeof g.error.message === 'string' && !STACK.test(g.error.message);
}

const key = (a: { id: unknown; code: number | null }) => `${j(a.id)}|${a.code}`;
function batchMatches(got: unknown, want: Array<{ id: unknown; code: number | null }>): boolean {
  if (!Array.isArray(got) || got.length !== want.length) return false;
  const gotSorted = [...got].sort((a, b) => (key({ id: a?.id, code: a?.error?.code ?? null }) < key({ id: b?.id, code: b?.error?.code ?? null }) ? -1 : 1));
  const wantSorted = [...want].sort((a, b) => (key(a) < key(b) ? -1 : 1));
  return wantSorted.every((w, i) => answerMatches(gotSorted[i], w));
}

function check(where: string, f: Frame, got: unknown, transport: 'ws' | 'http'): void {
  checked++;
  counts[f.cat] = (counts[f.cat] ?? 0) + 1;
  const pick = (a: Answer) => (transport === 'http' ? fromHttp(a) : { id: a.id, code: a.code });
  if (f.exp.kind === 'silence') {
    if (got !== undefined) note(where, f, 'silence', got);
    return;
  }
  if (f.exp.kind === 'reply') {
    const want = pick(f.exp.answer);
    if (!answerMatches(got, want)) note(where, f, want, got);
    return;
  }
  const want = f.exp.answers.map(pick);
  if (!batchMatches(got, want)) note(where, f, want, got);
}

// ---------------------------------------------------------------------------------------------
// Pause control.

let paused = true;
let resume: (() => void) | null = null;
process.stdin.setEncoding('utf8').on('data', (s: string) => {
  for (const line of s.split('\n')) {
    if (line === 'off') paused = true;
    if (line === 'on') {
      paused = false;
      resume?.();
      resume = null;
    }
  }
});
async function gate(): Promise<void> {
  while (paused) await new Promise<void>((r) => (resume = r));
}

/** Samples in chunks (1,000,000 frames do not fit in memory at once), each chunk with its own seed. */
function* cases<T>(arb: fc.Arbitrary<T>, n: number, salt: number): Generator<T> {
  const CHUNK = 2000;
  for (let done = 0, chunk = 0; done < n; chunk++) {
    const take = Math.min(CHUNK, n - done);
    for (const c of fc.sample(arb, { numRuns: take, seed: (cfg.seed + salt * 7919 + chunk * 104729) | 0 })) yield c;
    done += take;
  }
}

// ---------------------------------------------------------------------------------------------
// WebSocket.

async function fuzzWs(): Promise<void> {
  const ws = new WebSocket(cfg.wsUrl, { maxPayload: 64 * 1024 * 1024 });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const inbox: unknown[] = [];
  let wake: (() => void) | null = null;
  let closed = false;
  ws.on('message', (data) => {
    const m = JSON.parse(data.toString()) as { method?: unknown; id?: unknown };
    // Server notifications are not answers.
    if (!Array.isArray(m) && typeof m.method === 'string' && m.id === undefined) return;
    inbox.push(m);
    wake?.();
  });
  ws.on('close', () => {
    closed = true;
    wake?.();
  });
  // The next answer, or undefined when none came within 3 s (a missing answer is a mismatch).
  const next = async (): Promise<unknown> => {
    const deadline = Date.now() + 3000;
    while (inbox.length === 0) {
      if (closed) throw new Error('the relay closed the fuzz connection');
      if (Date.now() > deadline) return undefined;
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 200);
      });
      wake = null;
    }
    return inbox.shift();
  };
  process.stdout.write('ready\n');
  let n = 0;
  for (const f of cases(frame, cfg.wsFrames, 1)) {
    await gate();
    ws.send(f.binary ? Buffer.from(f.text) : f.text, { binary: Boolean(f.binary) });
    if (f.exp.kind === 'silence') {
      const sentinel = `sentinel-${n}`;
      ws.send(j({ jsonrpc: '2.0', id: sentinel, method: 'agent/list' }));
      const got = await next();
      if ((got as { id?: unknown } | undefined)?.id === sentinel) check('ws', f, undefined, 'ws');
      else {
        check('ws', f, got ?? 'no answer to the sentinel', 'ws');
        await next();
      }
    } else {
      check('ws', f, await next(), 'ws');
    }
    n++;
  }
  // Anything still arriving now answered nothing that was asked.
  ws.send(j({ jsonrpc: '2.0', id: 'final', method: 'agent/list' }));
  for (;;) {
    const got = (await next()) as { id?: unknown } | undefined;
    if (got === undefined) throw new Error('no answer to the final sentinel');
    if (got.id === 'final') break;
    stray++;
  }
  await new Promise((r) => setTimeout(r, 200));
  stray += inbox.length;
  ws.close();
}

// ---------------------------------------------------------------------------------------------
// HTTP: POST /rpc, the REST routes, webhook ingress.

const agent = new Agent({ keepAlive: true, maxSockets: 1 });
function http(method: string, path: string, headers: Record<string, string>, body?: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port: new URL(cfg.httpUrl).port, method, path, agent, headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function fuzzHttpRpc(): Promise<void> {
  for (const f of cases(
    frame.filter((x) => !x.binary),
    cfg.httpFrames,
    2,
  )) {
    await gate();
    const r = await http('POST', '/rpc', {}, f.text);
    if (f.oversize) {
      checked++;
      counts['http-oversize'] = (counts['http-oversize'] ?? 0) + 1;
      const code = r.status === 413 ? (JSON.parse(r.text) as { error?: { code?: number } }).error?.code : undefined;
      if (r.status !== 413 || code !== E.tooLarge) note('http-rpc', f, '413 -32005', `${r.status} ${r.text.slice(0, 200)}`);
      continue;
    }
    if (f.exp.kind === 'silence') {
      check('http-rpc', f, r.status === 204 && r.text === '' ? undefined : `${r.status} ${r.text.slice(0, 200)}`, 'http');
      continue;
    }
    let body: unknown = `${r.status} ${r.text.slice(0, 200)}`;
    if (r.status === 200) {
      try {
        body = JSON.parse(r.text);
      } catch {
        // left as the raw text: a mismatch
      }
    }
    check('http-rpc', f, body, 'http');
  }
}

/** A REST or ingress case: the status, and the JSON-RPC code in the error body (null: success). */
interface HttpCase {
  cat: string;
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string;
  status: number;
  code: number | null;
  /** A second identical request and its status (webhook replay). */
  replayStatus?: number;
}

const malformedBody = fc
  .oneof(fc.string({ unit: 'binary', minLength: 1, maxLength: 100 }), fc.constantFrom('{', '{"to":', "{'a':1}", '[1,', 'nul', '{"a":1}}'))
  .filter((s) => s.trim().length > 0 && !parses(s));
const nonObjectBody = fc.oneof(fc.jsonValue({ maxDepth: 0 }), fc.array(fc.jsonValue({ maxDepth: 1 }), { maxLength: 3 })).map((v) => j(v) ?? 'null');
const extraMember = fc
  .tuple(
    fc.oneof(
      fc.constantFrom('__proto__', 'constructor', 'prototype'),
      fc.string({ minLength: 1, maxLength: 12 }).map((s) => `zz${s}`),
    ),
    fc.jsonValue({ maxDepth: 2 }),
  )
  .map(([k, v]): [string, string] => [k, j(v) ?? 'null']);
const BODY_ROUTES: Array<[string, string, Array<[string, string]>]> = [
  [
    'POST',
    '/api/messages',
    [
      ['to', '"broadcast"'],
      ['body', '"x"'],
    ],
  ],
  [
    'POST',
    '/api/tasks',
    [
      ['title', '"t"'],
      ['target', '"broadcast"'],
    ],
  ],
  ['POST', '/api/agents', [['id', '"fz-agent"']]],
  ['PATCH', '/api/tasks/1', [['status', '"canceled"']]],
];

const restCase: fc.Arbitrary<HttpCase> = fc.oneof(
  fc.stringMatching(/^[a-z0-9-]{1,12}(\/[a-z0-9-]{1,8})?$/).map((seg) => ({ cat: 'rest-unknown-path', method: 'GET', path: `/api/zz${seg}`, status: 404, code: E.notFound })),
  // (GET carries no body: Node sends a GET body without Content-Length, which is not HTTP.)
  fc
    .constantFrom('/api/agents/%E0%A4%A/inbox', '/api/agents/%ZZ', '/api/agents/%/heartbeat', '/api/integrations/%E0%A4%A/events')
    .map((path) =>
      path.endsWith('inbox')
        ? { cat: 'rest-bad-escape', method: 'GET', path, status: 404, code: E.notFound }
        : { cat: 'rest-bad-escape', method: path.endsWith('events') || path.endsWith('heartbeat') ? 'POST' : 'PATCH', path, body: '{}', status: 404, code: E.notFound },
    ),
  fc
    .tuple(fc.constantFrom('PUT', 'DELETE'), fc.constantFrom('/api/agents', '/api/messages', '/api/tasks', '/api/tasks/1', '/api/events', '/api/messages/1'))
    .map(([method, path]) => ({ cat: 'rest-wrong-verb', method, path, status: 405, code: E.invalidRequest })),
  fc.constantFrom('GET', 'PUT', 'DELETE', 'PATCH').map((method) => ({ cat: 'rest-rpc-verb', method, path: '/rpc', status: 405, code: E.invalidRequest })),
  fc.tuple(fc.constantFrom(...BODY_ROUTES), malformedBody).map(([[method, path], body]) => ({ cat: 'rest-malformed-body', method, path, body, status: 400, code: E.parse })),
  fc.tuple(fc.constantFrom(...BODY_ROUTES), nonObjectBody).map(([[method, path], body]) => ({ cat: 'rest-non-object-body', method, path, body, status: 400, code: E.invalidParams })),
  fc
    .tuple(fc.constantFrom(...BODY_ROUTES), extraMember)
    .map(([[method, path, base], extra]) => ({ cat: 'rest-unknown-key', method, path, body: obj([...base, extra]), status: 400, code: E.invalidParams })),
  fc
    .oneof(
      fc.oneof(fc.stringMatching(/^[a-z]{1,8}$/), fc.constantFrom('0', '-1', '1001', '1.5', '99999999999999999999')).map((v) => `/api/messages?limit=${v}`),
      fc
        .stringMatching(/^[a-z_]{1,12}$/)
        .filter((s) => !['open', 'claimed', 'in_progress', 'blocked', 'done', 'failed', 'canceled'].includes(s))
        .map((v) => `/api/tasks?status=${v}`),
      fc.constantFrom('-1', 'x', '1.5', '1e3x').map((v) => `/api/events?since=${v}`),
      fc
        .stringMatching(/^[a-z]{1,8}$/)
        .filter((s) => !['online', 'busy', 'away', 'offline'].includes(s))
        .map((v) => `/api/agents?status=${v}`),
    )
    .map((path) => ({ cat: 'rest-bad-query', method: 'GET', path, status: 400, code: E.invalidParams })),
  fc
    .constantFrom('/api/agents', '/api/tasks', '/api/events', '/api/messages', '/api/tasks?status=open', '/api/messages?limit=5', '/healthz')
    .map((path) => ({ cat: 'rest-valid-read', method: 'GET', path, status: 200, code: null })),
  fc.tuple(fc.constantFrom('/api/messages/', '/api/tasks/', '/api/threads/'), missingId).map(([p, id]) => ({ cat: 'rest-not-found', method: 'GET', path: `${p}${id}`, status: 404, code: E.notFound })),
  fc
    .constantFrom('/api/messages/read', '/api/tasks/1/claim', '/api/messages/1/claim', '/api/agents/nobody/heartbeat')
    .map((path) => ({ cat: 'rest-needs-token', method: 'POST', path, body: '{}', status: 401, code: E.unauthorized })),
  fc
    .tuple(
      fc.constantFrom('/api/agents', '/api/tasks', '/api/events', '/healthz', '/api/messages/1'),
      fc.string({ minLength: 1, maxLength: 40 }).filter((s) => /^[\x21-\x7e]+$/.test(s)),
    )
    .map(([path, token]) => ({ cat: 'rest-foreign-agent-token', method: 'GET', path, headers: { 'x-agent-id': 'nobody', 'x-agent-token': token }, status: 401, code: E.unauthorized })),
);

let hookSeq = 0;
const ingressPath = () => `/api/integrations/${cfg.integration}/events`;
const bearer = () => ({ authorization: `Bearer ${cfg.secret}` });
const ingressCase: fc.Arbitrary<HttpCase> = fc.oneof(
  fc
    .stringMatching(/^[a-z0-9]{1,10}$/)
    .map((name) => ({ cat: 'ingress-unknown', method: 'POST', path: `/api/integrations/zz${name}/events`, headers: bearer(), body: '{"title":"x"}', status: 404, code: E.notFound })),
  fc
    .oneof(
      fc.constant<Record<string, string>>({}),
      fc
        .string({ minLength: 1, maxLength: 60 })
        .filter((s) => /^[\x21-\x7e]+$/.test(s) && s !== cfg.secret)
        .map((s) => ({ authorization: `Bearer ${s}` })),
      fc.base64String({ minLength: 4, maxLength: 64 }).map((sig) => ({ 'webhook-id': 'msg_fz', 'webhook-timestamp': String(Math.floor(Date.now() / 1000)), 'webhook-signature': `v1,${sig}` })),
      fc.stringMatching(/^[0-9a-f]{64}$/).map((hex) => ({ 'x-hub-signature-256': `sha256=${hex}`, 'x-github-delivery': 'fz' })),
    )
    .map((headers) => ({ cat: 'ingress-unauthenticated', method: 'POST', path: ingressPath(), headers, body: '{"title":"x"}', status: 401, code: E.unauthorized })),
  malformedBody.map((body) => ({ cat: 'ingress-malformed', method: 'POST', path: ingressPath(), headers: bearer(), body, status: 400, code: E.parse })),
  fc
    .oneof(
      nonObjectBody,
      fc.oneof(fc.integer(), fc.constant(''), fc.boolean(), fc.constant(null), fc.string({ minLength: 513, maxLength: 600 })).map((title) => j({ title })),
      fc.constant('{}'),
      fc
        .stringMatching(/^[a-z]{1,8}$/)
        .filter((a) => a !== 'trigger' && a !== 'resolve')
        .map((action) => j({ title: 'x', action })),
      fc.oneof(fc.integer(), fc.constant('Not A Target!')).map((target) => j({ title: 'x', target })),
    )
    .map((body) => ({ cat: 'ingress-invalid-body', method: 'POST', path: ingressPath(), headers: bearer(), body, status: 400, code: E.invalidParams })),
  fc.array(extraMember, { maxLength: 3 }).map((extras) => ({
    cat: 'ingress-valid',
    method: 'POST',
    path: ingressPath(),
    headers: bearer(),
    body: obj([['title', j(`fz-${hookSeq++}`)], ...extras, ['meta', '{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}}}']]),
    status: 201,
    code: null,
  })),
  fc.constant(null).map(() => ({
    cat: 'ingress-replay',
    method: 'POST',
    path: ingressPath(),
    headers: { ...bearer(), 'webhook-id': `fz-replay-${hookSeq}` },
    body: j({ title: `fz-replay-${hookSeq++}` }),
    status: 201,
    code: null,
    replayStatus: 200,
  })),
);

async function fuzzHttpCases(arb: fc.Arbitrary<HttpCase>, n: number, salt: number): Promise<void> {
  for (const c of cases(arb, n, salt)) {
    await gate();
    const f = { cat: c.cat, text: `${c.method} ${c.path} ${c.body ?? ''}` };
    checked++;
    counts[c.cat] = (counts[c.cat] ?? 0) + 1;
    let r: { status: number; text: string };
    try {
      r = await http(c.method, c.path, c.headers ?? {}, c.body);
    } catch (err) {
      note('http', f, `${c.status} ${c.code ?? 'success'}`, `request failed: ${(err as Error).message}`);
      continue;
    }
    let body: { error?: { code?: number; message?: string } } | undefined;
    try {
      body = JSON.parse(r.text) as typeof body;
    } catch {
      body = undefined;
    }
    const codeOk = c.code === null ? body !== undefined && body.error === undefined : body?.error?.code === c.code && !STACK.test(body.error.message ?? '');
    if (r.status !== c.status || !codeOk) note('http', f, `${c.status} ${c.code ?? 'success'}`, `${r.status} ${r.text.slice(0, 200)}`);
    if (c.replayStatus !== undefined) {
      const again = await http(c.method, c.path, c.headers ?? {}, c.body);
      const dup = again.status === c.replayStatus && (JSON.parse(again.text) as { duplicate?: boolean }).duplicate === true;
      if (!dup) note('http', f, `${c.replayStatus} duplicate`, `${again.status} ${again.text.slice(0, 200)}`);
    }
  }
}

async function main(): Promise<void> {
  const started = Date.now();
  await fuzzWs();
  const wsMs = Date.now() - started;
  const wsChecked = checked;
  await fuzzHttpRpc();
  await fuzzHttpCases(restCase, cfg.restCases, 3);
  await fuzzHttpCases(ingressCase, cfg.ingressCases, 4);
  agent.destroy();
  process.stdout.write(`${j({ checked, wsChecked, wsMs, totalMs: Date.now() - started, stray, mismatchCount, mismatches, counts })}\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stdout.write(`${j({ fatal: String((err as Error).stack ?? err), checked, mismatchCount, mismatches, counts })}\n`);
    process.exit(1);
  },
);
