import Database from 'better-sqlite3';
import { join } from 'node:path';
import t from 'tap';
import type { WriteOp } from '../../broker/domain/store-port.js';
import { listMigrations } from '../../broker/store/migrate.js';
import { SqliteStore } from '../../broker/store/store.js';
import { ftsCheckPasses } from '../helpers/search-index.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The full-text index follows the commits a little behind (broker/store/search-indexer.ts): a send
 * is acknowledged without its words in the index, the writer indexes them a moment later, and a
 * search has it catch up first, so every acknowledged message is found. A delay of a minute below
 * leaves only the search's catch-up to index.
 */

const filter = { since: 0, channel: null, from: null, to: null, inbox: null, limit: 10 };
const terms = (text: string) => [{ text, prefix: false }];
const LATER = 60_000;

function sendOp(body: string, at = 1000): WriteOp {
  return {
    op: 'message.send',
    at,
    message: { from: 'alice', to: 'bob', channel: null, subject: null, body, replyTo: null, threadId: null, claimable: false, taskId: null, createdAt: at, meta: {} },
    recipients: ['bob'],
    task: null,
  };
}

async function send(store: SqliteStore, ...bodies: string[]): Promise<number[]> {
  const outcomes = await store.apply(bodies.map((b) => sendOp(b)));
  return outcomes.map((o) => (o as { ok: true; value: { message: { id: number } } }).value.message.id);
}

/**
 * What the file says: the index's mark, how many messages its postings hold, and FTS5's own check
 * of its structure (`intact`; rank 0) and, once caught up, against the messages (`agrees`; rank 1).
 */
function onDisk(path: string): { mark: number | null; indexed: number; intact: boolean } {
  const db = new Database(path);
  try {
    const mark = db.prepare(`SELECT value FROM relay_meta WHERE key = 'search_indexed_through'`).pluck().get() as string | undefined;
    const indexed = db.prepare(`SELECT count(*) FROM messages_fts_docsize`).pluck().get() as number;
    return { mark: mark === undefined ? null : Number(mark), indexed, intact: ftsCheckPasses(db, 0) };
  } finally {
    db.close();
  }
}

/** FTS5's check of the index against the messages table: true only when every message is indexed. */
function agrees(path: string): boolean {
  const db = new Database(path);
  try {
    return ftsCheckPasses(db, 1);
  } finally {
    db.close();
  }
}

const ranked = async (store: SqliteStore, word: string) => (await store.search.rank({ ...filter, terms: terms(word) })).map((r) => r.id).sort((a, b) => a - b);

t.test('an acknowledged send is not yet in the index, and a search finds it all the same', async (t) => {
  const path = join(t.testdir(), 'relay.db');
  const store = await SqliteStore.open({ path, synchronous: 'FULL', busyTimeoutMs: 1000, searchIndexDelayMs: LATER });
  t.teardown(() => store.close());
  const [first, second] = await send(store, 'deploy the api', 'deploy the web');
  t.same(onDisk(path), { mark: 0, indexed: 0, intact: true }, 'acknowledged, with nothing written to the index');
  t.same(await ranked(store, 'deploy'), [first, second], 'the search caught the index up first');
  t.same(onDisk(path), { mark: second, indexed: 2, intact: true }, 'and the catch-up is on disk, mark and postings together');
  t.ok(agrees(path), 'the index agrees with the messages');
  const [third] = await send(store, 'deploy again');
  t.same(await ranked(store, 'deploy'), [first, second, third], 'a later send too');
});

t.test('without a search, the writer indexes new messages a moment after their commit', async (t) => {
  const path = join(t.testdir(), 'relay.db');
  const store = await SqliteStore.open({ path, synchronous: 'FULL', busyTimeoutMs: 1000, searchIndexDelayMs: 20 });
  t.teardown(() => store.close());
  const ids = await send(store, 'one', 'two', 'three');
  await waitFor(() => onDisk(path).mark === ids[2], 'the writer to index the three messages');
  t.same(onDisk(path), { mark: ids[2], indexed: 3, intact: true });
});

t.test('pruning messages never indexed leaves the index intact', async (t) => {
  const path = join(t.testdir(), 'relay.db');
  const store = await SqliteStore.open({ path, synchronous: 'FULL', busyTimeoutMs: 1000, searchIndexDelayMs: LATER });
  t.teardown(() => store.close());
  const [indexed] = await send(store, 'kept words');
  t.same(await ranked(store, 'kept'), [indexed]);
  await store.apply([sendOp('pruned before indexing', 1500), sendOp('also pruned', 1500)]);
  // The delete trigger fires only below the mark: an FTS5 'delete' of words never indexed corrupts the index.
  await store.apply([{ op: 'prune', at: 9000, cutoff: 2000, offlineCutoff: 0 }]);
  t.same(onDisk(path), { mark: indexed, indexed: 0, intact: true }, 'every message pruned (the indexed one left the index with its row), the index intact');
  t.same(await ranked(store, 'pruned'), []);
  const [after] = await send(store, 'pruned words come back');
  t.same(await ranked(store, 'pruned'), [after], 'and indexing goes on past the pruned ids');
  t.ok(agrees(path), 'the index agrees with the messages');
});

