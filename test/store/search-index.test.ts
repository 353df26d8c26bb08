import t from 'tap';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { SqliteStore } from '../../broker/store/store.js';
import { ERRORS } from '../../protocol/errors.js';
import { startRelay } from '../helpers/relay.js';
import { rpcErrorOf, WsRpc } from '../helpers/ws-client.js';

/**
 * AGENT_RELAY_SEARCH_INDEX: off drops the index's triggers (a send writes nothing for search) and
 * empties it; on again puts them back and rebuilds the index from the messages, sent while it was
 * off included. A relay with it off refuses message/search saying why.
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

function triggers(path: string): string[] {
  const db = new Database(path, { readonly: true });
  const names = (db.prepare(`SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'messages_fts%' ORDER BY name`).all() as Array<{ name: string }>).map((r) => r.name);
  db.close();
  return names;
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
  t.same(triggers(path), [], 'off: no trigger writes the index');
  const during = await send(store, 'release notes are out');
  t.same(await store.search.rank({ ...filter, terms: terms('release') }), [], 'and the index is empty');
  await store.close();

  store = await SqliteStore.open({ path, synchronous: 'FULL', busyTimeoutMs: 1000, searchIndex: true });
  t.same(triggers(path), ['messages_fts_delete', 'messages_fts_insert', 'messages_fts_update'], 'on: the triggers are back');
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
