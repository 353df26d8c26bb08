import { parentPort, workerData } from 'node:worker_threads';
import { databaseOpenError } from './open-error.js';
import { outcomeToWire, toWire, type Reply, type Request, type WriterData } from './writer-protocol.js';
import { INDEX_CHUNK } from './search-indexer.js';
import { StoreWriter } from './writer.js';

/*
 * The store's writer thread (a worker_threads entry: dist/broker/store-writer.js when built). It
 * owns the only connection that writes and answers the main thread's requests one at a time, in
 * the order they were posted. A batch is answered only after COMMIT returned: with
 * synchronous=FULL, SQLite fsynced the WAL before that, so an answer means "committed and synced".
 * An uncaught error ends the thread; the store (store.ts) then refuses every write (fatal).
 *
 * New messages reach the full-text index in passes of their own (search-indexer.ts), a short
 * delay after the commit that stored them, so a burst of sends is indexed in few transactions;
 * an `index` request (a search is about to read) indexes everything committed before it.
 */

const port = parentPort;
if (!port) throw new Error('writer-thread.ts runs as a worker thread (SqliteStore.open starts it)');
const data = workerData as WriterData;
const post = (r: Reply): void => port.postMessage(r);

let writer: StoreWriter | undefined;
try {
  writer = StoreWriter.open(data);
} catch (err) {
  post({ type: 'openFailed', error: toWire(databaseOpenError(data.path, err) ?? err) });
  port.close();
}

if (writer) {
  const w = writer;
  const indexDelayMs = data.searchIndexDelayMs ?? 50;
  let indexTimer: NodeJS.Timeout | null = null;
  const indexSoon = (delayMs = indexDelayMs): void => {
    indexTimer ??= setTimeout(() => {
      indexTimer = null;
      try {
        // A full chunk may leave more: the rest after whatever batches came meanwhile.
        if (w.indexSome() === INDEX_CHUNK) indexSoon(0);
      } catch {
        // A busy or failing database: the messages stay above the mark, tried again later.
        indexSoon();
      }
    }, delayMs);
  };
  post({ type: 'ready', settings: w.settings() });
  indexSoon(); // messages a crash left unindexed
  port.on('message', (m: Request) => {
    switch (m.type) {
      case 'apply': {
        let outcomes: ReturnType<StoreWriter['apply']>;
        try {
          outcomes = w.apply(m.ops);
        } catch (err) {
          post({ type: 'failed', id: m.id, error: toWire(err), lastFailure: w.lastFailure });
          return;
        }
        post({ type: 'applied', id: m.id, outcomes: outcomes.map(outcomeToWire), lastFailure: w.lastFailure, timing: w.timing });
        if (outcomes.some((o) => o.changes.some((c) => c.kind === 'message'))) indexSoon();
        return;
      }
      case 'index':
        try {
          w.indexAll();
          post({ type: 'value', id: m.id, value: true });
        } catch (err) {
          post({ type: 'failed', id: m.id, error: toWire(err), lastFailure: w.lastFailure });
        }
        return;
      case 'probe':
        post({ type: 'value', id: m.id, value: w.isWritable() });
        return;
      case 'pragma': {
        try {
          post({ type: 'value', id: m.id, value: w.pragma(m.text) });
        } catch (err) {
          post({ type: 'failed', id: m.id, error: toWire(err), lastFailure: w.lastFailure });
        }
        return;
      }
      case 'inTransaction':
        post({ type: 'value', id: m.id, value: w.inTransaction });
        return;
      case 'close':
        if (indexTimer) clearTimeout(indexTimer);
        w.close();
        post({ type: 'closed' });
        port.close();
        return;
    }
  });
}
