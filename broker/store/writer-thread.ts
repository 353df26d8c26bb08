import { parentPort, workerData } from 'node:worker_threads';
import { databaseOpenError } from './open-error.js';
import { outcomeToWire, toWire, type Reply, type Request, type WriterData } from './writer-protocol.js';
import { StoreWriter } from './writer.js';

/*
 * The store's writer thread (a worker_threads entry: dist/broker/store-writer.js when built). It
 * owns the only connection that writes and answers the main thread's requests one at a time, in
 * the order they were posted. A batch is answered only after COMMIT returned: with
 * synchronous=FULL, SQLite fsynced the WAL before that, so an answer means "committed and synced".
 * An uncaught error ends the thread; the store (store.ts) then refuses every write (fatal).
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
  post({ type: 'ready', settings: w.settings() });
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
        post({ type: 'applied', id: m.id, outcomes: outcomes.map(outcomeToWire), lastFailure: w.lastFailure });
        return;
      }
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
        w.close();
        post({ type: 'closed' });
        port.close();
        return;
    }
  });
}
