import Database from 'better-sqlite3';
import { join } from 'node:path';
import t from 'tap';
import { listMigrations } from '../../broker/store/migrate.js';
import { SqliteStore } from '../../broker/store/store.js';

/**
 * Migration 0003 replaces the row-per-recipient `deliveries` table with recipients on the message,
 * exact marks and spans. A database written by the previous schema keeps every answer: who a
 * message was for, each recipient's state and time, inboxes and the unread filter.
 */

t.test('a v2 database with deliveries in every state migrates without changing an answer', async (t) => {
  const path = join(t.testdir(), 'v2.db');
  const raw = new Database(path);
  for (const m of listMigrations().filter((m) => m.version <= 2)) raw.exec(m.sql);
  raw.pragma('user_version = 2');
  const msg = raw.prepare(`INSERT INTO messages (from_id, to_target, body, thread_id, created_at) VALUES ('alice', ?, ?, 0, ?) RETURNING id`).pluck();
  const del = raw.prepare(`INSERT INTO deliveries (agent_id, message_id, state, at) VALUES (?, ?, ?, ?)`);
  const fan = msg.get('tag:crew', 'to the crew', 1000) as number;
  del.run('carol', fan, 'read', 1400);
  del.run('bob', fan, 'pushed', 1100);
  del.run('dan', fan, 'queued', 1000);
  const direct = msg.get('bob', 'to bob', 2000) as number;
  del.run('bob', direct, 'injected', 2300);
  const nobody = msg.get('tag:none', 'to no one', 3000) as number;
  raw.prepare(`UPDATE messages SET thread_id = id`).run();
  raw.close();

  const store = await SqliteStore.open({ path, synchronous: 'FULL', busyTimeoutMs: 1000 });
  t.teardown(() => store.close());
  t.equal(await store.pragma('user_version'), listMigrations().at(-1)!.version, 'migrated to the latest version');
  t.same(
    await store.deliveries.forMessage(fan),
    [
      { messageId: fan, agentId: 'bob', state: 'pushed', at: 1100 },
      { messageId: fan, agentId: 'carol', state: 'read', at: 1400 },
      { messageId: fan, agentId: 'dan', state: 'queued', at: 1000 },
    ],
    'the fan-out keeps each recipient, state and time',
  );
  t.same(await store.deliveries.forMessage(direct), [{ messageId: direct, agentId: 'bob', state: 'injected', at: 2300 }]);
  t.same(await store.deliveries.forMessage(nobody), [], 'a message that had no recipient still has none');
  t.equal(await store.deliveries.get('alice', fan), undefined, 'the sender was not a recipient');

  const inbox = async (agent: string, unread: boolean) =>
    (
      await store.messages.inbox(
        agent,
        unread
          ? { since: 0, floor: 0, limit: 10, channel: null, threadId: null, unread: true, readThrough: await store.deliveries.readThrough(agent) }
          : { since: 0, floor: 0, limit: 10, channel: null, threadId: null, unread: false },
      )
    ).map((m) => m.id);
  t.same(await inbox('bob', false), [fan, direct], 'bob’s inbox');
  t.same(await inbox('carol', false), [fan], 'carol’s inbox');
  t.same(await inbox('carol', true), [], 'carol read hers');
  t.same(await inbox('dan', true), [fan], 'dan did not');

  const raw2 = new Database(path, { readonly: true });
  t.teardown(() => raw2.close());
  const tables = raw2.prepare(`SELECT name FROM sqlite_master WHERE type = 'table'`).pluck().all() as string[];
  t.notOk(tables.includes('deliveries'), 'the old table is gone');
  t.equal(raw2.prepare(`SELECT count(*) FROM delivery_marks`).pluck().get(), 3, 'one mark per delivery that had left queued');
});
