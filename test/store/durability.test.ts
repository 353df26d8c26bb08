import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { listMigrations } from '../../broker/store/migrate.js';
import { SqliteStore } from '../../broker/store/store.js';
import type { StoredAgent } from '../../broker/domain/store-port.js';
import { RelayStartError, spawnRelay } from '../helpers/relay-process.js';
import { storedAgent } from '../helpers/records.js';
import { startRelay } from '../helpers/relay.js';
import { connectAgent, RpcError } from '../helpers/ws-client.js';

const SYNC_VALUE = { FULL: 2, NORMAL: 1 } as const;
const LATEST = listMigrations().at(-1)!.version;

function open(path: string, synchronous: 'FULL' | 'NORMAL' = 'FULL'): Promise<SqliteStore> {
  return SqliteStore.open({ path, synchronous, busyTimeoutMs: 1000 });
}

/** Writes go through the store's writer thread: the read connection is read-only. */
async function save(store: SqliteStore, a: StoredAgent): Promise<void> {
  const [o] = await store.apply([{ op: 'agent.insert', at: 1, agent: a, maxAgents: 100, events: [] }]);
  if (!o?.ok) throw new Error(`agent.insert refused: ${o?.ok === false ? o.refused : 'no outcome'}`);
}

function agent(id: string): StoredAgent {
  return storedAgent(id, { tokenHash: '0'.repeat(64) });
}

t.test('PRAGMA synchronous is the configured value on a fresh and on a reopened WAL database', async (t) => {
  for (const sync of ['FULL', 'NORMAL'] as const) {
    const path = join(t.testdir(), `${sync}.db`);
    t.notOk(existsSync(path), 'the database is fresh');
    const first = await open(path, sync);
    t.teardown(() => first.close());
    t.equal(await first.pragma('journal_mode'), 'wal', `${sync}: journal_mode is wal`);
    t.equal(await first.pragma('synchronous'), SYNC_VALUE[sync], `${sync}: fresh database has synchronous=${SYNC_VALUE[sync]}`);
    await save(first, agent('a1'));
    t.ok(existsSync(`${path}-wal`), `${sync}: the database is in WAL mode on disk`);

    // A second connection while the first holds the WAL open: the file is already WAL.
    const second = await open(path, sync);
    t.teardown(() => second.close());
    t.equal(await second.pragma('journal_mode'), 'wal', `${sync}: a second open is wal`);
    t.equal(await second.pragma('synchronous'), SYNC_VALUE[sync], `${sync}: a second open of a WAL database keeps synchronous=${SYNC_VALUE[sync]}`);
    t.equal((await second.agents.get('a1'))?.id, 'a1', `${sync}: the second connection reads the first one's commit`);
    await second.close();
    await first.close();

    // Reopen after both closed.
    const reopened = await open(path, sync);
    t.teardown(() => reopened.close());
    t.equal(await reopened.pragma('journal_mode'), 'wal', `${sync}: reopened database is wal`);
    t.equal(await reopened.pragma('synchronous'), SYNC_VALUE[sync], `${sync}: reopened database has synchronous=${SYNC_VALUE[sync]}`);
    await reopened.close();
  }

  // The configured value wins over whatever the file was last opened with.
  const path = join(t.testdir(), 'switch.db');
  const normal = await open(path, 'NORMAL');
  await normal.close();
  const full = await open(path, 'FULL');
  t.teardown(() => full.close());
  t.equal(await full.pragma('synchronous'), 2, 'a database opened NORMAL and reopened FULL is FULL');
  await full.close();
  const normalAgain = await open(path, 'NORMAL');
  t.teardown(() => normalAgain.close());
  t.equal(await normalAgain.pragma('synchronous'), 1, 'and reopened NORMAL is NORMAL');
  await normalAgain.close();
});

t.test('the relay opens its database with the configured sync mode', async (t) => {
  const full = await startRelay(t, {});
  t.equal(full.config.sync, 'FULL', 'FULL is the default');
  t.equal(await full.store.pragma('synchronous'), 2, 'default relay: synchronous=FULL');
  t.equal(await full.store.pragma('journal_mode'), 'wal', 'default relay: wal');
  const normal = await startRelay(t, { sync: 'NORMAL' });
  t.equal(await normal.store.pragma('synchronous'), 1, 'AGENT_RELAY_SYNC=NORMAL relay: synchronous=NORMAL');
  t.equal(await normal.store.pragma('journal_mode'), 'wal', 'NORMAL relay: wal');
  // Restart the NORMAL relay on its (now WAL) database: the mode is set again on reopen.
  const dir = t.testdir();
  const first = await startRelay(t, { sync: 'NORMAL' }, { dir });
  await first.close();
  const second = await startRelay(t, { sync: 'NORMAL' }, { dir });
  t.equal(await second.store.pragma('synchronous'), 1, 'restarted NORMAL relay: synchronous=NORMAL');
});

