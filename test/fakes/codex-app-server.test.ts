import http from 'node:http';
import t, { type Test } from 'tap';
import WebSocket from 'ws';
import { startFakeAppServer, type FakeAppServer, type FakeAppServerOptions } from './codex-app-server.js';

/**
 * The fake Codex app-server, exercised through a raw `ws` client (not the adapter): real sockets
 * on 127.0.0.1, every wait bounded, everything closed at teardown.
 */

class RpcErr extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/** A bare client that sees every frame and tells requests, notifications and responses apart by members. */
class Raw {
  readonly frames: any[] = [];
  readonly texts: string[] = [];
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();
  private waiters: Array<() => void> = [];
  readonly closed: Promise<void>;

  private constructor(readonly ws: WebSocket) {
    this.closed = new Promise((resolve) =>
      ws.on('close', () => {
        for (const p of this.pending.values()) p.reject(new Error('closed'));
        this.pending.clear();
        this.wake();
        resolve();
      }),
    );
    ws.on('message', (data) => {
      const text = data.toString();
      this.texts.push(text);
      const msg = JSON.parse(text);
      this.frames.push(msg);
      if (msg.method === undefined && this.pending.has(msg.id)) {
        const p = this.pending.get(msg.id)!;
        this.pending.delete(msg.id);
        if (msg.error) p.reject(new RpcErr(msg.error.code, msg.error.message));
        else p.resolve(msg.result);
      }
      this.wake();
    });
  }

  static open(t: Test, url: string, headers: Record<string, string> = {}): Promise<Raw> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { headers });
      const c = new Raw(ws);
      t.teardown(() => c.close());
      ws.once('open', () => resolve(c));
      ws.once('unexpected-response', (_req, res) => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode })));
      ws.once('error', reject);
    });
  }

  /** Open and do the handshake. */
  static async ready(t: Test, fake: FakeAppServer): Promise<Raw> {
    const c = await Raw.open(t, fake.url);
    await c.call('initialize', { clientInfo: { name: 'raw_test', title: 'Raw test', version: '0.0.1' }, capabilities: { experimentalApi: false } });
    c.notify('initialized');
    return c;
  }

  call(method: string, params?: unknown): Promise<any> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ id, method, ...(params === undefined ? {} : { params }) }));
    });
  }

  notify(method: string, params?: unknown): void {
    this.ws.send(JSON.stringify({ method, ...(params === undefined ? {} : { params }) }));
  }

  respond(id: unknown, result: unknown): void {
    this.ws.send(JSON.stringify({ id, result }));
  }

  respondError(id: unknown, code: number, message: string): void {
    this.ws.send(JSON.stringify({ id, error: { code, message } }));
  }

  /** Notifications (no id) of a method, as params. */
  of(method: string): any[] {
    return this.frames.filter((f) => f.method === method && f.id === undefined).map((f) => f.params);
  }

  /** Server→client requests (both id and method). */
  requests(method?: string): any[] {
    return this.frames.filter((f) => f.method !== undefined && f.id !== undefined && (!method || f.method === method));
  }

  /** Method names of the notifications received so far, for order checks. */
  methods(filter: (m: string) => boolean = () => true): string[] {
    return this.frames.filter((f) => f.method && f.id === undefined && filter(f.method)).map((f) => f.method);
  }

  async until(cond: () => boolean, what = 'condition', ms = 3000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!cond()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.min(left, 200));
        function done(): void {
          clearTimeout(timer);
          resolve();
        }
        this.waiters.push(done);
      });
    }
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  close(): Promise<void> {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close();
    return this.closed;
  }
}

async function fakeFor(t: Test, opts: FakeAppServerOptions = {}): Promise<FakeAppServer> {
  const fake = await startFakeAppServer(opts);
  t.teardown(() => fake.close());
  return fake;
}

function get(port: number, path: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, headers, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
  });
}

const text = (s: string) => [{ type: 'text', text: s, text_elements: [] }];
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** Start a thread and run one turn to completion (a thread needs a turn before it can be resumed). */
async function threadWithTurn(c: Raw, input = 'first'): Promise<string> {
  const { thread } = await c.call('thread/start', { cwd: '/home/dev/p' });
  const { turn } = await c.call('turn/start', { threadId: thread.id, input: text(input) });
  await c.until(() => c.of('turn/completed').some((n) => n.turn.id === turn.id), 'first turn to complete');
  return thread.id;
}

t.test('HTTP: /readyz and /healthz answer 200, Origin is refused with 403, upgrades with Origin too', async (t) => {
  const fake = await fakeFor(t);
  t.match(fake.url, /^ws:\/\/127\.0\.0\.1:\d+$/);
  t.equal(await get(fake.port, '/readyz'), 200);
  t.equal(await get(fake.port, '/healthz'), 200);
  t.equal(await get(fake.port, '/healthz', { origin: 'http://evil.example' }), 403);
  t.equal(await get(fake.port, '/nope'), 404);
  await t.rejects(Raw.open(t, fake.url, { origin: 'http://localhost' }), { message: 'HTTP 403' });
  t.equal(fake.totalConnections, 0, 'the refused upgrade never became a connection');
  const c = await Raw.open(t, fake.url);
  await fake.waitFor(() => fake.connections === 1, 2000, 'one connection');
  t.equal(fake.connectionInfo()[0]!.headers.origin, undefined);
  await c.close();
});

