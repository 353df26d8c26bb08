import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { CLOSE_CODES } from '../../protocol/index.js';
import { startPostgres } from '../helpers/postgres.js';
import { spawnRelay, type RelayProcess } from '../helpers/relay-process.js';
import { waitFor } from '../helpers/wait.js';
import { connectAgent, WsRpc } from '../helpers/ws-client.js';

/*
 * Presence across relay nodes (AGENT_RELAY_CLUSTER=on): relay processes on one PostgreSQL
 * database. One session per agent across the nodes (a newer registration on another node closes
 * the old socket with 4502); an agent connected through another live node is listed connected
 * and is not stale; a dead node's agents are released only STALE_TTL_MS after they were last
 * heard from, and one that reconnects to another node within it never. Messages committed on one
 * node reach the sockets, SSE streams and long-polls of another, and a client re-registering by
 * cursor on other nodes misses none. Sends, tasks and released work routed by tag reach an agent
 * that registered on another node a moment ago, and so does a send to its id.
 */

const server = await startPostgres(t);
const TTL_MS = 3_000;

async function nodes(t: Test, n: number): Promise<RelayProcess[]> {
  const url = await server.freshDatabase();
  const dir = mkdtempSync(join(tmpdir(), 'relay-cluster-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const env = { AGENT_RELAY_STORE: url, AGENT_RELAY_CLUSTER: 'on', STALE_TTL_MS: String(TTL_MS), AGENT_RELAY_PRESENCE_INTERVAL_MS: '200' };
  const out: RelayProcess[] = [];
  for (let i = 0; i < n; i++) out.push(await spawnRelay(t, { dbPath: join(dir, `unused-${i}.db`), env }));
  return out;
}

type Listed = { id: string; status: string; connected: boolean; lastSeenAt: number };
const listed = async (rpc: WsRpc, id: string): Promise<Listed | undefined> => ((await rpc.call('agent/list', {})).agents as Listed[]).find((a) => a.id === id);

t.test('one session per agent across nodes; connected through another node is connected', async (t) => {
  const [a, b] = await nodes(t, 2);
  const observer = await WsRpc.connect(t, a!.wsUrl);
  const first = await connectAgent(t, a!.wsUrl, { id: 'x' });
  t.match(await listed(observer, 'x'), { connected: true }, 'x on node 1, listed connected there');

  const second = await WsRpc.connect(t, b!.wsUrl);
  const at = Date.now();
  await second.call('agent/register', { id: 'x', agentToken: first.token });
  const code = await first.rpc.closed;
  t.equal(code, CLOSE_CODES.replaced, `registering x on node 2 closed its node-1 socket with 4502 (${Date.now() - at} ms after)`);
  t.match(first.rpc.closeReason, /another relay node/, 'saying why');
  t.equal(second.closeCode, null, 'the newer socket stays open');
  await waitFor(async () => (await listed(observer, 'x'))?.connected === true, 'node 1 to list x as connected (through node 2)');
  t.pass('node 1 lists x connected while its socket is on node 2');

  await second.close();
  await waitFor(async () => (await listed(observer, 'x'))?.connected === false, 'node 1 to list x as disconnected');
  t.pass('and disconnected once that socket closed');
  t.match(await listed(observer, 'x'), { status: 'online' }, 'still online: its TTL counts from the disconnect');
});

/** An SSE stream of `agentId` on `url`; `ended` turns true when the relay ends it. */
async function sseStream(t: Test, url: string, agentId: string, token: string): Promise<{ ended: () => boolean; abort: () => void }> {
  const ac = new AbortController();
  t.teardown(() => ac.abort());
  const res = await fetch(`${url}/api/stream?agentId=${agentId}`, { headers: { 'x-agent-token': token }, signal: ac.signal });
  t.equal(res.status, 200, `the stream of ${agentId} opened`);
  let ended = false;
  void (async () => {
    try {
      const body = res.body!.getReader();
      while (!(await body.read()).done);
      ended = true;
    } catch {
      // aborted by the test
    }
  })();
  return { ended: () => ended, abort: () => ac.abort() };
}

t.test("an agent's SSE stream on one node is its connection on every node: listed, replaced by a newer registration elsewhere, gone when it ends", async (t) => {
  const [a, b] = await nodes(t, 2);
  const x = await connectAgent(t, a!.wsUrl, { id: 'x' });
  await x.rpc.close();
  const observer = await WsRpc.connect(t, b!.wsUrl);
  await waitFor(async () => (await listed(observer, 'x'))?.connected === false, 'node 2 to list x disconnected once its socket closed');

  const first = await sseStream(t, a!.url, 'x', x.token);
  await waitFor(async () => (await listed(observer, 'x'))?.connected === true, 'node 2 to list x connected through its SSE stream on node 1');
  t.pass('node 2 lists x connected while its SSE stream is on node 1');
  first.abort();
  await waitFor(async () => (await listed(observer, 'x'))?.connected === false, 'node 2 to list x disconnected once the stream closed');
  t.pass('and disconnected once the stream closed');

  const second = await sseStream(t, a!.url, 'x', x.token);
  await waitFor(async () => (await listed(observer, 'x'))?.connected === true, 'node 2 to list x connected through its second stream');
  const ws = await WsRpc.connect(t, b!.wsUrl);
  const at = Date.now();
  await ws.call('agent/register', { id: 'x', agentToken: x.token });
  await waitFor(second.ended, 'the SSE stream on node 1 to end once x registered on node 2');
  t.pass(`registering x over a WebSocket on node 2 ended its SSE stream on node 1 (${Date.now() - at} ms after)`);
  t.equal(ws.closeCode, null, 'the newer socket stays open');
  const onA = await WsRpc.connect(t, a!.wsUrl);
  await waitFor(async () => (await listed(onA, 'x'))?.connected === true, 'node 1 to list x connected through node 2');
  t.pass('node 1 lists x connected (through node 2)');
});

t.test('a send or task by tag right after a registration on another node reaches the new agent', async (t) => {
  const [a, b] = await nodes(t, 2);
  const sender = await connectAgent(t, a!.wsUrl, { id: 'sender' });
  const ROUNDS = 12;
  const missed: string[] = [];
  const started = Date.now();
  for (let i = 0; i < ROUNDS; i++) {
    const id = `fresh-${i}`;
    // With the LISTEN connections cut (they come back after 1 s), node 1 hears of node 2's next
    // commit only at its next poll of the log, up to 1 s later, unless it asks.
    await server.admin(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'agent-relay feed'`);
    // Answered by node 2 once committed and published there.
    const fresh = await connectAgent(t, b!.wsUrl, { id, tags: ['fresh'] });
    // Even rounds a message, odd ones a task (a send's own commit brings node 1 up to date).
    if (i % 2 === 0) {
      const sent = await sender.rpc.call('message/send', { to: 'tag:fresh', body: `hello ${i}` });
      if (!(sent.recipients as string[]).includes(id)) missed.push(`message ${sent.message.id} to tag:fresh missed ${id}`);
    } else {
      const { task } = await sender.rpc.call('task/create', { title: `job ${i}`, target: 'tag:fresh' });
      await fresh.rpc
        .until(() => fresh.rpc.messages().some((m) => m.taskId === task.id), 3_000, `${id} to be offered task ${task.id}`)
        .catch(() => {
          missed.push(`task ${task.id} for tag:fresh was not offered to ${id}`);
        });
    }
    await fresh.rpc.close();
  }
  t.same(
    missed,
    [],
    `${ROUNDS} registrations on node 2, each followed at once on node 1 by a send or a task to tag:fresh, the nodes' LISTEN connections cut before each: none missed the new agent (${Date.now() - started} ms in all)`,
  );
});

t.test('work released right after a registration on another node is offered to the new agent; so is a direct send to it', async (t) => {
  const [a, b] = await nodes(t, 2);
  const observer = await WsRpc.connect(t, a!.wsUrl);
  const ROUNDS = 8;
  const missed: string[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const holder = await connectAgent(t, a!.wsUrl, { id: `holder-${i}`, tags: ['pool'] });
    const { task } = await observer.call('task/create', { title: `job ${i}`, target: 'tag:pool', from: 'ext:ci' });
    const { claimToken } = await holder.rpc.call('task/claim', { id: task.id });
    await server.admin(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'agent-relay feed'`);
    const id = `fresh-${i}`;
    const fresh = await connectAgent(t, b!.wsUrl, { id, tags: ['pool'] });
    // Even rounds the owner releases the task; odd ones it leaves, which releases it too.
    if (i % 2 === 0) await holder.rpc.call('task/release', { id: task.id, claimToken });
    else await holder.rpc.call('agent/update', { id: holder.id, status: 'offline' });
    await fresh.rpc
      .until(() => fresh.rpc.messages().some((m) => m.taskId === task.id), 3_000, `${id} to be offered task ${task.id} again`)
      .catch(() => missed.push(`task ${task.id} ${i % 2 === 0 ? 'released' : 'left'} by ${holder.id} was not offered to ${id}`));
    await holder.rpc.close();
    await fresh.rpc.close();
  }
  t.same(missed, [], `${ROUNDS} releases on node 1, each right after a registration of a matching agent on node 2 with the LISTEN connections cut: none missed it`);

  // A direct id node 1 has not heard of yet: found by catching up, not refused with -32002.
  await server.admin(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'agent-relay feed'`);
  await connectAgent(t, b!.wsUrl, { id: 'direct' });
  const sent = await observer.call('message/send', { to: 'direct', body: 'hi', from: 'ext:ci' });
  t.same(sent.recipients, ['direct'], 'a send to an id registered on node 2 a moment ago is delivered to it');

  // And the agent itself, moving to node 1 at once with its token, is the same agent there.
  await server.admin(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'agent-relay feed'`);
  const mover = await connectAgent(t, b!.wsUrl, { id: 'mover' });
  const moved = await WsRpc.connect(t, a!.wsUrl);
  const again = await moved.call('agent/register', { id: 'mover', agentToken: mover.token });
  t.equal(again.created, false, 'an agent registered on node 2 a moment ago re-registers on node 1 with its token');

  await server.admin(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'agent-relay feed'`);
  await connectAgent(t, b!.wsUrl, { id: 'renamed' });
  const { agent } = await observer.call('agent/update', { id: 'renamed', label: 'Renamed' });
  t.equal(agent.label, 'Renamed', 'an observer on node 1 relabels an agent registered on node 2 a moment ago');

  // An HTTP hook behind a round-robin balancer: registered through node 2, its next request lands on node 1.
  await server.admin(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'agent-relay feed'`);
  const registered = await fetch(`${b!.url}/rpc`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'agent/register', params: { id: 'hook' } }),
  }).then((r) => r.json() as Promise<{ result: { agentToken: string } }>);
  const inbox = await fetch(`${a!.url}/api/agents/hook/inbox`, { headers: { 'x-agent-token': registered.result.agentToken } });
  t.equal(inbox.status, 200, `an HTTP agent registered through node 2 a moment ago is served by node 1 with its token (${inbox.status} ${await inbox.text()})`.slice(0, 200));
});

t.test("a dead node's agents: released only STALE_TTL_MS after they were last heard from; one that reconnects elsewhere, never", async (t) => {
  const [a, b] = await nodes(t, 2);
  const observer = await WsRpc.connect(t, a!.wsUrl);
  const y = await connectAgent(t, b!.wsUrl, { id: 'y' });
  const z = await connectAgent(t, b!.wsUrl, { id: 'z' });
  const { task } = await observer.call('task/create', { title: 'held by y', target: 'y', from: 'ext:ci' });
  await y.rpc.call('task/claim', { id: task.id });
  await waitFor(async () => (await listed(observer, 'y'))?.connected === true, 'node 1 to list y as connected through node 2');

  const killedAt = Date.now();
  await b!.kill9();
  // z moves to node 1 well within its TTL.
  await new Promise((r) => setTimeout(r, 500));
  const zAgain = await WsRpc.connect(t, a!.wsUrl);
  await zAgain.call('agent/register', { id: 'z', agentToken: z.token });

  const ySeen = (await listed(observer, 'y'))!.lastSeenAt;
  t.ok((await listed(observer, 'y'))?.status === 'online' && Date.now() - ySeen < TTL_MS, 'y is still online right after its node died');
  await waitFor(async () => (await listed(observer, 'y'))?.status === 'offline', 'y to go offline', TTL_MS + 15_000, 50);
  const offlineAt = Date.now();
  const y2 = (await listed(observer, 'y'))!;
  t.ok(
    offlineAt - y2.lastSeenAt >= TTL_MS,
    `y went offline ${offlineAt - y2.lastSeenAt} ms after it was last heard from (STALE_TTL_MS ${TTL_MS}; ${offlineAt - killedAt} ms after its node was killed)`,
  );
  const after = await observer.call('task/get', { id: task.id });
  t.equal(after.task.status, 'open', "y's claimed task was released");

  await new Promise((r) => setTimeout(r, 1000));
  t.match(await listed(observer, 'z'), { status: 'online', connected: true }, 'z, back on node 1 within its TTL, was never released');
  const events = (await observer.call('event/list', { kind: 'agent.offline' })).events as { agentId: string }[];
  t.same(
    events.map((e) => e.agentId),
    ['y'],
    'the only agent.offline event is y’s',
  );
});

t.test('a message sent on one node reaches a socket on another, in id order; resumed by cursor on a third', async (t) => {
  const [a, b, c] = await nodes(t, 3);
  const sender = await connectAgent(t, a!.wsUrl, { id: 'sender' });
  const x = await connectAgent(t, b!.wsUrl, { id: 'x' });
  await waitFor(async () => (await listed(sender.rpc, 'x'))?.connected === true, 'node 1 to know x');
  const SENT = 200;
  const ids: number[] = [];
  for (let i = 0; i < SENT; i++) ids.push((await sender.rpc.call('message/send', { to: 'x', body: `m${i}` })).message.id);
  await waitFor(() => x.rpc.messages().length >= SENT, `x (node 2) to get ${SENT} messages sent on node 1`);
  t.same(
    x.rpc.messages().map((m) => m.id as number),
    ids,
    `x got all ${SENT}, each once, in id order`,
  );
  const cursor = ids.at(-1)!;
  await x.rpc.close();
  const later: number[] = [];
  for (let i = 0; i < 50; i++) later.push((await sender.rpc.call('message/send', { to: 'x', body: `later ${i}` })).message.id);
  const back = await WsRpc.connect(t, c!.wsUrl);
  await back.call('agent/register', { id: 'x', agentToken: x.token, since: cursor });
  t.same(
    back.messages().map((m) => m.id as number),
    later,
    'registering on node 3 with its cursor: exactly the 50 it missed, in order, before the answer',
  );
});

t.test('a client that keeps re-registering on other nodes, by cursor, while another node sends to it, misses nothing', async (t) => {
  // Each register is answered after other nodes' commits may already be published on its node:
  // with no session bound yet, only the backlog can bring those (attach.ts).
  const [a, b, c] = await nodes(t, 3);
  const sender = await connectAgent(t, a!.wsUrl, { id: 'sender' });
  const first = await connectAgent(t, b!.wsUrl, { id: 'mover' });
  const sent: number[] = [];
  let sending = true;
  const sends = (async () => {
    for (let i = 0; sending; i++) {
      const batch = await Promise.all(Array.from({ length: 8 }, (_, k) => sender.rpc.call('message/send', { to: 'mover', body: `m${i}.${k}` })));
      sent.push(...batch.map((r) => r.message.id as number));
    }
  })();
  const got = new Set<number>();
  let cursor = 0;
  let rpc = first.rpc;
  const ROUNDS = 40;
  for (let round = 0; round < ROUNDS; round++) {
    await new Promise((r) => setTimeout(r, 30));
    for (const m of rpc.messages()) got.add(m.id as number);
    cursor = Math.max(cursor, ...rpc.messages().map((m) => m.id as number));
    await rpc.close();
    rpc = await WsRpc.connect(t, (round % 2 ? b! : c!).wsUrl);
    await rpc.call('agent/register', { id: 'mover', agentToken: first.token, since: cursor });
  }
  sending = false;
  await sends;
  await waitFor(() => sent.every((id) => got.has(id) || rpc.messages().some((m) => m.id === id)), 'the last socket to get the rest', 10_000).catch(() => {});
  for (const m of rpc.messages()) got.add(m.id as number);
  const missing = sent.filter((id) => !got.has(id));
  t.same(missing, [], `${ROUNDS} re-registrations on nodes 2 and 3 while node 1 sent ${sent.length}: none missing`);
});

t.test('SSE and long-poll on one node get what another node commits, in id order', async (t) => {
  const [a, b] = await nodes(t, 2);
  const sender = await connectAgent(t, a!.wsUrl, { id: 'sender' });
  const reader = await connectAgent(t, b!.wsUrl, { id: 'reader' });
  await reader.rpc.close();
  const headers = { 'x-agent-token': reader.token };

  // SSE on node 2, from the start of the inbox.
  const ac = new AbortController();
  t.teardown(() => ac.abort());
  const res = await fetch(`${b!.url}/api/stream?agentId=reader&since=0`, { headers, signal: ac.signal });
  t.match(res.headers.get('content-type'), /^text\/event-stream/, 'node 2 opened the stream');
  const streamed: number[] = [];
  void (async () => {
    let buffer = '';
    const decoder = new TextDecoder();
    try {
      const body = res.body!.getReader();
      for (;;) {
        const { value, done } = await body.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (!/^event: message\/new$/m.test(block)) continue;
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (data) streamed.push((JSON.parse(data) as { params: { message: { id: number } } }).params.message.id);
        }
      }
    } catch {
      // aborted at teardown
    }
  })();

  // A long-poll on node 2, waiting before anything is sent.
  const polled = fetch(`${b!.url}/api/agents/reader/inbox?since=0&wait=20`, { headers, signal: AbortSignal.timeout(25_000) }).then(async (r) => ({
    at: Date.now(),
    body: (await r.json()) as { messages: { id: number }[] },
  }));
  await new Promise((r) => setTimeout(r, 300));
  const sentAt = Date.now();
  const ids: number[] = [];
  for (let i = 0; i < 30; i++) ids.push((await sender.rpc.call('message/send', { to: 'reader', body: `n${i}` })).message.id as number);

  const poll = await polled;
  t.ok(poll.body.messages.length > 0 && poll.body.messages[0]!.id === ids[0], `the long-poll on node 2 returned with the first message sent on node 1, ${poll.at - sentAt} ms after the send began`);
  await waitFor(() => streamed.length >= ids.length, 'the SSE stream on node 2 to carry all 30', 10_000);
  t.same(streamed, ids, 'the SSE stream on node 2 carried all 30, each once, in id order');
});
