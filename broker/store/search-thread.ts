import Database from 'better-sqlite3';
import { parentPort, workerData } from 'node:worker_threads';
import { MessageSearch } from './message-search.js';
import type { SearchData, SearchReply, SearchRequest } from './search-protocol.js';
import { toWire } from './writer-protocol.js';

/*
 * The store's search thread (a worker_threads entry: dist/broker/store-search.js when built): the
 * FTS5 ranking and snippets of message/search on a read-only connection of its own, so a search
 * that scores every match of a common word never holds up the event loop or the writer's commits.
 * Under WAL it reads the last published commit, as the main thread's reader does.
 */

const port = parentPort;
if (!port) throw new Error('search-thread.ts runs as a worker thread (SearchThread.start starts it)');
const data = workerData as SearchData;
const post = (r: SearchReply): void => port.postMessage(r);

const db = new Database(data.path, { readonly: true, fileMustExist: true, timeout: data.busyTimeoutMs });
db.pragma(`busy_timeout = ${data.busyTimeoutMs}`);
db.pragma('temp_store = MEMORY');
const search = new MessageSearch(db);

port.on('message', (m: SearchRequest) => {
  if (m.type === 'close') {
    db.close();
    port.close();
    return;
  }
  try {
    post({ type: 'value', id: m.id, value: m.type === 'rank' ? search.rank(m.filter) : search.hits(m.terms, m.ids) });
  } catch (err) {
    post({ type: 'failed', id: m.id, error: toWire(err) });
  }
});