t.test('framing and handshake: Not initialized, Already initialized, jsonrpc tolerated, garbage dropped, never sends jsonrpc', async (t) => {
  const fake = await fakeFor(t);
  const c = await Raw.open(t, fake.url);
  await t.rejects(c.call('thread/start', {}), { code: -32600, message: 'Not initialized' });
  await t.rejects(c.call('initialize', { capabilities: {} }), { code: -32600, message: /clientInfo/ });

  // A garbage frame gets no reply: the next frame is the answer to the request sent after it.
  const before = c.frames.length;
  c.ws.send('{not json');
  c.ws.send(JSON.stringify({ jsonrpc: '2.0', id: 'init-1', method: 'initialize', params: { clientInfo: { name: 'x', title: 'X', version: '1' }, capabilities: { experimentalApi: false } } }));
  await c.until(() => c.frames.length > before, 'initialize answer');
  const reply = c.frames[before];
  t.equal(reply.id, 'init-1', 'string ids are echoed; the garbage frame got nothing');
  t.same(reply.result, { userAgent: 'x/0.171.0 (Fake 1.0; x86_64) unknown (x; 1)', codexHome: '/tmp/fake-codex-home', platformFamily: 'unix', platformOs: 'linux' });
  t.equal(fake.received.filter((r) => r.msg === null).length, 1, 'the unparseable frame is recorded with msg null');

  c.notify('initialized');
  await t.rejects(c.call('initialize', { clientInfo: { name: 'x', title: 'X', version: '1' } }), { code: -32600, message: 'Already initialized' });
  await t.rejects(c.call('no/such/method', {}), { code: -32600, message: /unknown variant `no\/such\/method`/ });
  await fake.waitFor(() => fake.connectionInfo()[0]!.initializedNotified, 2000, 'initialized notification');
  t.same(fake.connectionInfo()[0]!.clientInfo, { name: 'x', title: 'X', version: '1' });
  t.equal(fake.clientNotifications('initialized').length, 1);

  // Run a turn so plenty of notifications flowed, then check no frame ever carried jsonrpc.
  await threadWithTurn(c);
  t.ok(c.texts.length > 10);
  t.notOk(
    c.texts.some((s) => s.includes('"jsonrpc"')),
    'the server never sends "jsonrpc"',
  );
  t.notOk(fake.sent.some((s) => 'jsonrpc' in s.msg));
});

t.test('handshake is per connection, and the recorder tags frames with connection ids', async (t) => {
  const fake = await fakeFor(t);
  const a = await Raw.ready(t, fake);
  const b = await Raw.open(t, fake.url);
  await t.rejects(b.call('thread/loaded/list', {}), { message: 'Not initialized' });
  t.same(await a.call('thread/loaded/list', {}), { data: [], nextCursor: null });
  const conns = new Set(fake.received.map((r) => r.conn));
  t.equal(conns.size, 2);
  t.equal(fake.requests('thread/loaded/list').length, 2);
  t.equal(fake.connections, 2);
});

t.test('thread/start answers the thread, subscribes the caller and sends thread/started', async (t) => {
  const fake = await fakeFor(t);
  const c = await Raw.ready(t, fake);
  const r = await c.call('thread/start', { cwd: '/home/dev/p', model: 'gpt-x', approvalPolicy: 'never', sandbox: 'workspace-write' });
  t.match(r.thread.id, UUID_V7);
  t.match(r, { model: 'gpt-x', modelProvider: 'openai', cwd: '/home/dev/p', approvalPolicy: 'never', sandbox: { type: 'workspaceWrite' } });
  t.match(r.thread, { cwd: '/home/dev/p', status: { type: 'idle' }, turns: [] });
  t.type(r.thread.createdAt, 'number');
  t.type(r.thread.updatedAt, 'number');
  await c.until(() => c.of('thread/started').length === 1, 'thread/started');
  t.equal(c.of('thread/started')[0].thread.id, r.thread.id);
  t.same(fake.subscribers(r.thread.id), [fake.connectionInfo()[0]!.id]);
  t.same((await c.call('thread/loaded/list', {})).data, [r.thread.id]);
  t.match((await c.call('thread/read', { threadId: r.thread.id })).thread, { id: r.thread.id, status: { type: 'idle' } });
  // Not resumable before its first turn, and not listed (no rollout yet).
  await t.rejects(c.call('thread/resume', { threadId: r.thread.id }), { code: -32600, message: `no rollout found for thread id ${r.thread.id}` });
  t.same((await c.call('thread/list', { sortKey: 'updated_at' })).data, []);
  // Wrong enum words are invalid requests, as in the real server.
  await t.rejects(c.call('thread/start', { sandbox: 'workspaceWrite' }), { code: -32600, message: /unknown variant `workspaceWrite`/ });
  await t.rejects(c.call('thread/start', { approvalPolicy: 'always' }), { code: -32600 });
  await t.rejects(c.call('thread/read', { threadId: 'nope' }), { code: -32600, message: 'thread not loaded: nope' });
  // 0.171 before the first turn: no full history, no turns list.
  await t.rejects(c.call('thread/turns/list', { threadId: r.thread.id }), { code: -32600, message: /is not materialized yet; thread\/turns\/list is unavailable before first user message/ });
  await t.rejects(c.call('thread/read', { threadId: r.thread.id, includeTurns: true }), { code: -32601, message: 'list_turns is not supported yet' });
  // After that refusal 0.171 answers turns/list and resume of the empty thread the same way.
  await t.rejects(c.call('thread/turns/list', { threadId: r.thread.id }), { code: -32601, message: 'list_turns is not supported yet' });
  await t.rejects(c.call('thread/resume', { threadId: r.thread.id }), { code: -32601, message: 'list_turns is not supported yet' });
});

