import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { WriteOp } from '../../broker/domain/store-port.js';
import { SqliteStore } from '../../broker/store/store.js';
import { storeContract } from './store-contract.js';

/** The store contract on a temp-file SQLite store, plus what is SQLite's own. */
const open = async (t: Test) => {
  const store = await SqliteStore.open({ path: join(t.testdir(), 'relay.db'), synchronous: 'FULL', busyTimeoutMs: 1000 });
  t.teardown(() => store.close());
  return store;
};

storeContract(t, open);

t.test('sqlite: an op that throws fails alone; the batch around it commits', async (t) => {
  const store = await open(t);
  const message = { from: 'alice', to: 'bob', channel: null, subject: null, body: 'hi', replyTo: null, threadId: null, claimable: false, taskId: null, createdAt: 1, meta: {} };
  // A NOT NULL column given null: a constraint no plan should miss, so the op throws.
  const broken = { op: 'message.send', at: 1, message: { ...message, body: null }, recipients: [], task: null } as unknown as WriteOp;
  const [a, b, c] = await store.apply([{ op: 'message.send', at: 1, message, recipients: ['bob'], task: null }, broken, { op: 'message.send', at: 1, message, recipients: ['bob'], task: null }]);
  t.equal(a!.ok, true);
  t.match(b, { ok: false, refused: 'error' });
  t.equal(c!.ok, true);
  t.equal(store.messages.all({ since: 0, limit: 10, channel: null, threadId: null }).length, 2, 'the two good ones are stored');
  t.equal(store.health.lastFailure, null, 'a refused op is no storage fault');
});
