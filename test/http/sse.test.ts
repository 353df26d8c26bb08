import t, { type Test } from 'tap';
import { prune } from '../../broker/domain/prune.js';
import { ManualClock, startRelay, type TestRelay } from '../helpers/relay.js';
import { connectAgent } from '../helpers/ws-client.js';
import { waitFor } from '../helpers/wait.js';

/**
 * GET /api/stream (Server-Sent Events) over real HTTP against an in-process relay. The stream is
 * read with fetch's body reader and parsed here, field by field, as a browser's EventSource would.
 */

interface SseEvent {
  id: string | undefined;
  event: string;
  data: string;
}

const DAY = 86_400_000;

/** A live SSE response: every event and comment recorded, closed by abort at teardown. */
class SseStream {
  readonly events: SseEvent[] = [];
  readonly comments: string[] = [];
  retry: number | undefined;
  ended = false;
  private buffer = '';
  private waiters: Array<() => void> = [];
  readonly done: Promise<void>;

  constructor(
    readonly status: number,
    readonly headers: Headers,
    body: ReadableStream<Uint8Array>,
    private readonly ac: AbortController,
  ) {
    this.done = this.pump(body);
  }

  private async pump(body: ReadableStream<Uint8Array>): Promise<void> {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        this.buffer += decoder.decode(value, { stream: true });
        this.parse();
        this.wake();
      }
    } catch {
      // aborted by us
    } finally {
      this.ended = true;
      this.wake();
    }
  }

  /** Split complete blocks (terminated by a blank line) into events and comments. */
  private parse(): void {
    this.buffer = this.buffer.replace(/\r\n?/g, '\n');
    let end: number;
    while ((end = this.buffer.indexOf('\n\n')) >= 0) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      let id: string | undefined;
      let event = 'message';
      const data: string[] = [];
      let isEvent = false;
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) {
          this.comments.push(line.slice(1).trimStart());
          continue;
        }
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? '' : line.slice(colon + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'id') id = value;
        else if (field === 'event') event = value;
        else if (field === 'data') {
          data.push(value);
          isEvent = true;
        } else if (field === 'retry') this.retry = Number(value);
      }
      if (isEvent) this.events.push({ id, event, data: data.join('\n') });
    }
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  of(event: string): Array<{ id: string | undefined; params: any }> {
    return this.events.filter((e) => e.event === event).map((e) => ({ id: e.id, params: JSON.parse(e.data).params }));
  }

  /** message/new events: [cursor from `id:`, message]. */
  messages(): Array<{ id: string | undefined; message: any }> {
    return this.of('message/new').map((e) => ({ id: e.id, message: e.params.message }));
  }

  async until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!cond()) {
      if (this.ended) throw new Error(`stream ended while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Disconnect, and wait until our side has let go. */
  async close(): Promise<void> {
    this.ac.abort();
    await this.done;
  }
}

/** Open GET /api/stream; a refusal comes back as { status, body } instead of a stream. */
async function openStream(t: Test, relay: TestRelay, query: string, headers: Record<string, string> = {}): Promise<SseStream | { status: number; body: any }> {
  const ac = new AbortController();
  // The response head must come within 5 s; the body then lives until we abort it.
  const headTimer = setTimeout(() => ac.abort(new Error('no response head within 5 s')), 5000);
  let res: Response;
  try {
    res = await fetch(`${relay.url}/api/stream${query ? `?${query}` : ''}`, { headers, signal: ac.signal });
  } finally {
    clearTimeout(headTimer);
  }
  if (!(res.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  }
  const stream = new SseStream(res.status, res.headers, res.body!, ac);
  t.teardown(() => stream.close());
  return stream;
}

async function mustStream(t: Test, relay: TestRelay, query: string, headers: Record<string, string> = {}): Promise<SseStream> {
  const s = await openStream(t, relay, query, headers);
  if (!(s instanceof SseStream)) throw new Error(`stream refused: ${s.status} ${JSON.stringify(s.body)}`);
  return s;
}

async function http(relay: TestRelay, method: string, path: string, opts: { headers?: Record<string, string>; body?: unknown } = {}): Promise<{ status: number; body: any }> {
  const res = await fetch(`${relay.url}${path}`, {
    method,
    signal: AbortSignal.timeout(10_000),
    headers: { ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}), ...opts.headers },
    ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function registerHttp(relay: TestRelay, params: Record<string, unknown>): Promise<{ id: string; token: string }> {
  const r = await http(relay, 'POST', '/api/agents', { body: params });
  if (r.status !== 201 && r.status !== 200) throw new Error(`register failed: ${r.status} ${JSON.stringify(r.body)}`);
  return { id: r.body.agent.id, token: r.body.agentToken };
}

/** Live SSE sessions the relay holds, from its own /metrics gauge. */
async function sseConnections(relay: TestRelay): Promise<number> {
  const text = await (await fetch(`${relay.url}/metrics`)).text();
  const m = /^agent_relay_connections\{kind="sse"\} (\d+)$/m.exec(text);
  if (!m) throw new Error('metrics carry no sse gauge');
  return Number(m[1]);
}

/** Resolve with `p`, or reject once `ms` pass: a safety net, never a timing assertion. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const fallback = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, fallback]);
  } finally {
    clearTimeout(timer);
  }
}

t.test('observer stream: message/new, task/updated and agent/updated, with id = message cursor', async (t: Test) => {
  const relay = await startRelay(t);
  const s = await mustStream(t, relay, '');
  t.equal(s.status, 200);
  t.match(s.headers.get('content-type'), /^text\/event-stream/);
  t.equal(s.headers.get('cache-control'), 'no-store');
  await s.until(() => s.retry !== undefined, 'the retry hint');
  t.equal(s.retry, 2000, 'a reconnect delay is advertised');
  await waitFor(async () => (await sseConnections(relay)) === 1, 'the stream to be registered', 5000);

  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  await s.until(() => s.of('agent/updated').some((e) => e.params.agent.id === 'bob'), 'agent/updated for bob');
  const agentEvent = s.of('agent/updated').find((e) => e.params.agent.id === 'alice');
  t.ok(agentEvent, 'agent/updated for alice arrived');
  t.equal(agentEvent?.params.agent.status, 'online');
  t.equal(agentEvent?.id, undefined, 'agent/updated carries no id: Last-Event-ID stays a message cursor');
  t.notOk('agentToken' in (agentEvent?.params.agent ?? {}) || 'tokenHash' in (agentEvent?.params.agent ?? {}), 'no credential in the feed');

  const m1 = await alice.rpc.call('message/send', { to: 'bob', body: 'first' });
  const m2 = await bob.rpc.call('message/send', { to: 'alice', body: 'second', subject: 'multi\nline? no: json' });
  await s.until(() => s.messages().length >= 2, 'two message/new events');
  t.same(
    s.messages().map((e) => e.id),
    [String(m1.message.id), String(m2.message.id)],
    'id: is the message cursor',
  );
  t.same(
    s.messages().map((e) => e.message.body),
    ['first', 'second'],
  );
  t.equal(s.messages()[1]!.message.subject, 'multi\nline? no: json', 'data is one JSON line, newlines escaped');
  const raw = JSON.parse(s.events.find((e) => e.event === 'message/new')!.data);
  t.equal(raw.jsonrpc, '2.0', 'data is the same JSON-RPC notification the WebSocket carries');
  t.equal(raw.method, 'message/new');

  const { task } = await alice.rpc.call('task/create', { title: 'build it', target: 'bob' });
  await s.until(() => s.of('task/updated').some((e) => e.params.task.id === task.id), 'task/updated for the new task');
  const { claimToken } = await bob.rpc.call('task/claim', { id: task.id });
  await bob.rpc.call('task/update', { id: task.id, claimToken, status: 'done' });
  await s.until(() => s.of('task/updated').some((e) => e.params.task.status === 'done'), 'task/updated done');
  const kinds = s
    .of('task/updated')
    .filter((e) => e.params.task.id === task.id)
    .map((e) => e.params.event.kind);
  t.same(kinds.slice(0, 1), ['task.created']);
  t.ok(kinds.includes('task.claimed') && kinds.includes('task.closed'), `claim and close were announced (${kinds.join(', ')})`);
  t.ok(
    s.of('task/updated').every((e) => e.id === undefined),
    'task/updated carries no id',
  );
  t.ok(
    s.of('event/new').some((e) => e.params.event.kind === 'task.claimed'),
    'event/new rides along on the events topic',
  );

  // topics= narrows an observer feed.
  const onlyTasks = await mustStream(t, relay, 'topics=tasks');
  await waitFor(async () => (await sseConnections(relay)) === 2, 'the second stream', 5000);
  await alice.rpc.call('message/send', { to: 'bob', body: 'not on the tasks feed' });
  const { task: t2 } = await alice.rpc.call('task/create', { title: 'second task', target: 'bob' });
  await onlyTasks.until(() => onlyTasks.of('task/updated').some((e) => e.params.task.id === t2.id), 'the task on the tasks feed');
  t.same(
    onlyTasks.events.map((e) => e.event),
    ['task/updated'],
    'a tasks-only feed carries nothing else',
  );
  const badTopic = await openStream(t, relay, 'topics=tasks,bogus');
  t.equal(badTopic.status, 400, 'an unknown topic is refused');
  t.match((badTopic as { body: any }).body.error.message, /topics.*bogus/);

  await onlyTasks.close();
  await s.close();
  await waitFor(async () => (await sseConnections(relay)) === 0, 'the relay to forget closed streams', 5000);
  t.pass('a closed stream is unregistered');
});

t.test('keep-alive comments arrive on an idle stream', async (t: Test) => {
  const relay = await startRelay(t, {}, { sseKeepAliveMs: 50 });
  const s = await mustStream(t, relay, 'topics=messages');
  await s.until(() => s.comments.filter((c) => c === 'keep-alive').length >= 2, 'two keep-alive comments');
  t.ok(s.comments.includes('keep-alive'), `a ": keep-alive" comment line arrived (${s.comments.length} so far)`);
  t.same(s.events, [], 'comments are not events');
  await s.close();
  await waitFor(async () => (await sseConnections(relay)) === 0, 'the stream to be forgotten', 5000);
  t.pass('its keep-alive timer went with it');
});

t.test('agent stream: only its own messages; Last-Event-ID resumes exactly the missed ones', async (t: Test) => {
  const relay = await startRelay(t);
  const reader = await registerHttp(relay, { id: 'reader' });
  await registerHttp(relay, { id: 'someone-else' });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const auth = { 'x-agent-token': reader.token };

  const wrong = await openStream(t, relay, 'agentId=reader', { 'x-agent-token': 'nope' });
  t.equal(wrong.status, 401, 'an agent stream with a wrong token is refused');
  t.equal((wrong as { body: any }).body.error.code, -32001);
  const none = await openStream(t, relay, 'agentId=reader');
  t.equal(none.status, 401, 'an agent stream without a token is refused');

  const s1 = await mustStream(t, relay, 'agentId=reader', auth);
  await waitFor(async () => (await sseConnections(relay)) === 1, 'the agent stream', 5000);
  const sent: number[] = [];
  const send = async (to: string, body: string) => {
    const r = await bob.rpc.call('message/send', { to, body });
    if (to === 'reader') sent.push(r.message.id);
    return r.message.id as number;
  };
  await send('reader', 'live 1');
  await send('someone-else', 'not yours');
  await send('reader', 'live 2');
  await s1.until(() => s1.messages().length >= 2, 'two live messages');
  t.same(
    s1.messages().map((e) => e.message.body),
    ['live 1', 'live 2'],
    "only the reader's messages",
  );
  t.same(
    s1.messages().map((e) => Number(e.id)),
    sent,
    'ids are the cursors',
  );
  const lastSeen = s1.messages().at(-1)!.id!;

  // Disconnect, and make sure the relay noticed before sending more.
  await s1.close();
  await waitFor(async () => (await sseConnections(relay)) === 0, 'the relay to see the disconnect', 5000);
  await send('reader', 'missed 1');
  await send('someone-else', 'still not yours');
  await send('reader', 'missed 2');
  await send('reader', 'missed 3');
  const missed = sent.slice(2);

  const s2 = await mustStream(t, relay, 'agentId=reader', { ...auth, 'last-event-id': lastSeen });
  await s2.until(() => s2.messages().length >= 3, 'the three missed messages');
  // One live message after the backlog: anything duplicated would have come before it.
  const live = await send('reader', 'live 3');
  await s2.until(() => s2.messages().some((e) => Number(e.id) === live), 'the live message after the backlog');
  t.same(
    s2.messages().map((e) => Number(e.id)),
    [...missed, live],
    'exactly the missed ones, in order, then live: no duplicates',
  );
  t.same(
    s2.messages().map((e) => e.message.body),
    ['missed 1', 'missed 2', 'missed 3', 'live 3'],
  );
  t.same(
    s2.messages().map((e) => Number(e.id)),
    s2.messages().map((e) => e.message.id),
    'id: equals message.id throughout',
  );

  // since= in the query resumes the same way.
  await s2.close();
  const s3 = await mustStream(t, relay, `agentId=reader&since=${missed[1]}`, auth);
  await s3.until(() => s3.messages().length >= 2, 'resume by since=');
  t.same(
    s3.messages().map((e) => Number(e.id)),
    [missed[2], live],
    'since= resumes after the given id',
  );
  await s3.close();
  // An EventSource reconnects with its original URL (since= and all) plus Last-Event-ID: the header
  // is the newer position and wins, or every reconnect would replay from the original since.
  const s4 = await mustStream(t, relay, `agentId=reader&since=${missed[0]}`, { ...auth, 'last-event-id': String(missed[2]) });
  await s4.until(() => s4.messages().length >= 1, 'resume by Last-Event-ID over since=');
  const live2 = await send('reader', 'live 4');
  await s4.until(() => s4.messages().some((e) => Number(e.id) === live2), 'the live message after it');
  t.same(
    s4.messages().map((e) => Number(e.id)),
    [live, live2],
    'Last-Event-ID wins over the since= of the URL: nothing replayed twice',
  );

  // Garbage in Last-Event-ID is refused, not read as "from the start".
  const garbage = await openStream(t, relay, 'agentId=reader', { ...auth, 'last-event-id': 'abc' });
  t.equal(garbage.status, 400, 'a non-numeric Last-Event-ID is refused');
  t.match((garbage as { body: any }).body.error.message, /since/);
});

t.test('Last-Event-ID resumes across a relay restart on the same database: nothing lost', async (t: Test) => {
  const dir = t.testdir();
  const relay1 = await startRelay(t, {}, { dir });
  const reader = await registerHttp(relay1, { id: 'reader' });
  const auth = { 'x-agent-token': reader.token };
  const bob1 = await connectAgent(t, relay1.wsUrl, { id: 'bob' });

  // An observer stays connected through the stop: the relay must end its stream.
  const obs = await mustStream(t, relay1, 'topics=messages');
  const s1 = await mustStream(t, relay1, 'agentId=reader', auth);
  await waitFor(async () => (await sseConnections(relay1)) === 2, 'both streams', 5000);
  const before: number[] = [];
  for (const body of ['a', 'b']) before.push((await bob1.rpc.call('message/send', { to: 'reader', body })).message.id);
  await s1.until(() => s1.messages().length >= 2, 'two live messages');
  const lastSeen = s1.messages().at(-1)!.id!;
  t.equal(Number(lastSeen), before[1]);
  await s1.close();
  await waitFor(async () => (await sseConnections(relay1)) === 1, 'the relay to see the disconnect', 5000);

  // Sent after the disconnect but before the stop.
  const missed: number[] = [];
  for (const body of ['c', 'd']) missed.push((await bob1.rpc.call('message/send', { to: 'reader', body })).message.id);
  await obs.until(() => obs.messages().length >= 4, 'the observer to see a-d');
  await relay1.close();
  await bob1.rpc.closed;
  await within(obs.done, 5000, 'the observer stream to end when the relay stops');
  t.ok(obs.ended, 'a graceful stop ends open SSE streams (their clients reconnect and resume)');
  t.same(
    obs.messages().map((e) => Number(e.id)),
    [...before, ...missed],
    'the observer saw a-d before the stop',
  );
  const obsLast = obs.messages().at(-1)!.id!;

  const relay2 = await startRelay(t, {}, { dir });
  t.not(relay2.port, 0);
  const bob2 = await connectAgent(t, relay2.wsUrl, { id: 'bob', agentToken: bob1.token });
  // Sent after the restart, before the reader reconnects.
  for (const body of ['e', 'f']) missed.push((await bob2.rpc.call('message/send', { to: 'reader', body })).message.id);
  t.ok(missed[2]! > missed[1]!, 'ids keep growing across the restart');

  const s2 = await mustStream(t, relay2, 'agentId=reader', { ...auth, 'last-event-id': lastSeen });
  await s2.until(() => s2.messages().length >= 4, 'the four missed messages');
  const live = (await bob2.rpc.call('message/send', { to: 'reader', body: 'g' })).message.id as number;
  await s2.until(() => s2.messages().some((e) => Number(e.id) === live), 'the live message');
  t.same(
    s2.messages().map((e) => Number(e.id)),
    [...missed, live],
    'before-stop and after-restart messages, in order, then live; none twice',
  );
  t.same(
    s2.messages().map((e) => e.message.body),
    ['c', 'd', 'e', 'f', 'g'],
  );

  // The observer resumes from where the stop cut it off.
  const obs2 = await mustStream(t, relay2, 'topics=messages', { 'last-event-id': obsLast });
  await obs2.until(() => obs2.messages().length >= 3, 'the observer backlog');
  t.same(
    obs2.messages().map((e) => e.message.body),
    ['e', 'f', 'g'],
    'the observer gets exactly what it missed',
  );
});

t.test('a cursor below the pruned floor is refused with -32007 / 410, never skipped', async (t: Test) => {
  const clock = new ManualClock();
  const relay = await startRelay(t, { retentionDays: 1, offlinePruneMs: 30 * DAY, presenceIntervalMs: 600_000 }, { clock });
  const reader = await registerHttp(relay, { id: 'reader' });
  const auth = { 'x-agent-token': reader.token };
  const old: number[] = [];
  for (const body of ['old 1', 'old 2', 'old 3']) {
    const r = await http(relay, 'POST', '/api/messages', { body: { to: 'reader', body, from: 'ext:ci' } });
    t.equal(r.status, 201);
    old.push(r.body.message.id);
  }
  clock.advance(2 * DAY);
  const result = await prune(relay.core);
  t.equal(result.prunedThrough, old[2], 'the three old messages are pruned');
  const fresh = (await http(relay, 'POST', '/api/messages', { body: { to: 'reader', body: 'fresh', from: 'ext:ci' } })).body.message.id as number;

  for (const [what, query, headers] of [
    ['Last-Event-ID below the floor', 'agentId=reader', { ...auth, 'last-event-id': String(old[0]) }],
    ['since= below the floor', `agentId=reader&since=${old[1]}`, auth],
    ['since=0 on an observer feed', 'since=0', {}],
  ] as const) {
    const r = await openStream(t, relay, query, headers);
    t.notOk(r instanceof SseStream, `${what}: no stream`);
    t.equal(r.status, 410, `${what}: 410 Gone`);
    t.equal((r as { body: any }).body.error.code, -32007, `${what}: -32007 cursor expired`);
    t.equal((r as { body: any }).body.error.data.floor, old[2], `${what}: the floor is named`);
  }
  const inbox = await http(relay, 'GET', `/api/agents/reader/inbox?since=${old[0]}`, { headers: auth });
  t.equal(inbox.status, 410, 'the inbox refuses the same cursor');
  t.equal(inbox.body.error.code, -32007);

  // At the floor it resumes, with what retention still holds.
  const s = await mustStream(t, relay, 'agentId=reader', { ...auth, 'last-event-id': String(old[2]) });
  await s.until(() => s.messages().length >= 1, 'the message after the floor');
  t.same(
    s.messages().map((e) => Number(e.id)),
    [fresh],
  );
});

t.test('relay token: the stream needs the bearer', async (t: Test) => {
  const token = 'sse-relay-token-0123456789';
  const relay = await startRelay(t, { token });
  const none = await openStream(t, relay, '');
  t.equal(none.status, 401, 'no Authorization: 401');
  t.equal((none as { body: any }).body.error.code, -32001);
  const wrong = await openStream(t, relay, '', { authorization: 'Bearer not-the-relay-token-xx' });
  t.equal(wrong.status, 401, 'wrong bearer: 401');
  t.notOk(relay.logText().includes(token), 'the token is never logged');
  t.equal(await sseConnections2(relay, token), 0, 'no stream was opened for the refused requests');

  const ok = await mustStream(t, relay, 'topics=messages', { authorization: `Bearer ${token}` });
  t.equal(ok.status, 200, 'with the bearer: a stream');
  const r = await http(relay, 'POST', '/api/messages', { headers: { authorization: `Bearer ${token}` }, body: { to: 'broadcast', body: 'hi', from: 'ext:ci' } });
  t.equal(r.status, 201);
  await ok.until(() => ok.messages().length >= 1, 'the message on the authorized stream');
  t.equal(ok.messages()[0]!.message.body, 'hi');
});

async function sseConnections2(relay: TestRelay, token: string): Promise<number> {
  const text = await (await fetch(`${relay.url}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text();
  const m = /^agent_relay_connections\{kind="sse"\} (\d+)$/m.exec(text);
  if (!m) throw new Error('metrics carry no sse gauge');
  return Number(m[1]);
}