t.test('a scripted turn emits the real notification order and the agent text', async (t) => {
  const fake = await fakeFor(t, { reply: (s) => `reply to ${s}`, deltaCount: 3 });
  const c = await Raw.ready(t, fake);
  const { thread } = await c.call('thread/start', { cwd: '/home/dev/p' });
  const start = c.frames.length;
  const r = await c.call('turn/start', { threadId: thread.id, input: text('hello there') });
  t.match(r, { turn: { status: 'inProgress', items: [] } });
  t.match(r.turn.id, UUID_V7);
  await c.until(() => c.of('thread/status/changed').some((n) => n.status.type === 'idle'), 'idle');

  const frames = c.frames.slice(start);
  t.equal(frames[0].result?.turn.id, r.turn.id, 'the turn/start answer comes first by default');
  const seq = frames.slice(1).map((f) => (f.method === 'item/started' || f.method === 'item/completed' ? `${f.method}:${f.params.item.type}` : f.method));
  t.same(seq, [
    'thread/status/changed',
    'turn/started',
    'item/started:userMessage',
    'item/completed:userMessage',
    'item/started:agentMessage',
    'item/agentMessage/delta',
    'item/agentMessage/delta',
    'item/agentMessage/delta',
    'item/completed:agentMessage',
    'thread/status/changed',
    'turn/completed',
  ]);
  const p = frames.slice(1).map((f) => f.params);
  t.same(p[0], { threadId: thread.id, status: { type: 'active', activeFlags: [] } });
  t.match(p[1], { threadId: thread.id, turn: { id: r.turn.id, status: 'inProgress' } });
  t.match(p[2], { threadId: thread.id, turnId: r.turn.id, item: { type: 'userMessage', content: [{ type: 'text', text: 'hello there' }] } });
  const deltas = c.of('item/agentMessage/delta');
  t.equal(deltas.map((d) => d.delta).join(''), 'reply to hello there');
  t.equal(deltas[0].itemId, p[4].item.id);
  t.same(p[8].item, { type: 'agentMessage', id: p[4].item.id, text: 'reply to hello there' });
  t.same(p[9], { threadId: thread.id, status: { type: 'idle' } });
  t.same(
    p[10],
    { threadId: thread.id, turn: { id: r.turn.id, items: [p[8].item], itemsView: 'summary', status: 'completed', error: null, startedAt: p[10].turn.startedAt, completedAt: p[10].turn.completedAt } },
    'turn/completed carries the final agentMessage',
  );
  t.type(p[10].turn.completedAt, 'number');
  t.ok(
    frames.slice(1).every((f) => typeof f.emittedAtMs === 'number'),
    'every notification carries emittedAtMs',
  );

  const noticesBefore = c.of('deprecationNotice').length;
  const read = await c.call('thread/read', { threadId: thread.id, includeTurns: true });
  t.match(read.thread, { status: { type: 'idle' }, preview: 'hello there' });
  t.match(read.thread.turns, [{ id: r.turn.id, status: 'completed', items: [{ type: 'userMessage' }, { type: 'agentMessage', text: 'reply to hello there' }] }]);
  await c.until(() => c.of('deprecationNotice').length === noticesBefore + 1, 'deprecationNotice');
  t.match(c.of('deprecationNotice').at(-1), { summary: /omit includeTurns/ }, 'includeTurns draws a deprecationNotice');
  t.same((await c.call('thread/read', { threadId: thread.id })).thread.turns, [], 'turns only with includeTurns');
  const listed = await c.call('thread/turns/list', { threadId: thread.id });
  t.match(listed, { data: [{ id: r.turn.id, items: [{ type: 'userMessage' }, { type: 'agentMessage', text: 'reply to hello there' }] }], nextCursor: null });
  t.same(fake.turnInputs(thread.id), ['hello there']);
});

t.test('default reply is "echo: <text>"; lever: turn/started before the turn/start response', async (t) => {
  const fake = await fakeFor(t, { turnStartedBeforeResponse: true });
  const c = await Raw.ready(t, fake);
  const { thread } = await c.call('thread/start', {});
  const start = c.frames.length;
  const r = await c.call('turn/start', { threadId: thread.id, input: text('ping') });
  const frames = c.frames.slice(start);
  const startedAt = frames.findIndex((f) => f.method === 'turn/started');
  const answerAt = frames.findIndex((f) => f.result?.turn?.id === r.turn.id);
  t.ok(startedAt >= 0 && startedAt < answerAt, 'turn/started arrived before the answer');
  t.equal(frames[startedAt].params.turn.id, r.turn.id);
  await c.until(() => c.of('turn/completed').length === 1, 'turn/completed');
  t.equal(c.of('item/completed').find((n) => n.item.type === 'agentMessage').item.text, 'echo: ping');
});

t.test('turn/start while busy answers the running turn id and folds the text into it (0.171)', async (t) => {
  const fake = await fakeFor(t, { holdTurns: true });
  const c = await Raw.ready(t, fake);
  const { thread } = await c.call('thread/start', {});
  const first = await c.call('turn/start', { threadId: thread.id, input: text('one') });
  await c.until(() => c.of('turn/started').length === 1, 'turn/started');
  const second = await c.call('turn/start', { threadId: thread.id, input: text('two') });
  t.equal(second.turn.id, first.turn.id, 'the running turn id');
  t.match(second.turn, { status: 'inProgress', items: [] });
  t.same(fake.busyTurnStarts, [first.turn.id]);
  t.match(fake.inputs[1], { via: 'fold', turnId: first.turn.id, answeredTurnId: first.turn.id, text: 'two' });
  await fake.completeTurn(thread.id);
  await c.until(() => c.of('turn/completed').length === 1, 'turn/completed');
  t.equal(c.of('turn/started').length, 1, 'no turn of its own');
  t.equal(c.of('item/completed').find((n) => n.item.type === 'agentMessage').item.text, 'echo: one\ntwo');
  t.same(fake.thread(thread.id).turns.length, 1, 'one turn, not two');
});

