import pg from 'pg';
import t from 'tap';
import type { Change, WriteOp } from '../../broker/domain/store-port.js';
import { PostgresStore } from '../../broker/store-postgres/store.js';
import { startPostgres } from '../helpers/postgres.js';
import { sendOp, storedAgent, taskCreateOp } from '../helpers/records.js';
import { waitFor } from '../helpers/wait.js';

/*
 * The change feed (broker/store-postgres/feed.ts): every node publishes every node's batches, in
 * commit order, and answers its own only after publishing them; a cut LISTEN connection is caught
 * up by itself; a node whose unread rows were pruned is told to resynchronise.
 */

const server = await startPostgres(t);

const send = (body: string) => sendOp({ body });

/** What one node's feed published: the message ids and every change, in order. */
function recorder() {
  const messageIds: number[] = [];
  const changes: Change[] = [];
  const resyncs: string[] = [];
  return {
    messageIds,
    changes,
    resyncs,
    publish: (batch: readonly Change[]) => {
      for (const c of batch) {
        changes.push(c);
        if (c.kind === 'message') messageIds.push(c.message.id);
      }
    },
    resync: (why: string) => resyncs.push(why),
  };
}

async function sql<R extends pg.QueryResultRow>(url: string, text: string): Promise<R[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<R>(text)).rows;
  } finally {
    await client.end();
  }
}

const feedConnections = async () =>
  Number((await server.admin<{ n: string }>(`SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'agent-relay feed' AND query = 'LISTEN relay_feed'`)).rows[0]!.n);

t.test('three nodes: each publishes every batch of every node, in commit order, and answers its own after publishing it', async (t) => {
  const NODES = 3;
  const BATCHES = 60;
  const PER_BATCH = 5;
  const url = await server.freshDatabase();
  const nodes = await Promise.all(Array.from({ length: NODES }, () => PostgresStore.open({ url })));
  t.teardown(async () => {
    for (const s of nodes) await s.close();
  });
  const seen = nodes.map(() => recorder());
  for (const [i, s] of nodes.entries()) s.feed.follow(seen[i]!.publish, seen[i]!.resync);

  let answeredBeforePublished = 0;
  let acked = 0;
  const write = async (i: number) => {
    const own = new Set(seen[i]!.messageIds);
    for (let b = 0; b < BATCHES; b++) {
      const ops = Array.from({ length: PER_BATCH }, (_, m) => send(`n${i} b${b} m${m}`));
      if (b % 6 === 0) ops.push(taskCreateOp(`n${i} t${b}`));
      const outcomes = await nodes[i]!.apply(ops);
      for (const id of seen[i]!.messageIds) own.add(id);
      for (const o of outcomes) {
        for (const c of o.changes) {
          if (c.kind !== 'message') continue;
          acked++;
          if (!own.has(c.message.id)) answeredBeforePublished++;
        }
      }
    }
  };
  const started = Date.now();
  await Promise.all(nodes.map((_, i) => write(i)));
  const ms = Date.now() - started;
  const total = acked;
  await waitFor(() => seen.every((r) => r.messageIds.length >= total), 'every node to publish every message');

  t.equal(total, NODES * BATCHES * PER_BATCH + NODES * (BATCHES / 6), `${total} messages acknowledged by ${NODES} nodes (${NODES * BATCHES} batches in ${ms} ms)`);
  t.equal(answeredBeforePublished, 0, 'no node answered a batch before its own feed had published it');
  for (const [i, r] of seen.entries()) {
    t.same(
      r.messageIds,
      Array.from({ length: total }, (_, k) => k + 1),
      `node ${i + 1} published message ids 1..${total}, each once, in order`,
    );
  }
  t.same(
    seen.map((r) => JSON.stringify(r.changes)),
    seen.map(() => JSON.stringify(seen[0]!.changes)),
    `all three published the same ${seen[0]!.changes.length} changes (messages, tasks, events) in the same order`,
  );
  t.same(
    seen.map((r) => r.resyncs),
    seen.map(() => []),
    'and none lost its place',
  );
});

