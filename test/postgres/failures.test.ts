import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import t, { type Test } from 'tap';
import type { NewMessage, WriteOp } from '../../broker/domain/store-port.js';
import { PostgresStore } from '../../broker/store-postgres/store.js';
import { ERRORS, RelayError } from '../../protocol/index.js';
import { startPostgres } from '../helpers/postgres.js';
import { newMessage, sendOp } from '../helpers/records.js';
import { waitFor } from '../helpers/wait.js';

/*
 * Failures of the database, handled: a restart under load, a reply lost after (or before) the
 * commit, a transaction frozen while holding the head of the log, an op that throws.
 */

const server = await startPostgres(t);

const message = (body: string, over: Partial<NewMessage> = {}): NewMessage => newMessage({ body, ...over });
const send = (body: string): WriteOp => sendOp({ body });

async function bodies(url: string): Promise<string[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<{ body: string }>('SELECT body FROM messages ORDER BY id')).rows.map((r) => r.body);
  } finally {
    await c.end();
  }
}

const isStorageBusy = (e: unknown) => e instanceof RelayError && e.code === ERRORS.storageBusy.code;

t.test('a PostgreSQL restart under load: -32008 while it is down, writes again after, the same store; acknowledged = stored', async (t) => {
  const url = await server.freshDatabase();
  const store = await PostgresStore.open({ url, connectTimeoutMs: 1000 });
  t.teardown(() => store.close());
  const acked = new Set<string>();
  const refused = new Set<string>();
  const messages: string[] = [];
  let n = 0;
  let stopAt = Number.POSITIVE_INFINITY;
  let firstOkAfterStart: number | null = null;
  let startedAt = Number.POSITIVE_INFINITY;
  const pending: Promise<void>[] = [];
  // A batch every 5 ms, not waiting for the one before (as requests arrive at a relay).
  const load = (async () => {
    while (Date.now() < stopAt) {
      const body = `m${n++}`;
      pending.push(
        store.apply([send(body)]).then(
          () => {
            acked.add(body);
            if (Date.now() >= startedAt) firstOkAfterStart ??= Date.now();
          },
          (err: unknown) => {
            if (!isStorageBusy(err)) throw err;
            refused.add(body);
            messages.push((err as Error).message);
          },
        ),
      );
      await sleep(5);
    }
  })();
  await waitFor(() => acked.size >= 50, '50 writes before the restart');
  const stoppedAt = Date.now();
  await server.stop();
  await sleep(1000);
  await server.start();
  startedAt = Date.now();
  await waitFor(() => firstOkAfterStart !== null, 'a write after the restart', 20_000);
  const okAfter = acked.size;
  await waitFor(() => acked.size >= okAfter + 50, '50 more writes after the restart');
  stopAt = 0;
  await load;
  await Promise.all(pending);
  t.ok(refused.size > 0, `${refused.size} batches refused with -32008 while it was down (${startedAt - stoppedAt} ms from stop to accepting again)`);
  t.ok(
    messages.every((m) => /storage busy: .*(cannot be reached|connection|broke|shutting down|terminat)/i.test(m)),
    `each naming what happened, e.g. "${messages[0]}"`,
  );
  t.ok(firstOkAfterStart! - startedAt < 5000, `the first write after it was back: ${firstOkAfterStart! - startedAt} ms after it accepted connections, no reopen`);
  const stored = await bodies(url);
  t.same(
    [...acked].filter((b) => !stored.includes(b)),
    [],
    `all ${acked.size} acknowledged are stored`,
  );
  t.same(
    [...refused].filter((b) => stored.includes(b)),
    [],
    `none of the ${refused.size} refused is`,
  );
  t.equal(stored.length, acked.size, 'and nothing else');
  t.equal(await store.health.isWritable(), true, 'writable again');
});

/**
 * A proxy in front of PostgreSQL that can hold what flows one way on the connections open now,
 * and cut the clients' side while keeping the server's: a reply (or a request) lost on the way.
 */
