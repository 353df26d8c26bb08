import Database from 'better-sqlite3';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import t, { type Test } from 'tap';
import type { NewMessage } from '../../broker/domain/store-port.js';
import { SQLITE_SCHEMA_VERSION } from '../../broker/store-postgres/sqlite-source.js';
import { PostgresStore } from '../../broker/store-postgres/store.js';
import { listMigrations } from '../../broker/store/migrate.js';
import { SqliteStore } from '../../broker/store/store.js';
import { spawnTs } from '../helpers/child.js';
import { startPostgres } from '../helpers/postgres.js';
import { storedAgent } from '../helpers/records.js';
import { spawnRelay } from '../helpers/relay-process.js';
import { connectAgent, untilDisconnected, WsRpc } from '../helpers/ws-client.js';

/*
 * `agent-relay migrate --to postgres://…`: a real relay on a SQLite file takes real traffic over
 * sockets, is stopped, the CLI (a real process, through the bin's entry) copies the file into a
 * fresh PostgreSQL database, and a relay on PostgreSQL serves the same agents, messages, read
 * states, tasks, leases and events; a client resumes with the cursor it held; new ids continue
 * after the old ones. And the refusals: a file a running relay holds, a database with relay data,
 * a file that is no relay database.
 */

const server = await startPostgres(t);
const PASSWORD = 's3cret-never-printed';
// Tasks with a callback URL need the relay's signing secret.
const RELAY_ENV = { AGENT_RELAY_ALLOW_PRIVATE_CALLBACKS: 'true', AGENT_RELAY_CALLBACK_SECRET: `whsec_${Buffer.from('a test secret of 32 bytes, fixed').toString('base64')}` };

/** The target URL with a password in it (trust auth ignores it), so the tests see it is never printed. */
async function freshTarget(): Promise<string> {
  return (await server.freshDatabase()).replace('postgres@', `postgres:${PASSWORD}@`);
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `agent-relay migrate ARGS` as a user runs it: the bin's entry (bin/entries/agent-relay.ts) as a child process. */
async function migrateCli(t: Test, args: string[], env: Record<string, string> = {}): Promise<Run> {
  const child = spawnTs(t, 'bin/entries/agent-relay.ts', { args: ['migrate', ...args], env });
  const exit = await child.exited;
  const run = { code: exit.code, stdout: child.stdout(), stderr: child.stderr() };
  t.notMatch(run.stdout + run.stderr, PASSWORD, `agent-relay migrate ${args[0] ?? ''}… never prints the password`);
  return run;
}

// The copied tables read back in the SQLite form (0/1 flags, ' a b ' recipients, no generated column), ordered by key.
const TABLES: Record<string, string> = {
  agents: 'id',
  messages: 'id',
  delivery_marks: 'agent_id, message_id',
  delivery_spans: 'id',
  tasks: 'id',
  events: 'id',
  outbox: 'id',
  webhook_receipts: 'integration, delivery_id',
  leases: 'id',
};

function sqliteTables(path: string): Record<string, unknown[]> {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    const tables = Object.entries(TABLES).map(([table, order]) => [table, db.prepare(`SELECT * FROM ${table} ORDER BY ${order}`).all()]);
    const counters = [db.prepare('SELECT * FROM relay_meta ORDER BY key').all(), db.prepare('SELECT * FROM sqlite_sequence ORDER BY name').all(), db.pragma('user_version', { simple: true })];
    return Object.fromEntries([...tables, ['(counters)', counters]]);
  } finally {
    db.close();
  }
}

async function postgresTables(url: string): Promise<Record<string, unknown[]>> {
  const client = new pg.Client({
    connectionString: url,
    types: { getTypeParser: ((oid: number, f: 'text') => (oid === 20 ? Number : pg.types.getTypeParser(oid, f))) as typeof pg.types.getTypeParser },
  });
  await client.connect();
  try {
    const out: Record<string, unknown[]> = {};
    for (const [table, order] of Object.entries(TABLES)) {
      const rows = (await client.query(`SELECT * FROM ${table} ORDER BY ${order}`)).rows as Array<Record<string, unknown>>;
      out[table] = rows.map((row) => {
        const { search: _generated, ...rest } = row;
        for (const [k, v] of Object.entries(rest)) {
          if (typeof v === 'boolean') rest[k] = v ? 1 : 0;
          if (Array.isArray(v)) rest[k] = v.length > 0 ? ` ${v.join(' ')} ` : ' ';
        }
        return rest;
      });
    }
    return out;
  } finally {
    await client.end();
  }
}