t.test('a cut LISTEN connection: the feed catches up within its poll and listens again', async (t) => {
  const url = await server.freshDatabase();
  const [writer, follower] = await Promise.all([PostgresStore.open({ url }), PostgresStore.open({ url })]);
  t.teardown(async () => {
    await writer.close();
    await follower.close();
  });
  const seen = recorder();
  follower.feed.follow(seen.publish, seen.resync);
  await waitFor(async () => (await feedConnections()) === 1, "the follower's LISTEN connection");
  await server.admin(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'agent-relay feed'`);
  await waitFor(async () => (await feedConnections()) === 0, 'the LISTEN connection gone');

  const sentAt = Date.now();
  const [o] = await writer.apply([send('while the follower was not listening')]);
  t.equal(o!.ok, true, 'a write on the other node');
  await waitFor(() => seen.messageIds.length === 1, 'the follower to publish it', 5_000);
  t.pass(`the follower published it ${Date.now() - sentAt} ms after it was sent, with no notification (poll every 1,000 ms)`);
  // The writer's own feed listens now too: two LISTEN connections once the follower's is back.
  await waitFor(async () => (await feedConnections()) === 2, "the follower's LISTEN connection back", 5_000);

  const again = Date.now();
  await writer.apply([send('after it listened again')]);
  await waitFor(() => seen.messageIds.length === 2, 'the follower to publish the next one', 5_000);
  t.same(seen.messageIds, [1, 2], `and the next one, ${Date.now() - again} ms after it was sent`);
  t.same(seen.resyncs, [], 'without losing its place');
});

t.test('a node whose unread rows were pruned is told to resynchronise, then follows on', async (t) => {
  const url = await server.freshDatabase();
  const writer = await PostgresStore.open({ url });
  const behind = await PostgresStore.open({ url }); // its place: position 0
  t.teardown(async () => {
    await writer.close();
    await behind.close();
  });
  for (let i = 0; i < 3; i++) await writer.apply([send(`m${i}`)]);
  // What relay_forget_old does to rows older than 15 minutes, now: all but the newest.
  await sql(url, 'DELETE FROM relay_log WHERE position < (SELECT max(position) FROM relay_log)');

  const seen = recorder();
  behind.feed.follow(seen.publish, seen.resync);
  await waitFor(() => seen.messageIds.length === 1, 'the newest batch published');
  t.same(seen.messageIds, [3], 'it published what the log still had');
  t.equal(seen.resyncs.length, 1, 'and was told once that it lost its place');
  t.match(seen.resyncs[0], /from position 0 to 3: the rows between were pruned/, 'naming the positions');
  await writer.apply([send('m3')]);
  await waitFor(() => seen.messageIds.length === 2, 'the next batch published');
  t.same(seen.messageIds, [3, 4], 'then it follows on');
});

t.test('a batch that changed nothing published has no position, and is answered at once', async (t) => {
  const url = await server.freshDatabase();
  const store = await PostgresStore.open({ url });
  t.teardown(() => store.close());
  const [o] = await store.apply([{ op: 'agent.touch', at: 1, ids: ['nobody'] }]);
  t.equal(o!.ok, true, 'a last-seen touch of an agent that does not exist');
  t.same(await sql(url, 'SELECT position FROM relay_log'), [], 'logged nothing');
});

t.test("routedAt: an op routed from a copy of the agents older than the newest change of an agent's routing is refused as staleRoute; a heartbeat changes no routing", async (t) => {
  const url = await server.freshDatabase();
  const store = await PostgresStore.open({ url });
  t.teardown(() => store.close());
  const feed = store.feed!;
  const routed = (routedAt: number, body: string) => ({ ...sendOp({ to: 'tag:x', body }), routedAt }) as WriteOp;
  const { inboxFloor: _f, ...bob } = storedAgent('bob', { tags: ['x'] });
  const [inserted] = await store.apply([{ op: 'agent.insert', at: 1, agent: bob, maxAgents: 10, events: [] }]);
  t.equal(inserted!.ok, true, 'bob registered');
  const registeredAt = feed.through();

  t.match(
    (await store.apply([routed(registeredAt - 1, 'before')]))[0],
    { ok: false, refused: 'staleRoute', position: registeredAt },
    'routed before the registration was published: refused, naming its position',
  );
  t.match((await store.apply([routed(registeredAt, 'after')]))[0], { ok: true }, 'routed with it: applied');

  const expect = { tokenHash: bob.tokenHash, status: 'online' as const };
  await store.apply([{ op: 'agent.patch', at: 2, id: 'bob', expect, patch: { lastSeenAt: 2 }, events: [] }]);
  t.ok(feed.through() > registeredAt, 'the heartbeat was a batch of its own');
  t.match((await store.apply([routed(registeredAt, 'after the heartbeat')]))[0], { ok: true }, 'a heartbeat changed no routing: still applied');

  await store.apply([{ op: 'agent.patch', at: 3, id: 'bob', expect, patch: { tags: [] }, events: [] }]);
  const retaggedAt = feed.through();
  const batch = await store.apply([routed(retaggedAt, 'fresh'), routed(retaggedAt - 1, 'stale'), sendOp({ body: 'unrouted' })]);
  t.match(
    batch,
    [{ ok: true }, { ok: false, refused: 'staleRoute', position: retaggedAt }, { ok: true }],
    'after a tag change, in one batch of plain sends: the stale one refused, the others applied in order',
  );
  const bodies = (await sql<{ body: string }>(url, 'SELECT body FROM messages ORDER BY id')).map((r) => r.body);
  t.same(bodies, ['after', 'after the heartbeat', 'fresh', 'unrouted'], 'no refused send was written');
  const sentId = (o: (typeof batch)[number]) => (o.ok ? (o.value as { message: { id: number } }).message.id : null);
  t.equal(sentId(batch[2]!), sentId(batch[0]!)! + 1, 'and the refused one took no id: the ids go on without a hole');
});