t.test('lever phantomWhenBusy (pre-0.171): turn/start while busy answers a phantom id', async (t) => {
  const fake = await fakeFor(t, { holdTurns: true, phantomWhenBusy: true });
  const c = await Raw.ready(t, fake);
  const { thread } = await c.call('thread/start', {});
  const first = await c.call('turn/start', { threadId: thread.id, input: text('one') });
  await c.until(() => c.of('turn/started').length === 1, 'turn/started');
  const second = await c.call('turn/start', { threadId: thread.id, input: text('two') });
  t.not(second.turn.id, first.turn.id);
  t.match(second.turn, { status: 'inProgress', items: [] });
  t.same(fake.busyTurnStarts, [second.turn.id]);
  t.equal(fake.activeTurnId(thread.id), first.turn.id);
  t.match(fake.inputs[1], { via: 'fold', turnId: first.turn.id, answeredTurnId: second.turn.id, text: 'two' });

  await fake.completeTurn(thread.id);
  await c.until(() => c.of('turn/completed').length === 1, 'turn/completed');
  t.equal(c.of('turn/completed')[0].turn.id, first.turn.id);
  t.equal(c.of('turn/started').length, 1, 'the phantom never starts');
  t.notOk(
    c.texts.slice(1).some((s) => s.includes(second.turn.id) && !s.includes('"result"')),
    'the phantom id appears in no notification',
  );
  t.equal(c.of('item/completed').find((n) => n.item.type === 'agentMessage').item.text, 'echo: one\ntwo');
  t.same(fake.turnInputs(thread.id), ['one', 'two']);
  t.same(fake.thread(thread.id).turns.length, 1, 'one turn, not two');
});

t.test('turn/steer: errors, then steering the running turn', async (t) => {
  const fake = await fakeFor(t, { holdTurns: true });
  const c = await Raw.ready(t, fake);
  const { thread } = await c.call('thread/start', {});
  await t.rejects(c.call('turn/steer', { threadId: thread.id, input: text('x'), expectedTurnId: 't0' }), { code: -32600, message: 'no active turn to steer' });
  const { turn } = await c.call('turn/start', { threadId: thread.id, input: text('base') });
  await t.rejects(c.call('turn/steer', { threadId: thread.id, input: text('x'), expectedTurnId: 'wrong' }), {
    code: -32600,
    message: `expected active turn id wrong but found ${turn.id}`,
  });
  t.same(await c.call('turn/steer', { threadId: thread.id, input: text('more'), expectedTurnId: turn.id }), { turnId: turn.id });
  await fake.completeTurn(thread.id);
  t.same(fake.turnInputs(thread.id), ['base', 'more']);
  t.same(
    fake.inputs.map((i) => i.via),
    ['start', 'steer'],
  );
  await c.until(() => c.of('turn/completed').length === 1, 'turn/completed');
  t.equal(c.of('item/completed').find((n) => n.item.type === 'agentMessage').item.text, 'echo: base\nmore');
});

t.test('turn/interrupt answers {} then turn/completed interrupted', async (t) => {
  const fake = await fakeFor(t, { holdTurns: true });
  const c = await Raw.ready(t, fake);
  const { thread } = await c.call('thread/start', {});
  await t.rejects(c.call('turn/interrupt', { threadId: thread.id, turnId: 'x' }), { code: -32600 });
  const { turn } = await c.call('turn/start', { threadId: thread.id, input: text('long job') });
  const handle = fake.requestApproval(thread.id, 'commandExecution');
  await c.until(() => c.requests().length === 1, 'approval request');
  const before = c.frames.length;
  t.same(await c.call('turn/interrupt', { threadId: thread.id, turnId: turn.id }), {});
  await c.until(() => c.of('turn/completed').length === 1, 'turn/completed');
  t.match(await handle, { cleared: true, requestId: handle.requestId });
  await c.until(() => c.of('serverRequest/resolved').length === 1, 'serverRequest/resolved');
  t.same(
    c.methods((m) => m === 'serverRequest/resolved' || m === 'turn/completed').slice(-2),
    ['turn/completed', 'serverRequest/resolved'],
    'the pending request is resolved after turn/completed, as 0.171.0 does',
  );
  t.same(fake.pendingRequests(), []);
  t.ok(c.frames.slice(before).findIndex((f) => f.method === 'turn/completed') > c.frames.slice(before).findIndex((f) => f.result), 'the answer precedes turn/completed');
  t.match(c.of('turn/completed')[0], { threadId: thread.id, turn: { id: turn.id, status: 'interrupted' } });
  t.equal(c.of('item/completed').filter((n) => n.item.type === 'agentMessage').length, 0);
  t.match((await c.call('thread/read', { threadId: thread.id })).thread.status, { type: 'idle' });
});

t.test('threads live in server scope: drop, reconnect, resume with turns; resume errors', async (t) => {
  const fake = await fakeFor(t);
  const a = await Raw.ready(t, fake);
  const threadId = await threadWithTurn(a, 'remember me');
  await fake.dropConnections();
  await a.closed;
  t.equal(fake.connections, 0);

  const b = await Raw.ready(t, fake);
  t.same((await b.call('thread/loaded/list', {})).data, [threadId], 'still loaded after the socket went');
  const before = b.frames.length;
  const r = await b.call('thread/resume', { threadId });
  t.match(r, { model: 'gpt-5.1-codex', cwd: '/home/dev/p', sandbox: { type: 'workspaceWrite' } });
  t.match(r.thread.turns, [
    {
      status: 'completed',
      items: [
        { type: 'userMessage', content: [{ text: 'remember me' }] },
        { type: 'agentMessage', text: 'echo: remember me' },
      ],
    },
  ]);
  await new Promise((resolve) => setTimeout(resolve, 20));
  t.equal(b.frames.length, before + 2, 'resume with turns sends one deprecationNotice, nothing else');
  t.match(b.frames.at(-1), { method: 'deprecationNotice', params: { summary: /excludeTurns: true/ } });
  t.same((await b.call('thread/resume', { threadId, excludeTurns: true })).thread.turns, [], 'excludeTurns: no turns');

  // B is subscribed now: the next turn's events reach it.
  await b.call('turn/start', { threadId, input: text('again') });
  await b.until(() => b.of('turn/completed').length === 1, 'turn/completed on B');

  await t.rejects(b.call('thread/resume', { threadId: 'missing' }), { code: -32600, message: 'no rollout found for thread id missing' });
  fake.setActiveWriter(threadId);
  await t.rejects(b.call('thread/resume', { threadId }), { code: -32600, message: `thread ${threadId} already has an active writer` });
  await t.rejects(b.call('thread/resume', { threadId }), { message: /active writer/ }, 'not fixed by retrying');
  fake.setActiveWriter(threadId, false);
  t.ok(await b.call('thread/resume', { threadId }));
});