async function head(url: string): Promise<Record<string, number>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const row = (await client.query('SELECT last_message, last_event, last_task, last_lease, lease_token, pruned_through FROM relay_head')).rows[0] as Record<string, string>;
    return Object.fromEntries(Object.entries(row).map(([k, v]) => [k, Number(v)]));
  } finally {
    await client.end();
  }
}

async function hasRelayTables(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(`SELECT to_regclass('public.messages') IS NOT NULL AS has`)).rows[0].has as boolean;
  } finally {
    await client.end();
  }
}

/** Everything a relay serves about its state, read over a socket as an observer. */
async function served(rpc: WsRpc) {
  const { agents } = await rpc.call('agent/list', { limit: 1000 });
  const { messages } = await rpc.call('message/list', { since: 0, limit: 1000 });
  const deliveries = [];
  for (const m of messages) deliveries.push((await rpc.call('message/get', { id: m.id })).deliveries);
  const { tasks } = await rpc.call('task/list', { limit: 1000 });
  const taskEvents = [];
  // Not the callbacks: the relay on PostgreSQL goes on retrying them (the outbox rows are compared as copied).
  for (const task of tasks) taskEvents.push((await rpc.call('task/get', { id: task.id })).events);
  const { leases } = await rpc.call('lease/list', { limit: 1000 });
  const { events } = await rpc.call('event/list', { since: 0, limit: 1000 });
  return { agents, messages, deliveries, tasks, taskEvents, leases, events };
}

t.test('the SQLite schema this migrate copies is the SQLite store’s newest', async (t) => {
  t.equal(listMigrations().at(-1)?.version, SQLITE_SCHEMA_VERSION, 'a new SQLite migration must be taught to broker/store-postgres/import-tables.ts and sqlite-source.ts');
});

