import { join } from 'node:path';
import t, { type Test } from 'tap';
import { spawnRelay } from '../helpers/relay-process.js';
import { connectAgent, RpcError, WsRpc } from '../helpers/ws-client.js';

/** Every message in the store, as an observer sees it (pages of 1000). */
async function allMessages(rpc: WsRpc): Promise<Array<Record<string, any>>> {
  const out: Array<Record<string, any>> = [];
  let since = 0;
  for (;;) {
    const page = await rpc.call('message/list', { since, limit: 1000 });
    out.push(...page.messages);
    if (page.messages.length < 1000) return out;
    since = page.cursor;
  }
}

const agentFacts = (agents: Array<Record<string, any>>) =>
  agents.map(({ id, label, tags, capabilities, channels, status, system, ready, registeredAt, meta }) => ({
    id,
    label,
    tags,
    capabilities,
    channels,
    status,
    system,
    ready,
    registeredAt,
    meta,
  }));

async function restartBetweenSendAndReconnect(t: Test, how: 'SIGTERM' | 'SIGKILL'): Promise<void> {
  const dbPath = join(t.testdir(), 'relay.db');
  const r1 = await spawnRelay(t, { dbPath });

  const a = await connectAgent(t, r1.wsUrl, { id: 'alice', label: 'Alice', tags: ['dev'] });
  const b = await connectAgent(t, r1.wsUrl, { id: 'bob', label: 'Bob', tags: ['ops'], capabilities: ['deploy'], meta: { team: 'infra' } });

  // A thread (alice → bob, bob replies), a read marker, and a task bob owns and is working on.
  const root = (await a.rpc.call('message/send', { to: 'bob', subject: 'plan', body: 'root' })).message;
  await b.rpc.until(() => b.rpc.messages().some((m) => m.id === root.id), 3000, 'root message');
  const reply = (await b.rpc.call('message/send', { to: 'alice', body: 'reply', replyTo: root.id })).message;
  t.equal(reply.threadId, root.id, 'the reply joins the root thread');
  t.equal((await b.rpc.call('message/read', { ids: [root.id] })).marked, 1, 'bob marks the root read');
  const created = (await a.rpc.call('task/create', { title: 'deploy', target: 'bob', body: 'ship it' })).task;
  await b.rpc.until(() => b.rpc.messages().some((m) => m.taskId === created.id), 3000, 'task announcement');
  const claim = await b.rpc.call('task/claim', { id: created.id });
  await b.rpc.call('task/update', { id: created.id, claimToken: claim.claimToken, status: 'in_progress', progress: 40, note: 'halfway' });

  // Bob remembers the last id he saw, and goes away.
  const bobCursor = Math.max(b.cursor, ...b.rpc.messages().map((m) => m.id as number));
  await b.rpc.close();

  const sent: Array<Record<string, any>> = [];
  for (let i = 0; i < 20; i++) {
    const r = await a.rpc.call('message/send', { to: 'bob', body: String(i) });
    t.same(r.recipients, ['bob'], `message ${i} is addressed to bob while he is away`);
    sent.push(r.message);
  }
  t.ok(sent[0]!.id > bobCursor, 'the missed messages come after bob’s cursor');

  const before = {
    agents: agentFacts((await a.rpc.call('agent/list', {})).agents),
    thread: await a.rpc.call('thread/get', { id: root.id }),
    task: await a.rpc.call('task/get', { id: created.id }),
    events: (await a.rpc.call('event/list', { limit: 1000 })).events as Array<Record<string, any>>,
  };
  t.same(
    before.agents.map((x) => x.id),
    ['alice', 'bob'],
  );
  t.equal(before.task.task.status, 'in_progress');
  t.ok(before.events.length >= 5, 'events were recorded before the restart');

  if (how === 'SIGTERM') {
    const code = await r1.stop('SIGTERM');
    t.equal(code, 0, 'SIGTERM: the relay exits with code 0');
    const closeCode = await a.rpc.closed;
    t.ok(closeCode >= 4000 && closeCode < 4500, `live sockets are closed with a reconnect-and-resume code (got ${closeCode})`);
  } else {
    const exit = await r1.kill9();
    t.equal(exit.signal, 'SIGKILL', 'SIGKILL: the relay died without running shutdown code');
    await a.rpc.closed;
  }

  const r2 = await spawnRelay(t, { dbPath });

  // A wrong token is still refused: token hashes survived.
  const intruder = await WsRpc.connect(t, r2.wsUrl);
  await t.rejects(intruder.call('agent/register', { id: 'bob', agentToken: 'not-the-token' }), { code: -32001 }, 'a wrong token is refused after restart');

  // Bob resumes with his token and his old cursor.
  const b2 = await WsRpc.connect(t, r2.wsUrl);
  const reg = await b2.call('agent/register', { id: 'bob', agentToken: b.token, since: bobCursor });
  t.equal(reg.agent.id, 'bob', 'bob re-registers with his token');
  t.equal(reg.agentToken, b.token, 'his token is unchanged');
  t.equal(reg.cursor, sent.at(-1)!.id, 'the register cursor is the last committed message');
  await b2.until(() => b2.messages().length >= 20, 5000, 'the 20 missed messages');

  // A live message sent after the registration comes after the backlog.
  const a2 = await connectAgent(t, r2.wsUrl, { id: 'alice', agentToken: a.token });
  const live = (await a2.rpc.call('message/send', { to: 'bob', body: 'live' })).message;
  await b2.until(() => b2.messages().some((m) => m.id === live.id), 3000, 'the live message');

  const got = b2.messages();
  t.equal(got.length, 21, 'every missed message arrives exactly once, then the live one');
  t.same(
    got.slice(0, 20).map((m) => m.body),
    Array.from({ length: 20 }, (_, i) => String(i)),
    'bodies 0..19 in order',
  );
  t.same(
    got.slice(0, 20).map((m) => m.id),
    sent.map((m) => m.id),
    'the missed messages keep their ids',
  );
  t.ok(
    got.every((m, i) => i === 0 || m.id > got[i - 1]!.id),
    'ids strictly increase',
  );
  t.ok(
    got.every((m) => m.id > bobCursor),
    'nothing at or below the cursor is pushed again',
  );
  t.equal(got.at(-1)!.id, live.id, 'the live message arrives last');
  t.ok(
    got.slice(0, 20).every((m) => m.from === 'alice' && m.to === 'bob'),
    'sender and target survived',
  );

  // Durable state is back.
  const after = {
    agents: agentFacts((await b2.call('agent/list', {})).agents),
    thread: await b2.call('thread/get', { id: root.id }),
    task: await b2.call('task/get', { id: created.id }),
    events: (await b2.call('event/list', { limit: 1000 })).events as Array<Record<string, any>>,
  };
  t.same(after.agents, before.agents, 'agents are back (labels, tags, capabilities, meta, status)');
  t.same(after.thread, before.thread, 'the thread is back');
  t.same(
    after.thread.messages.map((m: any) => m.id),
    [root.id, reply.id],
  );
  t.same(after.task, before.task, 'the task and its events are back');
  t.equal(after.task.task.claimedBy, 'bob', 'a restart shorter than STALE_TTL_MS releases nothing');
  t.same(after.events.slice(0, before.events.length), before.events, 'every event recorded before the restart is back, in order');

  const inbox = (await b2.call('message/list', { limit: 1000 })).messages.map((m: any) => m.id);
  const unread = (await b2.call('message/list', { unread: true, limit: 1000 })).messages.map((m: any) => m.id);
  t.ok(inbox.includes(root.id), 'the root is still in bob’s inbox');
  t.notOk(unread.includes(root.id), 'bob’s read marker on the root survived');
  t.same(
    unread,
    inbox.filter((id: number) => id !== root.id),
    'everything else is still unread',
  );
  t.ok(
    sent.every((m) => unread.includes(m.id)),
    'the missed messages are unread (pushed is not read)',
  );

  // Bob's claim token from before the restart is still current.
  const done = await b2.call('task/update', { id: created.id, claimToken: claim.claimToken, status: 'done' });
  t.equal(done.task.status, 'done', 'the owner finishes the task with his old claim token');

  const last = how === 'SIGTERM' ? 'SIGINT' : 'SIGTERM';
  t.equal(await r2.stop(last), 0, `the restarted relay also stops cleanly on ${last}`);
}