t.test('events go only to subscribed connections; thread/unsubscribe', async (t) => {
  const fake = await fakeFor(t);
  const a = await Raw.ready(t, fake);
  const other = await Raw.ready(t, fake);
  const { thread } = await a.call('thread/start', {});
  await other.call('turn/start', { threadId: thread.id, input: text('from a non-subscriber') });
  await a.until(() => a.of('turn/completed').length === 1, 'A sees the turn');
  t.equal(other.of('turn/started').length, 0, 'the caller of turn/start is not subscribed by it');
  t.same(await a.call('thread/unsubscribe', { threadId: thread.id }), { status: 'unsubscribed' });
  t.same(await a.call('thread/unsubscribe', { threadId: thread.id }), { status: 'notSubscribed' });
});

t.test('approvals: sent to every subscriber in the 0.171 shape, an error answer refused, first valid answer wins, resolved to all', async (t) => {
  const fake = await fakeFor(t, { holdTurns: true });
  const a = await Raw.ready(t, fake);
  const threadId = await (async () => {
    fake.opts.holdTurns = false;
    const id = await threadWithTurn(a);
    fake.opts.holdTurns = true;
    return id;
  })();
  const b = await Raw.ready(t, fake);
  await b.call('thread/resume', { threadId });
  const { turn } = await a.call('turn/start', { threadId, input: text('do something risky') });
  await b.until(() => b.of('turn/started').length === 1, 'B sees the turn');

  const handle = fake.requestApproval(threadId, 'commandExecution', { command: 'rm -rf build', reason: 'cleanup' });
  await a.until(() => a.requests().length === 1, 'request on A');
  await b.until(() => b.requests().length === 1, 'request on B');
  const req = a.requests()[0];
  t.same(b.requests()[0], req, 'same request, same id, to both');
  t.equal(req.id, handle.requestId);
  t.equal(req.method, 'item/commandExecution/requestApproval');
  t.same(
    Object.keys(req.params),
    ['kind', 'threadId', 'turnId', 'itemId', 'startedAtMs', 'environmentId', 'command', 'cwd', 'reason', 'commandActions', 'proposedExecpolicyAmendment', 'availableDecisions'],
    '0.171.0 keys, in order',
  );
  t.match(req.params, {
    kind: 'command',
    threadId,
    turnId: turn.id,
    command: "/bin/bash -lc 'rm -rf build'",
    cwd: '/home/dev/p',
    reason: 'cleanup',
    commandActions: [{ type: 'unknown', command: 'rm -rf build' }],
    proposedExecpolicyAmendment: ['rm', '-rf', 'build'],
  });
  t.same(req.params.availableDecisions, ['accept', { acceptWithExecpolicyAmendment: { execpolicy_amendment: ['rm', '-rf', 'build'] } }, 'cancel']);
  t.type(req.params.itemId, 'string');
  t.match(a.of('item/started').at(-1), { item: { type: 'commandExecution', id: req.params.itemId, status: 'inProgress' } });
  await a.until(() => a.of('thread/status/changed').some((n) => n.status.activeFlags?.includes('waitingOnApproval')), 'waitingOnApproval');
  t.same((await a.call('thread/read', { threadId })).thread.status, { type: 'active', activeFlags: ['waitingOnApproval'] });

  a.respondError(req.id, -32000, 'nope');
  await fake.waitFor(() => fake.invalidAnswers.length === 1, 2000, 'error answer refused');
  t.equal(fake.pendingRequests(threadId).length, 1, 'still waiting');

  const released = fake.completeTurn(threadId);
  await new Promise((resolve) => setTimeout(resolve, 30));
  t.equal(a.of('turn/completed').filter((n) => n.turn.id === turn.id).length, 0, 'the turn holds while the approval is pending');

  b.respond(req.id, { decision: 'accept' });
  const answer = await handle;
  t.match(answer, { decision: 'accept', requestId: req.id, threadId, turnId: turn.id });
  t.equal(answer.conn, fake.connectionInfo()[1]!.id, 'B answered');
  a.respond(req.id, { decision: 'decline' }); // too late
  await released;
  for (const c of [a, b]) {
    await c.until(() => c.of('turn/completed').some((n) => n.turn.id === turn.id), 'turn/completed');
    t.same(c.of('serverRequest/resolved'), [{ threadId, requestId: req.id }]);
    const names = c.methods((m) => m === 'serverRequest/resolved' || m === 'item/completed' || m === 'turn/completed').slice(-4);
    t.same(names.slice(0, 2), ['serverRequest/resolved', 'item/completed']);
    t.match(
      c.of('item/completed').find((n) => n.item.type === 'commandExecution'),
      { item: { id: req.params.itemId, status: 'completed' } },
    );
  }
  await fake.waitFor(() => fake.invalidAnswers.length === 2, 2000, 'late answer recorded');
  t.match(fake.invalidAnswers[1], { reason: 'no pending server request with this id' });
  t.equal(fake.answers.length, 1);
  t.same(fake.unofferedAnswers, []);
});