t.test('a relay moved from SQLite to PostgreSQL serves the same state, and clients resume with their cursors', async (t) => {
  const home = t.testdir();
  const dbPath = join(home, 'relay.db');
  // Callbacks go to a closed loopback port: they fail and stay in the outbox, to be copied.
  const relay = await spawnRelay(t, { dbPath, env: RELAY_ENV });
  const ws = relay.wsUrl;
  const alice = await connectAgent(t, ws, { id: 'alice', tags: ['dev'], meta: { z: 1, a: { b: [1, 'two'] } } });
  const bob = await connectAgent(t, ws, { id: 'bob', tags: ['dev', 'ci'], capabilities: ['deploy'] });
  const carol = await connectAgent(t, ws, { id: 'carol', tags: ['ci'], channels: ['ops'] });
  const observer = await WsRpc.connect(t, ws);

  const m1 = (await alice.rpc.call('message/send', { to: 'bob', body: 'hello bob', meta: { k: 'v', a: 1 } })).message;
  const m2 = (await alice.rpc.call('message/send', { to: 'tag:ci', subject: 'build', body: 'ci please build' })).message;
  const m3 = (await bob.rpc.call('message/send', { to: 'broadcast', body: 'all hands' })).message;
  await carol.rpc.call('message/send', { to: 'alice', replyTo: m2.id, body: 'on it' });
  await observer.call('message/send', { from: 'ext:ci', to: 'cap:deploy', channel: 'ops', body: 'deploy now' });

  // Tasks: one claimed and done (with a callback URL: outbox rows), one in progress, one open and deduped.
  const built = (await observer.call('task/create', { from: 'ext:ci', title: 'build', target: 'tag:ci', callbackUrl: 'http://127.0.0.1:9/hook', meta: { run: 7 } })).task;
  const claim = await bob.rpc.call('task/claim', { id: built.id });
  await bob.rpc.call('task/update', { id: built.id, claimToken: claim.claimToken, status: 'in_progress', progress: 50, note: 'half' });
  await bob.rpc.call('task/update', { id: built.id, claimToken: claim.claimToken, status: 'done' });
  const review = (await alice.rpc.call('message/send', { to: 'carol', claimable: true, body: 'review the diff' })).task;
  const carolClaim = await carol.rpc.call('task/claim', { id: review.id });
  await carol.rpc.call('task/update', { id: review.id, claimToken: carolClaim.claimToken, status: 'in_progress', progress: 10 });
  await observer.call('task/create', { from: 'ext:ci', title: 'flaky', target: 'tag:dev', dedupeKey: 'flaky-1' });
  const deduped = await observer.call('task/create', { from: 'ext:ci', title: 'flaky', target: 'tag:dev', dedupeKey: 'flaky-1' });
  t.equal(deduped.created, false, 'the second create is deduped');

  // Leases: bob's in force (acquired, renewed), carol's released.
  const lease = await bob.rpc.call('lease/acquire', { resources: ['src/**', 'db:main'], ttlMs: 600_000, reason: 'migrating' });
  const renewed = await bob.rpc.call('lease/renew', { leaseId: lease.lease.id, token: lease.token });
  const docs = await carol.rpc.call('lease/acquire', { resources: ['docs/**'], mode: 'shared', ttlMs: 600_000 });
  await carol.rpc.call('lease/release', { leaseId: docs.lease.id, token: docs.token });

  // Carol's cursor: the last message pushed to her before she goes away.
  await carol.rpc.until(() => carol.rpc.messages().some((m) => m.id === m3.id), 5000, 'carol to get the broadcast');
  const cursor = Math.max(...carol.rpc.messages().map((m) => m.id as number));
  await carol.rpc.close();
  await untilDisconnected(t, ws, 'carol');
  const missed = [
    (await alice.rpc.call('message/send', { to: 'carol', body: 'missed 1' })).message.id,
    (await bob.rpc.call('message/send', { to: 'tag:ci', body: 'missed 2' })).message.id,
    (await alice.rpc.call('message/send', { to: 'broadcast', body: 'missed 3', channel: 'ops' })).message.id,
  ];
  await alice.rpc.call('message/send', { to: 'bob', body: 'not for carol' });

  // Read state: bob reads up to the broadcast, acks the first as injected; alice reads one id.
  await bob.rpc.call('message/ack', { id: m1.id, state: 'injected' });
  await bob.rpc.call('message/read', { upTo: m3.id });
  await alice.rpc.call('message/read', { ids: [m3.id] });

  // A migrate while the relay holds the file is refused, and PostgreSQL is not touched.
  const target = await freshTarget();
  const busy = await migrateCli(t, ['--to', target, '--db', dbPath]);
  t.equal(busy.code, 1, `a file a running relay holds is refused (stderr: ${busy.stderr})`);
  t.match(busy.stderr, /is in use: a running relay .*stop the relay/);
  t.equal(await hasRelayTables(target), false, 'the refused migrate created nothing in PostgreSQL');

  for (const a of [alice, bob]) await a.rpc.close();
  await untilDisconnected(t, ws, 'alice');
  await untilDisconnected(t, ws, 'bob');
  const before = await served(observer);
  await observer.close();
  t.equal(await relay.stop(), 0, 'the SQLite relay stops cleanly');

  t.ok(before.agents.length === 3 && before.messages.length >= 10 && before.tasks.length === 3 && before.leases.length === 1 && before.events.length > 10, 'the relay holds real traffic');
  const lastMessage = Math.max(...before.messages.map((m: { id: number }) => m.id));
  const expected = before.messages
    .filter((_m: unknown, i: number) => before.deliveries[i].some((d: { agentId: string }) => d.agentId === 'carol'))
    .map((m: { id: number }) => m.id)
    .filter((id: number) => id > cursor);
  t.same(expected, missed, 'after her cursor carol has exactly the three messages sent while she was away');

  // The copy, from the default file ($AGENT_RELAY_HOME/relay.db).
  const sqliteRows = sqliteTables(dbPath);
  const copied = await migrateCli(t, ['--to', target], { AGENT_RELAY_HOME: home });
  t.equal(copied.code, 0, `migrate exits 0 (stderr: ${copied.stderr})`);
  t.same(sqliteTables(dbPath), sqliteRows, "the SQLite file's rows, counters and schema version are as they were");
  t.match(copied.stdout, new RegExp(`message ids continue after ${lastMessage}\\b`), 'the summary names the message id the cursor continues from');
  t.match(copied.stdout, /messages\s+\d+/);
  t.match(copied.stdout, /rows\/s/);
  t.match(copied.stdout, /postgres:\/\/postgres:\*\*\*@127\.0\.0\.1/, 'the target is named without its password');
  t.comment(copied.stdout.trim());

  const postgresRows = await postgresTables(target);
  for (const table of Object.keys(TABLES)) t.same(postgresRows[table], sqliteRows[table], `${table}: every row and column copied (${sqliteRows[table]!.length} rows)`);
  t.ok(sqliteRows.outbox!.length > 0 && sqliteRows.delivery_spans!.length > 0 && sqliteRows.delivery_marks!.length > 0, 'outbox, spans and marks had rows to copy');
  const h = await head(target);
  t.equal(h.last_message, lastMessage, 'relay_head.last_message is the last message id');
  t.equal(h.last_task, Math.max(...before.tasks.map((x: { id: number }) => x.id)));
  t.equal(h.last_event, Math.max(...before.events.map((x: { id: number }) => x.id)));
  t.equal(h.lease_token, Math.max(renewed.token, docs.token), 'the lease token counter is the last token handed out');

  // The relay on PostgreSQL serves what the relay on SQLite served.
  const moved = await spawnRelay(t, { dbPath: join(home, 'unused.db'), env: { ...RELAY_ENV, AGENT_RELAY_STORE: target } });
  const observer2 = await WsRpc.connect(t, moved.wsUrl);
  const after = await served(observer2);
  t.same(after, before, 'agents, messages, read states, tasks, task events, leases and events are served as before');

  // Carol resumes with her old cursor: exactly the messages after it, in order.
  const back = await WsRpc.connect(t, moved.wsUrl);
  const resumed = await back.call('agent/register', { id: 'carol', agentToken: carol.token, since: cursor });
  t.equal(resumed.created, false, 'carol is the same agent (her token still works)');
  await back.until(() => back.messages().length >= missed.length, 5000, 'carol to get what she missed');
  const inbox = await back.call('message/list', { since: cursor, limit: 1000 });
  t.same(
    back.messages().map((m) => m.id),
    missed,
    'the replay after her cursor is exactly what she missed',
  );
  t.same(
    inbox.messages.map((m: { id: number }) => m.id),
    missed,
    'and so is her inbox listed since the cursor',
  );

  // New ids continue after the old ones.
  const alice2 = await WsRpc.connect(t, moved.wsUrl);
  await alice2.call('agent/register', { id: 'alice', agentToken: alice.token });
  const next = (await alice2.call('message/send', { to: 'carol', body: 'after the move' })).message;
  t.equal(next.id, lastMessage + 1, 'a new message gets the next id after the old maximum');
  await back.until(() => back.messages().some((m) => m.id === next.id), 5000, 'carol to get the new message live');
  const nextTask = (await alice2.call('task/create', { title: 'after', target: 'carol' })).task;
  t.equal(nextTask.id, h.last_task + 1, 'a new task gets the next task id');
  const bob2 = await WsRpc.connect(t, moved.wsUrl);
  await bob2.call('agent/register', { id: 'bob', agentToken: bob.token });
  const renewedAgain = await bob2.call('lease/renew', { leaseId: lease.lease.id, token: renewed.token });
  t.equal(renewedAgain.token, h.lease_token + 1, 'bob renews his lease with the token he held; the new token is above every old one');

  // A second migrate: refused while a relay serves the database, and refused once it holds data.
  const served2 = await migrateCli(t, ['--to', target, '--db', dbPath]);
  t.equal(served2.code, 1);
  t.match(served2.stderr, /another relay node is serving this database/);
  for (const c of [back, alice2, bob2, observer2]) await c.close();
  t.equal(await moved.stop(), 0);
  const held = await postgresTables(target);
  const again = await migrateCli(t, ['--to', target, '--db', dbPath]);
  t.equal(again.code, 1, 'a second migrate into the now non-empty database is refused');
  t.match(again.stderr, /already holds relay data \(3 agents, \d+ messages, 4 tasks, \d+ events, 2 leases\): migrate only into an empty database/);
  t.same(await postgresTables(target), held, 'and wrote nothing');
});