t.test('restart with SIGTERM between a send and a reconnect loses nothing', (t) => restartBetweenSendAndReconnect(t, 'SIGTERM'));
t.test('restart after SIGKILL between a send and a reconnect loses nothing', (t) => restartBetweenSendAndReconnect(t, 'SIGKILL'));

t.test('SIGTERM is graceful: exit 0, and every acknowledged in-flight send is there after restart', async (t) => {
  const dbPath = join(t.testdir(), 'relay.db');
  const r1 = await spawnRelay(t, { dbPath });
  const a = await connectAgent(t, r1.wsUrl, { id: 'alice' });
  await connectAgent(t, r1.wsUrl, { id: 'bob' });

  const acked = new Map<number, string>();
  const refused: Array<{ body: string; code: number }> = [];
  let unanswered = 0;
  const unansweredBodies: string[] = [];
  let ackedAfterSignal = 0;
  let stopping: Promise<number | null> | null = null;
  const calls: Array<Promise<void>> = [];
  let n = 0;
  // Keep sending in small waves until the relay closes the socket; SIGTERM goes out mid-stream.
  while (a.rpc.ws.readyState === a.rpc.ws.OPEN && n < 3000) {
    for (let i = 0; i < 10; i++) {
      const body = `m${n++}`;
      calls.push(
        a.rpc.call('message/send', { to: 'bob', body }).then(
          (r) => {
            acked.set(r.message.id, body);
            if (stopping) ackedAfterSignal++;
            else if (acked.size >= 30) stopping = r1.stop('SIGTERM');
          },
          (err: unknown) => {
            if (err instanceof RpcError) refused.push({ body, code: err.code });
            else {
              unanswered++;
              unansweredBodies.push(body);
            }
          },
        ),
      );
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  await Promise.all(calls);
  t.ok(stopping, 'SIGTERM was sent while sends were flowing');
  t.equal(await stopping, 0, 'the relay exits with code 0');
  t.ok(acked.size >= 30, `sends were acknowledged (${acked.size})`);
  t.ok(
    refused.every((r) => r.code === -32008),
    'a send refused during shutdown is refused as -32008 (nothing written)',
  );
  t.comment(`sent ${n}: acked ${acked.size} (${ackedAfterSignal} after SIGTERM), refused ${refused.length}, unanswered ${unanswered}`);

  const r2 = await spawnRelay(t, { dbPath });
  const obs = await WsRpc.connect(t, r2.wsUrl);
  const stored = await allMessages(obs);
  const byId = new Map(stored.map((m) => [m.id as number, m.body as string]));
  const missing = [...acked].filter(([id, body]) => byId.get(id) !== body);
  t.same(missing, [], 'every acknowledged send is present after restart, with its body');
  const bodies = new Set(byId.values());
  t.same(
    refused.filter((r) => bodies.has(r.body)),
    [],
    'no refused send was written',
  );
  // Graceful means in-flight calls are answered before sockets close: a send cut off without an
  // answer was never dispatched, so it was not written (a client may resend it without duplicating).
  t.same(
    unansweredBodies.filter((b) => bodies.has(b)),
    [],
    'no send that went unanswered was written',
  );
  t.ok(
    stored.every((m, i) => i === 0 || m.id > stored[i - 1]!.id),
    'stored ids strictly increase',
  );
});