t.test('approval decisions as 0.171.0 takes them: a v1 word fails the item, an unlisted word is honoured, the amendment object accepted', async (t) => {
  const fake = await fakeFor(t, { holdTurns: true });
  const c = await Raw.ready(t, fake);
  const { thread } = await c.call('thread/start', {});
  await c.call('turn/start', { threadId: thread.id, input: text('x') });
  const item = (id: number) => c.of('item/completed').find((n) => n.item.type === 'commandExecution' && n.item.id === c.requests().find((r: any) => r.id === id)?.params.itemId)?.item;
  const ask = async (answer: unknown) => {
    const handle = fake.requestApproval(thread.id, 'commandExecution', { command: 'touch x' });
    await c.until(() => c.requests().some((r: any) => r.id === handle.requestId), 'the request');
    c.respond(handle.requestId, answer);
    const a = await handle;
    await c.until(() => item(handle.requestId) !== undefined, 'item/completed');
    return { a, item: item(handle.requestId), resolved: c.of('serverRequest/resolved').filter((n) => n.requestId === handle.requestId).length };
  };
  const v1 = await ask({ decision: 'approved' });
  t.match(fake.invalidAnswers, [{ method: 'item/commandExecution/requestApproval', reason: /invalid decision "approved"/ }], 'recorded as invalid');
  t.match(v1, { a: { decision: 'approved' }, item: { status: 'failed' }, resolved: 1 }, 'settled, the item failed');
  t.equal(fake.activeTurnId(thread.id) !== null, true, 'the turn goes on');
  const unlisted = await ask({ decision: 'decline' });
  t.match(unlisted, { item: { status: 'declined' }, resolved: 1 });
  t.match(fake.unofferedAnswers, [{ decision: 'decline' }], 'decline is not in availableDecisions: honoured, and recorded');
  const amendment = { acceptWithExecpolicyAmendment: { execpolicy_amendment: ['touch', 'x'] } };
  const amended = await ask({ decision: amendment });
  t.match(amended, { a: { decision: amendment }, item: { status: 'completed' }, resolved: 1 });
  t.equal(fake.unofferedAnswers.length, 1, 'the listed object is offered');
  const legacy = fake.requestApproval(thread.id, 'commandExecution', { command: 'npm test', legacy: true });
  await c.until(() => c.requests().some((r: any) => r.id === legacy.requestId), 'the legacy request');
  const lp = c.requests().find((r: any) => r.id === legacy.requestId).params;
  t.match(lp, { command: 'npm test', commandActions: [] }, 'legacy: the plain command');
  t.notOk('availableDecisions' in lp, 'legacy: no availableDecisions');
  t.equal(legacy.requestId, amended.a.requestId + 1, 'one request-id counter per server');
  c.respond(legacy.requestId, { decision: 'acceptForSession' });
  await legacy;
  t.equal(fake.unofferedAnswers.length, 1, 'nothing listed, nothing unoffered');
  await fake.completeTurn(thread.id);
});

t.test('resuming a running thread replays pending approvals with their original ids', async (t) => {
  const fake = await fakeFor(t);
  const a = await Raw.ready(t, fake);
  const threadId = await threadWithTurn(a);
  fake.opts.holdTurns = true;
  await a.call('turn/start', { threadId, input: text('needs approval') });
  const handle = fake.requestApproval(threadId, 'fileChange', { grantRoot: '/home/dev/p' });
  await a.until(() => a.requests().length === 1, 'request on A');
  await fake.dropConnections();

  const b = await Raw.ready(t, fake);
  const r = await b.call('thread/resume', { threadId });
  t.same(r.thread.status, { type: 'active', activeFlags: ['waitingOnApproval'] });
  t.equal(r.thread.turns.at(-1).status, 'inProgress');
  await b.until(() => b.requests().length === 1, 'replayed request');
  const req = b.requests()[0];
  t.equal(req.id, handle.requestId, 'original id');
  t.match(req, { method: 'item/fileChange/requestApproval', params: { threadId, grantRoot: '/home/dev/p' } });
  b.respond(req.id, { decision: 'decline' });
  t.match(await handle, { decision: 'decline' });
  await fake.completeTurn(threadId);
  await b.until(() => b.of('turn/completed').length === 1, 'turn/completed');
  t.match(
    b.of('item/completed').find((n) => n.item.type === 'fileChange'),
    { item: { status: 'declined' } },
  );
  t.equal(b.of('turn/completed')[0].turn.status, 'completed', 'decline does not end the turn');
});

t.test('"cancel" interrupts the turn', async (t) => {
  const fake = await fakeFor(t, { holdTurns: true });
  const c = await Raw.ready(t, fake);
  const { thread } = await c.call('thread/start', {});
  const { turn } = await c.call('turn/start', { threadId: thread.id, input: text('x') });
  const handle = fake.requestApproval(thread.id, 'commandExecution');
  await c.until(() => c.requests().length === 1, 'request');
  c.respond(handle.requestId, { decision: 'cancel' });
  t.match(await handle, { decision: 'cancel' });
  await c.until(() => c.of('turn/completed').length === 1, 'turn/completed');
  t.match(c.of('turn/completed')[0], { turn: { id: turn.id, status: 'interrupted' } });
  t.equal(fake.activeTurnId(thread.id), null);
});