async function gate(t: Test, targetPort: number) {
  type Pair = { client: net.Socket; upstream: net.Socket; holdUp: Buffer[] | null; holdDown: Buffer[] | null; downAfterCut: Buffer[] };
  const pairs: Pair[] = [];
  const proxy = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    const p: Pair = { client, upstream, holdUp: null, holdDown: null, downAfterCut: [] };
    pairs.push(p);
    client.on('data', (b) => (p.holdUp ? p.holdUp.push(b) : upstream.write(b)));
    upstream.on('data', (b) => {
      if (client.destroyed) p.downAfterCut.push(b);
      else if (p.holdDown) p.holdDown.push(b);
      else client.write(b);
    });
    client.on('error', () => {});
    upstream.on('error', () => {});
    client.on('close', () => {
      if (!p.holdUp && !p.holdDown) upstream.destroy();
    });
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const p of pairs) p.upstream.destroy();
    return new Promise<void>((resolve) => proxy.close(() => resolve()));
  });
  const open = () => pairs.filter((p) => !p.client.destroyed);
  return {
    port: (proxy.address() as net.AddressInfo).port,
    holdRequests: () => open().map((p) => ((p.holdUp = []), p)),
    holdReplies: () => open().map((p) => ((p.holdDown = []), p)),
    /** Drop the clients' side of these connections (the server's side stays open). */
    cut: (held: Pair[]) => {
      for (const p of held) p.client.destroy();
    },
    /** Send what was held to the server, now that its client is gone. */
    flush: (held: Pair[]) => {
      for (const p of held) for (const b of p.holdUp ?? []) p.upstream.write(b);
    },
    repliedAfterCut: (held: Pair[]) => Buffer.concat(held.flatMap((p) => p.downAfterCut)).toString('latin1'),
  };
}

t.test('a reply lost after the commit: the batch is looked up by its id and answered as applied', async (t) => {
  const url = await server.freshDatabase();
  const g = await gate(t, server.port);
  const store = await PostgresStore.open({ url: url.replace(`:${server.port}/`, `:${g.port}/`) });
  t.teardown(() => store.close());
  // Two connections are open now: the writer's (open() migrated on it) and the reader the change
  // feed's starting point was read on. Holding both loses the reply; the lookup connects anew.
  const held = g.holdReplies();
  t.equal(held.length, 2, "the writer's connection and one reader's");
  const applying = store.apply([send('committed, reply lost')]);
  await waitFor(async () => (await bodies(url)).includes('committed, reply lost'), 'the commit, seen from another connection');
  g.cut(held);
  const [o] = await applying;
  t.equal(o!.ok, true, 'answered as applied, after the lookup');
  t.match(o, { ok: true, value: { message: { id: 1, body: 'committed, reply lost', threadId: 1 } } }, 'with its outcome as committed');
  const [next] = await store.apply([send('next')]);
  t.match(next, { ok: true, value: { message: { id: 2 } } }, 'the store writes on, on a new connection');
  t.equal(store.health.lastFailure, null, 'no failure left noted: both batches committed');
  t.same(await bodies(url), ['committed, reply lost', 'next'], 'each stored once');
});

t.test('a request lost before it ran: refused with -32008, and it can never commit later', async (t) => {
  const url = await server.freshDatabase();
  const g = await gate(t, server.port);
  const store = await PostgresStore.open({ url: url.replace(`:${server.port}/`, `:${g.port}/`) });
  t.teardown(() => store.close());
  const held = g.holdRequests();
  const applying = store.apply([send('never')]).then(
    () => null,
    (e: unknown) => e,
  );
  await sleep(100);
  g.cut(held);
  const err = await applying;
  t.ok(isStorageBusy(err), `-32008: ${(err as Error).message}`);
  t.match((err as Error).message, /did not commit: nothing was written/);
  // Now the held call reaches the server after all, on the old server-side connection.
  g.flush(held);
  await waitFor(() => /relay_batches_pkey/.test(g.repliedAfterCut(held)), 'the server to answer the late call', 10_000);
  t.match(g.repliedAfterCut(held), /duplicate key value violates unique constraint "relay_batches_pkey"/, 'the late call failed on the fence the lookup wrote');
  t.same(await bodies(url), [], 'nothing of it is stored');
  const [o] = await store.apply([send('after')]);
  t.match(o, { ok: true, value: { message: { id: 1 } } }, 'and its id was not used up: no hole');
});