t.test('migrations set user_version to the latest; a newer database is refused', async (t) => {
  t.ok(LATEST >= 1, `there is at least one migration (latest ${LATEST})`);
  const path = join(t.testdir(), 'relay.db');
  const store = await open(path);
  t.teardown(() => store.close());
  t.equal(await store.pragma('user_version'), LATEST, 'a fresh database is migrated to the latest version');
  await save(store, agent('keeper'));
  await store.close();

  const raw = new Database(path);
  t.teardown(() => raw.close());
  const tables = raw.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`).pluck().all() as string[];
  for (const table of ['agents', 'delivery_marks', 'delivery_spans', 'events', 'messages', 'relay_meta', 'tasks']) t.ok(tables.includes(table), `table ${table} exists`);
  raw.close();

  const again = await open(path);
  t.teardown(() => again.close());
  t.equal(await again.pragma('user_version'), LATEST, 'reopening does not change user_version');
  t.equal((await again.agents.get('keeper'))?.id, 'keeper', 'reopening (no migration re-run) keeps the data');
  await again.close();

  // A database written by a newer relay.
  const bump = new Database(path);
  bump.pragma(`user_version = ${LATEST + 1}`);
  bump.close();
  await t.rejects(
    open(path),
    { message: new RegExp(`schema version ${LATEST + 1} is newer than this relay \\(${LATEST}\\): upgrade the relay`) },
    'SqliteStore.open refuses a database with a higher user_version, with a clear message',
  );
  const check = new Database(path, { readonly: true });
  t.teardown(() => check.close());
  t.equal(await check.pragma('user_version', { simple: true }), LATEST + 1, 'the refused database is left at its version');
  t.equal(check.prepare(`SELECT count(*) FROM agents`).pluck().get() as number, 1, 'and its data untouched');
  check.close();

  // The relay process refuses to start on it, names the reason, and exits non-zero.
  const err = await spawnRelay(t, { dbPath: path }).then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(err instanceof RelayStartError, 'the relay process does not start');
  if (err instanceof RelayStartError) {
    t.not(err.exit.code, 0, `it exits non-zero (${err.exit.code})`);
    t.match(err.stderr, /newer than this relay/, 'stderr says the database is newer than the relay');
    t.notMatch(err.stderr, /\n\s+at /, 'no stack trace');
  }
});

t.test('integrity_check is ok after SIGKILL of a relay mid-load, and acknowledged writes survive', async (t) => {
  const dbPath = join(t.testdir(), 'relay.db');
  const relay = await spawnRelay(t, { dbPath });
  const a = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  await connectAgent(t, relay.wsUrl, { id: 'bob', tags: ['ops'] });

  const acked = new Map<number, string>();
  const ackedTasks: number[] = [];
  let killed: Promise<unknown> | null = null;
  let failed = 0;
  const calls: Array<Promise<void>> = [];
  const total = 600;
  for (let n = 0; n < total && a.rpc.ws.readyState === a.rpc.ws.OPEN; n++) {
    const body = `load-${n}`;
    const claimable = n % 10 === 0;
    calls.push(
      a.rpc.call('message/send', { to: n % 3 === 0 ? 'tag:ops' : 'bob', body, claimable }).then(
        (r) => {
          acked.set(r.message.id, body);
          if (r.task) ackedTasks.push(r.task.id);
          if (!killed && acked.size >= 200) killed = relay.kill9();
        },
        (err: unknown) => {
          if (err instanceof RpcError) throw err;
          failed++;
        },
      ),
    );
    if (n % 25 === 24) await new Promise((r) => setTimeout(r, 1));
  }
  await Promise.all(calls);
  t.ok(killed, 'the relay was killed while sends were flowing');
  const exit = await relay.exited;
  t.equal(exit.signal, 'SIGKILL', 'killed with SIGKILL');
  t.ok(acked.size >= 200, `sends were acknowledged before the kill (${acked.size}, ${failed} cut off)`);
  t.ok(existsSync(`${dbPath}-wal`), 'the WAL was left behind');

  const store = await open(dbPath);
  t.teardown(() => store.close());
  t.equal(store.integrityCheck(), 'ok', 'PRAGMA integrity_check is ok after reopening');
  t.equal(await store.pragma('user_version'), LATEST, 'user_version is intact');
  const lost: number[] = [];
  const undelivered: number[] = [];
  for (const [id, body] of acked) {
    if ((await store.messages.get(id))?.body !== body) lost.push(id);
    if ((await store.deliveries.get('bob', id)) === undefined) undelivered.push(id);
  }
  t.same(lost, [], 'every acknowledged message is in the database');
  t.same(undelivered, [], 'with its delivery to bob');
  const taskStates = await Promise.all(ackedTasks.map(async (id) => (await store.tasks.get(id))?.status));
  t.ok(ackedTasks.length > 0 && taskStates.every((s) => s === 'open'), `acknowledged claimable sends kept their tasks (${ackedTasks.length})`);
  const max = await store.messages.maxId();
  await store.close();

  // And a relay starts on it and carries on after the highest id.
  const again = await spawnRelay(t, { dbPath });
  const a2 = await connectAgent(t, again.wsUrl, { id: 'alice', agentToken: a.token });
  const next = await a2.rpc.call('message/send', { to: 'bob', body: 'after' });
  t.ok(next.message.id > max, 'ids continue above everything stored');
  t.equal(await again.stop('SIGTERM'), 0, 'and it stops cleanly');
});
