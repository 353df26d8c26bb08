import t, { type Test } from 'tap';
import { startRelay, type TestRelay } from '../helpers/relay.js';
import { connectAgent } from '../helpers/ws-client.js';
import { waitFor } from '../helpers/wait.js';

/**
 * GET /api/agents/:id/inbox over real HTTP against an in-process relay: cursor polling, unread
 * filtering, agent-token auth, and long-polling (`wait`) woken by messages committed through the
 * WebSocket by another agent.
 */

interface HttpReply {
  status: number;
  body: any;
}

/** One real HTTP request. Every request is bounded (default 40 s, past the longest wait used here). */
async function http(relay: TestRelay, method: string, path: string, opts: { headers?: Record<string, string>; body?: unknown; signal?: AbortSignal; timeoutMs?: number } = {}): Promise<HttpReply> {
  const bound = AbortSignal.timeout(opts.timeoutMs ?? 40_000);
  const res = await fetch(`${relay.url}${path}`, {
    method,
    headers: { ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}), ...opts.headers },
    ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
    signal: opts.signal ? AbortSignal.any([opts.signal, bound]) : bound,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/** Register an agent over HTTP (no live connection): its inbox is read by polling. */
async function registerHttp(relay: TestRelay, params: Record<string, unknown>): Promise<{ id: string; token: string; cursor: number }> {
  const r = await http(relay, 'POST', '/api/agents', { body: params });
  if (r.status !== 201 && r.status !== 200) throw new Error(`register failed: ${r.status} ${JSON.stringify(r.body)}`);
  return { id: r.body.agent.id, token: r.body.agentToken, cursor: r.body.cursor };
}

function inbox(relay: TestRelay, agent: { id: string; token: string }, query = '', signal?: AbortSignal, timeoutMs?: number): Promise<HttpReply> {
  return http(relay, 'GET', `/api/agents/${encodeURIComponent(agent.id)}/inbox${query ? `?${query}` : ''}`, {
    headers: { 'x-agent-token': agent.token },
    ...(signal ? { signal } : {}),
    ...(timeoutMs ? { timeoutMs } : {}),
  });
}

/** Long-polls the relay holds right now, read from its own /metrics gauge over HTTP. */
async function waitingPolls(relay: TestRelay): Promise<number> {
  const res = await fetch(`${relay.url}/metrics`);
  const text = await res.text();
  const m = /^agent_relay_connections\{kind="long_poll"\} (\d+)$/m.exec(text);
  if (!m) throw new Error('metrics carry no long_poll gauge');
  return Number(m[1]);
}

/** Resolve with `p`, or reject once `ms` pass: a generous safety net, never a timing assertion. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const fallback = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, fallback]);
  } finally {
    clearTimeout(timer);
  }
}

t.test('inbox polling: since cursor, limit, unread after message/read, and agent-token auth', async (t: Test) => {
  const relay = await startRelay(t);
  const alice = await registerHttp(relay, { id: 'alice' });
  const carol = await registerHttp(relay, { id: 'carol' });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });

  const ids: number[] = [];
  for (const body of ['one', 'two', 'three']) ids.push((await bob.rpc.call('message/send', { to: 'alice', body })).message.id);
  await bob.rpc.call('message/send', { to: 'carol', body: 'for carol only' });
  const [m1, m2, m3] = ids as [number, number, number];

  // Auth: the inbox needs the agent's own token.
  const missing = await http(relay, 'GET', '/api/agents/alice/inbox');
  t.equal(missing.status, 401, 'no X-Agent-Token: 401');
  t.equal(missing.body.error.code, -32001);
  const wrong = await inbox(relay, { id: 'alice', token: 'not-the-token' });
  t.equal(wrong.status, 401, 'wrong token: 401');
  t.equal(wrong.body.error.code, -32001);
  const other = await inbox(relay, { id: 'alice', token: carol.token });
  t.equal(other.status, 401, "another agent's token does not open alice's inbox");
  t.notOk(JSON.stringify(other.body).includes('one'), 'nothing of the inbox leaks in the refusal');
  const unknown = await inbox(relay, { id: 'nobody', token: alice.token });
  t.equal(unknown.status, 401, 'an unknown agent id: 401, not a hint that it does not exist');

  const all = await inbox(relay, alice);
  t.equal(all.status, 200);
  t.same(
    all.body.messages.map((m: any) => m.id),
    [m1, m2, m3],
    'every message to alice, in order',
  );
  t.same(
    all.body.messages.map((m: any) => m.body),
    ['one', 'two', 'three'],
  );
  t.ok(all.body.messages.every((m: any) => m.from === 'bob'));
  t.equal(all.body.cursor, m3, 'cursor is the last id returned');

  const since = await inbox(relay, alice, `since=${m1}`);
  t.same(
    since.body.messages.map((m: any) => m.id),
    [m2, m3],
    'since excludes the cursor itself',
  );
  t.equal(since.body.cursor, m3);
  const caughtUp = await inbox(relay, alice, `since=${m3}`);
  t.same(caughtUp.body, { messages: [], cursor: m3 }, 'nothing new: empty, and the cursor stays');
  const page = await inbox(relay, alice, 'limit=2');
  t.same(
    page.body.messages.map((m: any) => m.id),
    [m1, m2],
    'limit pages',
  );
  t.equal(page.body.cursor, m2, 'the cursor of a page is its last id: the next poll continues there');
  const next = await inbox(relay, alice, `since=${page.body.cursor}&limit=2`);
  t.same(
    next.body.messages.map((m: any) => m.id),
    [m3],
  );

  const carolInbox = await inbox(relay, carol);
  t.same(
    carolInbox.body.messages.map((m: any) => m.body),
    ['for carol only'],
    "carol's inbox holds only hers",
  );

  const bad = await inbox(relay, alice, 'since=abc');
  t.equal(bad.status, 400, 'a non-numeric since is refused');
  t.match(bad.body.error.message, /since/);

  // unread=true: marking read removes them from the unread view, not from the inbox.
  const unread0 = await inbox(relay, alice, 'unread=true');
  t.same(
    unread0.body.messages.map((m: any) => m.id),
    [m1, m2, m3],
    'all unread at first',
  );
  const readHeaders = { 'x-agent-id': 'alice', 'x-agent-token': alice.token };
  const refused = await http(relay, 'POST', '/api/messages/read', { headers: { 'x-agent-id': 'alice', 'x-agent-token': carol.token }, body: { ids: [m1] } });
  t.equal(refused.status, 401, 'marking read needs the right token');
  const marked = await http(relay, 'POST', '/api/messages/read', { headers: readHeaders, body: { ids: [m1, m2] } });
  t.equal(marked.status, 200);
  t.equal(marked.body.marked, 2);
  const unread1 = await inbox(relay, alice, 'unread=true');
  t.same(
    unread1.body.messages.map((m: any) => m.id),
    [m3],
    'the read ones disappear from unread=true',
  );
  t.equal(unread1.body.cursor, m3);
  const stillAll = await inbox(relay, alice);
  t.same(
    stillAll.body.messages.map((m: any) => m.id),
    [m1, m2, m3],
    'without unread they are all still there',
  );
  const upTo = await http(relay, 'POST', '/api/messages/read', { headers: readHeaders, body: { upTo: m3 } });
  t.equal(upTo.body.marked, 1, 'upTo marks only what was still unread');
  const unread2 = await inbox(relay, alice, 'unread=true');
  t.same(unread2.body.messages, [], 'all read');
  const carolUnread = await inbox(relay, carol, 'unread=true');
  t.equal(carolUnread.body.messages.length, 1, "alice's reads do not touch carol's unread");

  // A poll by the recipient itself is a hand-over: the delivery counts as pushed.
  const delivery = await http(relay, 'GET', `/api/messages/${m1}`);
  const alices = delivery.body.deliveries.find((d: any) => d.agentId === 'alice');
  t.not(alices?.state, 'queued', 'polled messages are no longer merely queued');
});

t.test('long-poll: immediate when there is mail, woken by a WebSocket send, empty at the deadline', async (t: Test) => {
  const relay = await startRelay(t);
  const alice = await registerHttp(relay, { id: 'alice' });
  const idle = await registerHttp(relay, { id: 'idle' });
  await registerHttp(relay, { id: 'carol' });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });

  // wait is bounded to 60 s and must be whole seconds.
  for (const bad of ['61', '3600', '-1', '1.5', 'soon']) {
    // Bounded at 5 s: a relay that accepted the value would park the poll instead of answering.
    const r = await inbox(relay, alice, `wait=${bad}`, undefined, 5000);
    t.equal(r.status, 400, `wait=${bad} is refused with 400`);
    t.equal(r.body.error.code, -32602);
    t.match(r.body.error.message, /\bwait\b/, 'the error names wait');
  }
  const noToken = await http(relay, 'GET', '/api/agents/alice/inbox?wait=10', { timeoutMs: 5000 });
  t.equal(noToken.status, 401, 'a long-poll without a token is refused before any wait');

  // Something already there: answered at once. wait=60 would park it for a minute otherwise, and
  // a parked poll that ran out would come back empty: the content proves it was not parked.
  const first = (await bob.rpc.call('message/send', { to: 'alice', body: 'already here' })).message.id as number;
  const immediate = await within(inbox(relay, alice, 'wait=60'), 5000, 'poll with mail waiting');
  t.equal(immediate.status, 200);
  t.same(
    immediate.body.messages.map((m: any) => m.body),
    ['already here'],
  );
  t.equal(immediate.body.cursor, first);
  t.equal(await waitingPolls(relay), 0, 'an answered poll leaves no waiter behind');

  // Parked, then woken by a message another agent sends over its WebSocket.
  let settled = false;
  const parked = inbox(relay, alice, `since=${first}&wait=10`).finally(() => (settled = true));
  await waitFor(async () => (await waitingPolls(relay)) === 1, 'the poll to park', 5000);
  t.notOk(settled, 'the poll is pending: nothing newer than its cursor');

  // A message to someone else does not answer alice's poll.
  await bob.rpc.call('message/send', { to: 'carol', body: 'not for alice' });
  t.equal((await http(relay, 'GET', '/healthz')).status, 200);
  t.notOk(settled, "a message for carol does not answer alice's poll");
  t.equal(await waitingPolls(relay), 1, "alice's poll is still waiting after carol's message");

  const sent = await bob.rpc.call('message/send', { to: 'alice', body: 'wake up' });
  const woken = await within(parked, 5000, 'the parked poll after a message to alice');
  t.equal(woken.status, 200);
  t.same(
    woken.body.messages.map((m: any) => m.body),
    ['wake up'],
    'answered with exactly the new message',
  );
  t.equal(woken.body.messages[0].id, sent.message.id);
  t.equal(woken.body.messages[0].from, 'bob');
  t.equal(woken.body.cursor, sent.message.id, 'the cursor moves to it');
  t.equal(await waitingPolls(relay), 0, 'the woken poll unregistered its waiter');

  // A second parked poll from the new cursor is woken by the next send too (waiters re-arm per poll).
  const parked2 = inbox(relay, alice, `since=${woken.body.cursor}&wait=10`);
  await waitFor(async () => (await waitingPolls(relay)) === 1, 'the second poll to park', 5000);
  const again = await bob.rpc.call('message/send', { to: 'alice', body: 'again' });
  const woken2 = await within(parked2, 5000, 'the second parked poll');
  t.same(
    woken2.body.messages.map((m: any) => m.id),
    [again.message.id],
  );

  // Empty inbox: wait=1 answers at its deadline with no messages and the cursor it was given.
  const empty = await within(inbox(relay, idle, 'wait=1'), 5000, 'a wait=1 poll');
  t.equal(empty.status, 200);
  t.same(empty.body, { messages: [], cursor: 0 }, 'deadline: empty messages, cursor 0 without since');
  const emptySince = await within(inbox(relay, alice, `since=${again.message.id}&wait=1`), 5000, 'a wait=1 poll with since');
  t.same(emptySince.body, { messages: [], cursor: again.message.id }, 'deadline: empty messages, the cursor kept');
  t.equal(await waitingPolls(relay), 0, 'a poll that ran out leaves no waiter');

  // A client that goes away mid-wait takes its waiter with it.
  const ac = new AbortController();
  const abandoned = inbox(relay, idle, 'wait=30', ac.signal).then(
    () => 'answered',
    (err: Error) => err.name,
  );
  await waitFor(async () => (await waitingPolls(relay)) === 1, 'the abandoned poll to park', 5000);
  ac.abort();
  t.equal(await abandoned, 'AbortError');
  await waitFor(async () => (await waitingPolls(relay)) === 0, 'the aborted poll to be forgotten', 5000);
  t.pass('an aborted long-poll is unregistered');
  // The relay is fine afterwards, and a message to that agent is simply waiting in its inbox.
  await bob.rpc.call('message/send', { to: 'idle', body: 'later' });
  const later = await inbox(relay, idle);
  t.same(
    later.body.messages.map((m: any) => m.body),
    ['later'],
  );
});

t.test('300 concurrent long-polls: all answered by one fan-out, relay responsive and idle meanwhile', async (t: Test) => {
  const relay = await startRelay(t);
  const AGENTS = 30;
  const POLLS_EACH = 10;
  const agents: Array<{ id: string; token: string; cursor: number }> = [];
  for (let i = 0; i < AGENTS; i++) agents.push(await registerHttp(relay, { id: `poller-${i}`, tags: ['pollers'] }));
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  // Something for someone else first: nobody's poll must be answered by it.
  await bob.rpc.call('message/send', { to: 'bob', body: 'note to self' });

  const ac = new AbortController();
  t.teardown(() => ac.abort());
  const polls: Array<Promise<{ agent: string; reply: HttpReply }>> = [];
  for (const a of agents) {
    for (let k = 0; k < POLLS_EACH; k++) polls.push(inbox(relay, a, 'wait=30', ac.signal).then((reply) => ({ agent: a.id, reply })));
  }
  let answered = 0;
  for (const p of polls)
    void p.then(
      () => answered++,
      () => undefined,
    );
  await waitFor(async () => (await waitingPolls(relay)) === AGENTS * POLLS_EACH, `${AGENTS * POLLS_EACH} polls to park`, 20_000);
  t.equal(answered, 0, 'no poll answered early');

  // The relay keeps serving while 300 polls are parked.
  const health = await within(http(relay, 'GET', '/healthz'), 5000, '/healthz during the waits');
  t.equal(health.status, 200);
  t.equal(health.body.ok, true);
  const list = await within(http(relay, 'GET', '/api/agents'), 5000, 'GET /api/agents during the waits');
  t.equal(list.status, 200);
  t.ok(list.body.agents.length >= AGENTS + 1);

  // Parked polls cost no CPU: a waiter is a callback plus one timer, no polling loop.
  const before = process.cpuUsage();
  const wallStart = process.hrtime.bigint();
  await new Promise((r) => setTimeout(r, 1000));
  const used = process.cpuUsage(before);
  const wallMs = Number(process.hrtime.bigint() - wallStart) / 1e6;
  const share = (used.user + used.system) / 1000 / wallMs;
  t.comment(`CPU while ${AGENTS * POLLS_EACH} long-polls wait: ${((used.user + used.system) / 1000).toFixed(1)} ms over ${wallMs.toFixed(0)} ms wall = ${(share * 100).toFixed(1)}% of one core`);
  t.ok(share < 0.5, `idle with 300 parked polls uses under half a core (got ${(share * 100).toFixed(1)}%)`);
  t.equal(await waitingPolls(relay), AGENTS * POLLS_EACH, 'all still parked after the idle window');
  t.equal(answered, 0, 'and none answered');

  // One fan-out message reaches all 30 agents and answers all 300 polls with it.
  const sent = await bob.rpc.call('message/send', { to: 'tag:pollers', body: 'everyone up' });
  t.equal(sent.recipients.length, AGENTS, 'the fan-out resolved to every poller');
  const results = await within(Promise.all(polls), 10_000, 'all 300 polls after the fan-out');
  t.equal(results.length, AGENTS * POLLS_EACH);
  const wrong = results.filter((r) => r.reply.status !== 200 || r.reply.body.messages.length !== 1 || r.reply.body.messages[0].id !== sent.message.id);
  t.same(
    wrong.map((r) => ({ agent: r.agent, status: r.reply.status, body: r.reply.body })),
    [],
    'every poll answered 200 with exactly the fan-out message',
  );
  t.ok(
    results.every((r) => r.reply.body.cursor === sent.message.id),
    'every cursor moved to it',
  );
  const perAgent = new Map<string, number>();
  for (const r of results) perAgent.set(r.agent, (perAgent.get(r.agent) ?? 0) + 1);
  t.same([...perAgent.values()], new Array(AGENTS).fill(POLLS_EACH), 'ten answers for each of the thirty agents');
  t.equal(await waitingPolls(relay), 0, 'no waiter left behind');
  t.equal((await http(relay, 'GET', '/healthz')).status, 200, 'still healthy');
});
