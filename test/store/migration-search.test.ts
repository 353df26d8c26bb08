import Database from 'better-sqlite3';
import { join } from 'node:path';
import t from 'tap';
import { listMigrations } from '../../broker/store/migrate.js';
import { SqliteStore } from '../../broker/store/store.js';

/**
 * Migration 0005 adds the full-text index of subjects and bodies. A database written at schema
 * version 4 (before search) has its messages indexed by the migration: they are found at once, and
 * the index then follows new messages and pruning.
 */

t.test('a v4 database is indexed by the migration; later writes keep the index', async (t) => {
  const path = join(t.testdir(), 'v4.db');
  const raw = new Database(path);
  for (const m of listMigrations().filter((m) => m.version <= 4)) raw.exec(m.sql);
  raw.pragma('user_version = 4');
  const insert = raw.prepare(`INSERT INTO messages (from_id, to_target, subject, body, thread_id, created_at, recipients) VALUES (?, ?, ?, ?, 0, ?, ?) RETURNING id`).pluck();
  const old = insert.get('alice', 'bob', 'Release train', 'the release is tagged', 1000, ' bob ') as number;
  const other = insert.get('alice', 'carol', null, 'lunch at noon', 1000, ' carol ') as number;
  const both = insert.get('ext:ci', 'broadcast', null, 'release notes for everyone', 5000, ' bob carol ') as number;
  raw.prepare(`UPDATE messages SET thread_id = id`).run();
  raw.close();

  const store = await SqliteStore.open({ path, synchronous: 'FULL', busyTimeoutMs: 1000 });
  t.teardown(() => store.close());
  t.equal(await store.pragma('user_version'), listMigrations().at(-1)!.version, 'migrated to the latest version');
  const terms = (text: string) => [{ text, prefix: false }];
  const filter = { since: 0, channel: null, from: null, to: null, inbox: null, limit: 10 };
  const ranked = (await store.search.rank({ ...filter, terms: terms('release') })).map((r) => r.id);
  t.same(ranked, [old, both], 'messages stored before the migration are found, the subject match first');
  t.same(
    (await store.search.rank({ ...filter, terms: terms('lunch') })).map((r) => r.id),
    [other],
  );
  t.same(
    (await store.search.hits(terms('release'), ranked)).map((h) => h.snippet),
    ['«Release» train', '«release» notes for everyone'],
    'snippets read the text from the messages table',
  );
  t.same(
    (await store.search.rank({ ...filter, terms: terms('release'), inbox: { agentId: 'carol', floor: 0 } })).map((r) => r.id),
    [both],
    "carol's inbox",
  );

  const [sent] = await store.apply([
    {
      op: 'message.send',
      at: 9000,
      message: { from: 'bob', to: 'alice', channel: null, subject: null, body: 'release done', replyTo: null, threadId: null, claimable: false, taskId: null, createdAt: 9000, meta: {} },
      recipients: ['alice'],
      task: null,
    },
  ]);
  const id = (sent as { ok: true; value: { message: { id: number } } }).value.message.id;
  t.same(
    (await store.search.rank({ ...filter, terms: terms('done') })).map((r) => r.id),
    [id],
    'a new message is found by the next search',
  );
  await store.apply([{ op: 'prune', at: 9000, cutoff: 2000, offlineCutoff: 0 }]);
  t.same(
    (await store.search.rank({ ...filter, terms: terms('release') })).map((r) => r.id),
    [id, both],
    'pruned messages leave the index',
  );
  t.same(await store.search.rank({ ...filter, terms: terms('lunch') }), []);

  const check = new Database(path, { readonly: false });
  t.teardown(() => check.close());
  t.doesNotThrow(() => check.exec(`INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)`), 'the index agrees with the messages table');
});