t.test('a transaction frozen while it holds the head of the log is cut by idle_in_transaction_session_timeout', async (t) => {
  const url = await server.freshDatabase();
  const store = await PostgresStore.open({ url, idleInTransactionTimeoutMs: 800, lockTimeoutMs: 5000 });
  t.teardown(() => store.close());
  // Another node's session, with the settings every store connection has, freezes mid-batch.
  const frozen = new pg.Client({ connectionString: url, idle_in_transaction_session_timeout: 800 });
  frozen.on('error', () => {});
  await frozen.connect();
  await frozen.query('BEGIN');
  await frozen.query('SELECT 1 FROM relay_head FOR UPDATE');
  const started = Date.now();
  const [o] = await store.apply([send('waited')]);
  const waited = Date.now() - started;
  t.equal(o!.ok, true, 'the waiting batch commits once the frozen session is ended');
  t.ok(waited >= 600 && waited < 3000, `after ${waited} ms (the frozen session's timeout: 800 ms)`);
  await frozen.end().catch(() => {});
});

t.test('a lock held past lock_timeout: the batch is refused with -32008 saying so, and writes nothing', async (t) => {
  const url = await server.freshDatabase();
  const store = await PostgresStore.open({ url, lockTimeoutMs: 300 });
  t.teardown(() => store.close());
  const holder = new pg.Client({ connectionString: url });
  await holder.connect();
  t.teardown(() => holder.end());
  await holder.query('BEGIN');
  await holder.query('SELECT 1 FROM relay_head FOR UPDATE');
  const started = Date.now();
  const err = await store.apply([send('blocked')]).then(
    () => null,
    (e: unknown) => e,
  );
  const ms = Date.now() - started;
  t.ok(isStorageBusy(err), `-32008 after ${ms} ms`);
  t.match((err as Error).message, /lock_timeout/, (err as Error).message);
  t.ok(ms >= 250 && ms < 2000, 'bounded by lock_timeout (300 ms)');
  await holder.query('ROLLBACK');
  t.same(await bodies(url), [], 'nothing written');
  t.match((await store.apply([send('after')]))[0], { ok: true, value: { message: { id: 1 } } }, 'and the next batch goes through, id 1');
});

t.test('an op that throws fails alone; the batch around it commits with gapless ids', async (t) => {
  const url = await server.freshDatabase();
  const store = await PostgresStore.open({ url });
  t.teardown(() => store.close());
  // A NOT NULL column given null: a constraint no plan should miss, so relay_apply raises.
  const broken = { op: 'message.send', at: 1, message: { ...message('x'), body: null }, recipients: [], task: null } as unknown as WriteOp;
  const [a, b, c] = await store.apply([send('one'), broken, send('three')]);
  t.match(a, { ok: true, value: { message: { id: 1 } } });
  t.match(b, { ok: false, refused: 'error', changes: [] });
  const error = (b as { error: Error & { code?: string } }).error;
  t.ok(error instanceof Error, 'an Error to log');
  t.equal(error.code, '23502', 'with its SQLSTATE (not_null_violation)');
  t.match(c, { ok: true, value: { message: { id: 2 } } }, 'the next op takes the next id: the failed one left no hole');
  t.same(await bodies(url), ['one', 'three']);
  t.equal(store.health.lastFailure, null, 'a refused op is no storage fault');
});
