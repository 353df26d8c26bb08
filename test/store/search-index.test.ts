import t from 'tap';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { SqliteStore } from '../../broker/store/store.js';
import { ERRORS } from '../../protocol/errors.js';
import { startRelay } from '../helpers/relay.js';
import { rpcErrorOf, WsRpc } from '../helpers/ws-client.js';

/**
 * AGENT_RELAY_SEARCH_INDEX: off empties the index and removes its mark (relay_meta
 * `search_indexed_through`), so a send writes nothing for search; on again rebuilds the index from
 * the messages, sent while it was off included. A relay with it off refuses message/search saying why.
 */

const filter = { since: 0, channel: null, from: null, to: null, inbox: null, limit: 10 };
const terms = (text: string) => [{ text, prefix: false }];

async function send(store: SqliteStore, body: string): Promise<number> {
  const [o] = await store.apply([
    {
      op: 'message.send',
      at: 1000,
      message: { from: 'alice', to: 'bob', channel: null, subject: null, body, replyTo: null, threadId: null, claimable: false, taskId: null, createdAt: 1000, meta: {} },
      recipients: ['bob'],
      task: null,
    },
  ]);
  return (o as { ok: true; value: { message: { id: number } } }).value.message.id;
}

/** The index's mark and how many messages its postings hold, read from the file. */
function indexState(path: string): { mark: string | null; indexed: number } {
  const db = new Database(path, { readonly: true });
  const mark = (db.prepare(`SELECT value FROM relay_meta WHERE key = 'search_indexed_through'`).pluck().get() as string | undefined) ?? null;
  const indexed = db.prepare(`SELECT count(*) FROM messages_fts_docsize`).pluck().get() as number;
  db.close();
  return { mark, indexed };
}

t.test('off drops the triggers and empties the index; on rebuilds it, messages sent meanwhile included', async (t) => {
  const path = join(t.testdir(), 'relay.db');
  let store = await SqliteStore.open({ path, synchronous: 'FULL', busyTimeoutMs: 1000 });
  const before = await send(store, 'release train leaves at noon');
  t.same(
    (await store.search.rank({ ...filter, terms: terms('release') })).map((r) => r.id),
    [before],
  );
  await store.close();

  store = await SqliteStore.open({ path, synchronous: 'FULL', busyTimeoutMs: 1000, searchIndex: false });
  t.same(indexState(path), { mark: null, indexed: 0 }, 'off: the index is empty and has no mark');
  const during = await send(store, 'release notes are out');
  t.same(await store.search.rank({ ...filter, terms: terms('release') }), [], 'and a send does not enter it');
  await store.close();
  t.same(indexState(path), { mark: null, indexed: 0 }, 'not even later');

  store = await SqliteStore.open({ path, synchronous: 'FULL', busyTimeoutMs: 1000, searchIndex: true });
  t.same(indexState(path), { mark: String(during), indexed: 2 }, 'on: rebuilt before the store opened, through the newest message');
  t.same((await store.search.rank({ ...filter, terms: terms('release') })).map((r) => r.id).sort(), [before, during], 'the index was rebuilt, with the message sent while it was off');
  const after = await send(store, 'release done');
  t.ok(
    (await store.search.rank({ ...filter, terms: terms('done') })).some((r) => r.id === after),
    'and new sends are indexed again',
  );
  const db = new Database(path, { readonly: false });
  t.doesNotThrow(() => db.prepare(`INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)`).run(), 'FTS5 integrity-check passes against the messages');
  db.close();
  await store.close();
});

t.test('a relay with the index off refuses message/search, naming the setting', async (t) => {
  const relay = await startRelay(t, { searchIndex: 'off' });
  const obs = await WsRpc.connect(t, relay.wsUrl);
  const err = await rpcErrorOf(obs.call('message/search', { query: 'anything' }));
  t.equal(err.code, ERRORS.methodNotFound.code);
  t.match(err.message, /AGENT_RELAY_SEARCH_INDEX=off/);
  t.ok((await obs.call('message/send', { to: 'broadcast', body: 'sending still works' })).message.id > 0, 'the rest of the relay works');
});