t.test('permissions, requestUserInput, elicitation and an unknown method', async (t) => {
  const fake = await fakeFor(t, { holdTurns: true });
  const c = await Raw.ready(t, fake);
  const { thread } = await c.call('thread/start', {});
  await c.call('turn/start', { threadId: thread.id, input: text('x') });

  const perm = fake.requestApproval(thread.id, 'permissions');
  await c.until(() => c.requests('item/permissions/requestApproval').length === 1, 'permissions request');
  t.match(c.requests('item/permissions/requestApproval')[0].params, { permissions: { fileSystem: { write: [String] } } });
  c.respond(perm.requestId, { decision: 'accept' }); // wrong shape for this method
  await fake.waitFor(() => fake.invalidAnswers.length === 1, 2000, 'refused');
  c.respond(perm.requestId, { permissions: { fileSystem: { write: ['/home/dev'] } }, scope: 'session' });
  t.match(await perm, { result: { scope: 'session' }, decision: undefined });

  const ask = fake.requestApproval(thread.id, 'userInput');
  await c.until(() => c.requests('item/tool/requestUserInput').length === 1, 'user input request');
  await c.until(() => c.of('thread/status/changed').some((n) => n.status.activeFlags?.includes('waitingOnUserInput')), 'waitingOnUserInput');
  c.respond(ask.requestId, { answers: { q1: { answers: ['A'] } } });
  t.match(await ask, { result: { answers: { q1: { answers: ['A'] } } } });

  const eli = fake.requestApproval(thread.id, 'elicitation');
  await c.until(() => c.requests('mcpServer/elicitation/request').length === 1, 'elicitation');
  c.respond(eli.requestId, { action: 'decline', content: null });
  t.match(await eli, { result: { action: 'decline' } });

  const unk = fake.requestApproval(thread.id, 'unknown', { method: 'item/brandNew/requestApproval' });
  await c.until(() => c.requests('item/brandNew/requestApproval').length === 1, 'unknown request');
  c.respondError(unk.requestId, -32601, 'Method not found');
  t.match(await unk, { error: { code: -32601 } });
  await c.until(() => c.of('serverRequest/resolved').length === 4, 'four serverRequest/resolved');
  t.same(
    c.of('serverRequest/resolved').map((n) => n.requestId),
    [perm.requestId, ask.requestId, eli.requestId, unk.requestId],
  );
  await fake.completeTurn(thread.id);
});

t.test('turnScript: an approval requested mid-turn automatically, and a scripted failure', async (t) => {
  const fake = await fakeFor(t, {
    turnScript: (ctx) => (ctx.text.includes('fail') ? { fail: 'model exploded' } : ctx.text.includes('risky') ? { approvals: ['commandExecution'], reply: 'done' } : undefined),
  });
  const c = await Raw.ready(t, fake);
  const { thread } = await c.call('thread/start', {});
  await c.call('turn/start', { threadId: thread.id, input: text('risky thing') });
  await c.until(() => c.requests().length === 1, 'scripted approval');
  t.equal(c.of('turn/completed').length, 0);
  c.respond(c.requests()[0].id, { decision: 'acceptForSession' });
  await c.until(() => c.of('turn/completed').length === 1, 'turn/completed');
  t.equal(c.of('item/completed').find((n) => n.item.type === 'agentMessage').item.text, 'done');
  t.match(fake.answers, [{ decision: 'acceptForSession' }]);

  const { turn } = await c.call('turn/start', { threadId: thread.id, input: text('please fail') });
  await c.until(() => c.of('turn/completed').length === 2, 'failed turn');
  t.same(c.of('error'), [{ error: { message: 'model exploded', codexErrorInfo: 'other', additionalDetails: null }, willRetry: false, threadId: thread.id, turnId: turn.id }]);
  t.match(c.of('turn/completed')[1], { turn: { id: turn.id, status: 'failed', error: { message: 'model exploded' } } });
  t.same(c.methods((m) => m === 'error' || m === 'turn/completed').slice(-2), ['error', 'turn/completed']);
});

t.test('levers: failTurn and a retryable error on a held turn', async (t) => {
  const fake = await fakeFor(t, { holdTurns: true });
  const c = await Raw.ready(t, fake);
  const { thread } = await c.call('thread/start', {});
  const { turn } = await c.call('turn/start', { threadId: thread.id, input: text('x') });
  await c.until(() => c.of('turn/started').length === 1, 'started');
  fake.retryableError(thread.id);
  await c.until(() => c.of('error').length === 1, 'retryable error');
  t.match(c.of('error')[0], { willRetry: true, turnId: turn.id });
  t.equal(fake.activeTurnId(thread.id), turn.id, 'the turn goes on');
  fake.failTurn(thread.id, 'quota');
  await c.until(() => c.of('turn/completed').length === 1, 'failed');
  t.match(c.of('error')[1], { willRetry: false, error: { message: 'quota' } });
  t.match(c.of('turn/completed')[0].turn, { status: 'failed', error: { message: 'quota' } });
  t.same(c.of('thread/status/changed').at(-1).status, { type: 'idle' });
});

t.test('lever: a swallowed turn/completed; thread/read still tells the truth', async (t) => {
  const fake = await fakeFor(t);
  const c = await Raw.ready(t, fake);
  const { thread } = await c.call('thread/start', {});
  fake.dropNext('turn/completed');
  const { turn } = await c.call('turn/start', { threadId: thread.id, input: text('x') });
  await c.until(() => c.of('thread/status/changed').some((n) => n.status.type === 'idle'), 'idle status');
  t.equal(c.of('turn/completed').length, 0, 'turn/completed never arrived');
  t.match(fake.dropped, [{ method: 'turn/completed', params: { turn: { id: turn.id } } }]);
  const read = await c.call('thread/read', { threadId: thread.id, includeTurns: true });
  t.same(read.thread.status, { type: 'idle' });
  t.equal(read.thread.turns[0].status, 'completed');

  // Both signals can go: thread/read is the reconciliation path.
  fake.dropNext('turn/completed');
  fake.dropNext('thread/status/changed', 2);
  await c.call('turn/start', { threadId: thread.id, input: text('y') });
  await fake.waitFor(() => fake.activeTurnId(thread.id) === null, 2000, 'turn to end');
  t.same((await c.call('thread/read', { threadId: thread.id })).thread.status, { type: 'idle' });
  t.equal(c.of('turn/completed').length, 0);
  // The next turn completes normally again.
  await c.call('turn/start', { threadId: thread.id, input: text('z') });
  await c.until(() => c.of('turn/completed').length === 1, 'normal turn/completed');
});