t.test('a larger file: many batches, pruned ids stay used, new ids continue after the highest ever handed out', async (t) => {
  const dbPath = join(t.testdir(), 'relay.db');
  const store = await SqliteStore.open({ path: dbPath, synchronous: 'NORMAL', busyTimeoutMs: 1000 });
  const at = 1_700_000_000_000;
  const msg = (i: number, createdAt: number): NewMessage => ({
    from: 'alice',
    to: 'tag:all',
    channel: null,
    subject: `s${i}`,
    body: `body ${i} ${'x'.repeat(i % 200)}`,
    replyTo: null,
    threadId: null,
    claimable: false,
    taskId: null,
    createdAt,
    meta: { i },
  });
  const { inboxFloor: _a, ...alice } = storedAgent('alice', { registeredAt: at, lastSeenAt: at });
  const { inboxFloor: _b, ...bob } = storedAgent('bob', { registeredAt: at, lastSeenAt: at });
  await store.apply([
    { op: 'agent.insert', at, agent: alice, maxAgents: 10, events: [] },
    { op: 'agent.insert', at, agent: bob, maxAgents: 10, events: [] },
  ]);
  const COUNT = 20_000;
  for (let i = 0; i < COUNT; i += 500) {
    const ops = [];
    // The last 100 messages are the oldest: pruned below, so the highest id ever handed out is no longer in the table.
    for (let j = i; j < i + 500; j++) ops.push({ op: 'message.send' as const, at, message: msg(j, j >= COUNT - 100 ? at - 10_000 : at + j), recipients: ['alice', 'bob'], task: null });
    await store.apply(ops);
  }
  await store.apply([{ op: 'prune', at: at + COUNT, cutoff: at - 1, offlineCutoff: 0 }]);
  await store.apply([{ op: 'delivery.read', at: at + COUNT, agentId: 'bob', ids: null, upTo: 15_000 }]);
  await store.close();
  const sqliteRows = sqliteTables(dbPath);
  t.equal(sqliteRows.messages!.length, COUNT - 100, 'the 100 oldest (and newest) messages were pruned');

  const target = await freshTarget();
  const run = await migrateCli(t, ['--to', target, '--db', dbPath]);
  t.equal(run.code, 0, `migrate exits 0 (stderr: ${run.stderr})`);
  t.match(run.stdout, new RegExp(`message ids continue after ${COUNT}\\b`), 'the cursor continues after the highest id ever handed out, pruned or not');
  const seconds = Number(/in ([\d.]+) s/.exec(run.stdout)?.[1]);
  const total = Number(/total\s+(\d+) rows/.exec(run.stdout)?.[1]);
  t.comment(`figure: migrate rows=${total} seconds=${seconds} rows_per_s=${Math.round(total / seconds)}`);
  const postgresRows = await postgresTables(target);
  for (const table of Object.keys(TABLES)) t.same(postgresRows[table], sqliteRows[table], `${table}: ${sqliteRows[table]!.length} rows copied as they were`);
  const h = await head(target);
  t.ok(h.pruned_through > 0, `pruned_through is copied (${h.pruned_through})`);

  const pgStore = await PostgresStore.open({ url: target });
  t.teardown(() => pgStore.close());
  const [sent] = await pgStore.apply([{ op: 'message.send', at: at + COUNT, message: msg(COUNT, at + COUNT), recipients: ['bob'], task: null }]);
  t.equal((sent as { ok: true; value: { message: { id: number } } }).value.message.id, COUNT + 1, 'the next message id is past the pruned ones, never reused');
  t.equal(await pgStore.deliveries.readThrough('bob'), 15_000, "bob's read-through survives the move");
});