t.test('messages a stop left unindexed are indexed when the store opens again', async (t) => {
  const path = join(t.testdir(), 'relay.db');
  let store = await SqliteStore.open({ path, synchronous: 'FULL', busyTimeoutMs: 1000, searchIndexDelayMs: LATER });
  const ids = await send(store, 'left behind', 'left too');
  await store.close();
  t.same(onDisk(path).indexed, 0, 'stopped with both unindexed');
  store = await SqliteStore.open({ path, synchronous: 'FULL', busyTimeoutMs: 1000, searchIndexDelayMs: 20 });
  t.teardown(() => store.close());
  await waitFor(() => onDisk(path).mark === ids[1], 'the reopened writer to index them');
  t.same(await ranked(store, 'left'), ids);
});

t.test('a backlog larger than one indexing transaction is caught up in full', async (t) => {
  const path = join(t.testdir(), 'relay.db');
  const store = await SqliteStore.open({ path, synchronous: 'FULL', busyTimeoutMs: 1000, searchIndexDelayMs: LATER });
  t.teardown(() => store.close());
  const N = 4500; // INDEX_CHUNK is 2,000: three transactions
  const ids = await send(store, ...Array.from({ length: N }, (_, i) => `bulk message ${i}`));
  const found = await store.search.rank({ ...filter, terms: terms('bulk'), limit: 1000 });
  t.equal(found.length, 1000, 'a full page of hits');
  t.same(onDisk(path), { mark: ids.at(-1), indexed: N, intact: true }, 'every message indexed before the search ran');
  t.ok(agrees(path));
});

/** A database at schema version 8 (before 0009) with two messages, its index kept by 0005's triggers or turned off. */
function v8Database(path: string, indexOff: boolean): number[] {
  const raw = new Database(path);
  for (const m of listMigrations().filter((m) => m.version <= 8)) raw.exec(m.sql);
  raw.pragma('user_version = 8');
  const insert = raw.prepare(`INSERT INTO messages (from_id, to_target, subject, body, thread_id, created_at, recipients) VALUES (?, ?, ?, ?, 0, ?, ?) RETURNING id`).pluck();
  const ids = [insert.get('alice', 'bob', null, 'before the upgrade', 1000, ' bob ') as number, insert.get('alice', 'bob', 'Upgrade', 'notes', 1000, ' bob ') as number];
  raw.prepare(`UPDATE messages SET thread_id = id`).run();
  if (indexOff) raw.exec(`DROP TRIGGER messages_fts_insert; DROP TRIGGER messages_fts_delete; DROP TRIGGER messages_fts_update; INSERT INTO messages_fts (messages_fts) VALUES ('delete-all');`);
  raw.close();
  return ids;
}

t.test('migration 0009: an index kept by triggers is marked as holding every message', async (t) => {
  const path = join(t.testdir(), 'v8.db');
  const ids = v8Database(path, false);
  const store = await SqliteStore.open({ path, synchronous: 'FULL', busyTimeoutMs: 1000, searchIndexDelayMs: LATER });
  t.teardown(() => store.close());
  t.same(onDisk(path), { mark: ids[1], indexed: 2, intact: true });
  t.ok(agrees(path));
  t.same(await ranked(store, 'upgrade'), ids);
  const [newer] = await send(store, 'after the upgrade');
  t.same(await ranked(store, 'upgrade'), [...ids, newer]);
});

t.test('migration 0009: an index that was off stays off, and on again is rebuilt', async (t) => {
  const path = join(t.testdir(), 'v8.db');
  const ids = v8Database(path, true);
  let store = await SqliteStore.open({ path, synchronous: 'FULL', busyTimeoutMs: 1000, searchIndex: false });
  await send(store, 'while off');
  t.same(onDisk(path), { mark: null, indexed: 0, intact: true }, 'off: no mark, nothing indexed');
  await store.close();
  store = await SqliteStore.open({ path, synchronous: 'FULL', busyTimeoutMs: 1000 });
  t.teardown(() => store.close());
  t.same(onDisk(path), { mark: ids[1] + 1, indexed: 3, intact: true }, 'on: rebuilt from every message');
  t.ok(agrees(path));
  t.same(await ranked(store, 'upgrade'), ids);
});