t.test('lever: overload answers the next N requests with -32001', async (t) => {
  const fake = await fakeFor(t);
  const c = await Raw.ready(t, fake);
  fake.overload(2);
  await t.rejects(c.call('thread/loaded/list', {}), { code: -32001, message: 'Server overloaded; retry later.' });
  await t.rejects(c.call('thread/start', {}), { code: -32001 });
  t.ok(await c.call('thread/start', {}));
  t.equal(fake.threadIds().length, 1, 'the overloaded request did nothing');
});

t.test('stop() refuses connections, restart() comes back on the same port with the threads', async (t) => {
  const fake = await fakeFor(t);
  const a = await Raw.ready(t, fake);
  const threadId = await threadWithTurn(a);
  const port = fake.port;
  await fake.stop();
  await a.closed;
  t.notOk(fake.listening);
  await t.rejects(Raw.open(t, fake.url), { code: 'ECONNREFUSED' });
  await t.rejects(get(port, '/readyz'), { code: 'ECONNREFUSED' });

  await fake.restart();
  t.equal(fake.port, port);
  t.equal(await get(port, '/readyz'), 200);
  const b = await Raw.ready(t, fake);
  t.same((await b.call('thread/loaded/list', {})).data, [threadId]);
  t.ok(await b.call('thread/resume', { threadId }));

  // A new process: the thread is on disk only (notLoaded) until resumed.
  await fake.restart({ fresh: true });
  const c = await Raw.ready(t, fake);
  t.same((await c.call('thread/loaded/list', {})).data, []);
  t.same((await c.call('thread/read', { threadId })).thread.status, { type: 'notLoaded' });
  await t.rejects(c.call('turn/start', { threadId, input: text('x') }), { code: -32600, message: /not loaded/ });
  const r = await c.call('thread/resume', { threadId });
  t.same(r.thread.status, { type: 'idle' });
  t.equal(r.thread.turns.length, 1);
});

t.test('thread/list and pre-created threads for "auto" attach rules', async (t) => {
  const fake = await fakeFor(t);
  const now = Math.floor(Date.now() / 1000);
  const old = fake.addThread({ cwd: '/home/dev/p', updatedAt: now - 3600 });
  const recent = fake.addThread({ cwd: '/home/dev/p', updatedAt: now - 60, loaded: true });
  const elsewhere = fake.addThread({ cwd: '/home/dev/other', updatedAt: now, loaded: true });
  const never = fake.addThread({ cwd: '/home/dev/p', pastTurns: [], loaded: true });
  const broken = fake.addThread({ cwd: '/home/dev/p', loaded: true, systemError: true, updatedAt: now - 7200 });
  const c = await Raw.ready(t, fake);

  const all = await c.call('thread/list', { sortKey: 'updated_at' });
  t.same(
    all.data.map((x: any) => x.id),
    [elsewhere, recent, old, broken],
    'newest updated first; the never-run thread has no rollout',
  );
  t.equal(all.nextCursor, null);
  const here = await c.call('thread/list', { cwd: '/home/dev/p', sortKey: 'updated_at', limit: 2 });
  t.same(
    here.data.map((x: any) => x.id),
    [recent, old],
  );
  t.type(here.nextCursor, 'string');
  const rest = await c.call('thread/list', { cwd: '/home/dev/p', sortKey: 'updated_at', limit: 2, cursor: here.nextCursor });
  t.same(
    rest.data.map((x: any) => x.id),
    [broken],
  );
  t.equal(rest.nextCursor, null);
  t.same(
    all.data.map((x: any) => x.status.type),
    ['idle', 'idle', 'notLoaded', 'systemError'],
  );
  t.match(all.data[1], { cwd: '/home/dev/p', updatedAt: now - 60, preview: '(earlier work)', turns: [] });
  t.same(new Set((await c.call('thread/loaded/list', {})).data), new Set([recent, elsewhere, never, broken]));
  await t.rejects(c.call('thread/resume', { threadId: never }), { message: `no rollout found for thread id ${never}` });

  // Resuming a notLoaded thread loads it; a turn there bumps updatedAt to the top.
  await c.call('thread/resume', { threadId: old });
  await c.call('turn/start', { threadId: old, input: text('wake up') });
  await c.until(() => c.of('turn/completed').length === 1, 'turn/completed');
  t.equal((await c.call('thread/list', { cwd: '/home/dev/p', sortKey: 'updated_at' })).data[0].id, old);
});

t.test('control: a turn started by another client, unloadThread, opt-out notifications', async (t) => {
  const fake = await fakeFor(t);
  const c = await Raw.open(t, fake.url);
  await c.call('initialize', { clientInfo: { name: 'x', title: 'X', version: '1' }, capabilities: { optOutNotificationMethods: ['item/agentMessage/delta'] } });
  const { thread } = await c.call('thread/start', {});
  const turnId = fake.startTurn(thread.id, 'typed in the TUI');
  await c.until(() => c.of('turn/completed').length === 1, 'foreign turn completes');
  t.equal(c.of('turn/started')[0].turn.id, turnId);
  t.equal(c.of('item/agentMessage/delta').length, 0, 'opted out of deltas');
  t.match(fake.inputs, [{ via: 'control', conn: null, text: 'typed in the TUI' }]);

  fake.unloadThread(thread.id);
  await c.until(() => c.of('thread/closed').length === 1, 'thread/closed');
  t.same(c.of('thread/status/changed').at(-1), { threadId: thread.id, status: { type: 'notLoaded' } });
});

t.test('close() resolves pending approvals as cleared and is idempotent', async (t) => {
  const fake = await startFakeAppServer({ holdTurns: true });
  const c = await Raw.ready(t, fake);
  const { thread } = await c.call('thread/start', {});
  await c.call('turn/start', { threadId: thread.id, input: text('x') });
  const handle = fake.requestApproval(thread.id);
  await fake.close();
  await fake.close();
  t.match(await handle, { cleared: true });
  await c.closed;
  t.equal(fake.connections, 0);
});