t.test('refusals: usage, no such file, not a relay database', async (t) => {
  const dir = t.testdir();
  const target = await freshTarget();
  const notSqlite = join(dir, 'notes.txt');
  writeFileSync(notSqlite, 'hello, I am not a database\n'.repeat(100));
  const emptySqlite = join(dir, 'empty.db');
  new Database(emptySqlite).exec('CREATE TABLE x (y)');
  const [help, noTo, badTo, missing, text, empty] = await Promise.all([
    migrateCli(t, ['--help']),
    migrateCli(t, ['--db', emptySqlite]),
    migrateCli(t, ['--to', 'mysql://x@127.0.0.1/db']),
    migrateCli(t, ['--to', target, '--db', join(dir, 'nope.db')]),
    migrateCli(t, ['--to', target, '--db', notSqlite]),
    migrateCli(t, ['--to', target, '--db', emptySqlite]),
  ]);
  t.equal(help.code, 0);
  t.match(help.stdout, /agent-relay migrate --to postgres:\/\/.*--db PATH/);
  t.match(help.stdout, /Stop the relay first/);
  t.equal(noTo.code, 2, 'no --to is a usage error');
  t.match(noTo.stderr, /--to postgres:\/\/… is required/);
  t.equal(badTo.code, 2, 'a URL that is not PostgreSQL is a usage error');
  t.match(badTo.stderr, /--to: expected a PostgreSQL URL/);
  t.equal(missing.code, 1);
  t.match(missing.stderr, /nope\.db does not exist: pass --db PATH/);
  t.equal(text.code, 1);
  t.match(text.stderr, /notes\.txt: it is not an SQLite database/);
  t.equal(empty.code, 1);
  t.match(empty.stderr, /empty\.db is not a relay database/);
  t.equal(await hasRelayTables(target), false, 'none of them touched PostgreSQL');
});
