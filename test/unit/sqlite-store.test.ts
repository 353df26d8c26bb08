import { join } from 'node:path';
import t, { type Test } from 'tap';
import { ERRORS, RelayError } from '../../protocol/index.js';
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
  t.equal((await store.messages.all({ since: 0, limit: 10, channel: null, threadId: null })).length, 2, 'the two good ones are stored');
  t.equal(store.health.lastFailure, null, 'a refused op is no storage fault');
});

t.test('sqlite: errors cross the writer thread as themselves', async (t) => {
  const store = await open(t);
  const broken = {
    op: 'message.send',
    at: 1,
    message: { from: 'a', to: 'b', channel: null, subject: null, body: null, replyTo: null, threadId: null, claimable: false, taskId: null, createdAt: 1, meta: {} },
    recipients: [],
    task: null,
  } as unknown as WriteOp;
  const [o] = await store.apply([broken]);
  t.match(o, { ok: false, refused: 'error' });
  const err = (o as { error: Error & { code?: string } }).error;
  t.ok(err instanceof Error, 'a refused op carries an Error (loggable)');
  t.equal(err.code, 'SQLITE_CONSTRAINT_NOTNULL', 'with its SQLite code');
  t.match(err.stack, /writer|apply/, 'and the writer thread’s stack');
  await store.pragma('max_page_count = 1');
  const full = await store.apply([{ op: 'message.send', at: 1, message: { ...(broken as { message: object }).message, body: 'x'.repeat(100_000) } as never, recipients: [], task: null }]).then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(full instanceof RelayError, 'a batch refused as a whole rejects with a RelayError');
  t.equal((full as RelayError).code, ERRORS.storageBusy.code, '-32008');
  t.match(store.health.lastFailure, { error: /^SQLITE_FULL: / }, 'noted as the last failure');
  t.notOk(await store.inTransaction(), 'no transaction left open on the writer');
});

t.test('sqlite: a writer thread that dies fails its batch with -32008 and every later one; it is reported once', async (t) => {
  const fatal: Error[] = [];
  const store = await SqliteStore.open({ path: join(t.testdir(), 'relay.db'), synchronous: 'FULL', busyTimeoutMs: 1000, onFatal: (e) => fatal.push(e) });
  t.teardown(() => store.close());
  const message = { from: 'alice', to: 'bob', channel: null, subject: null, body: 'hi', replyTo: null, threadId: null, claimable: false, taskId: null, createdAt: 1, meta: {} };
  const big: WriteOp[] = Array.from({ length: 20_000 }, () => ({ op: 'message.send', at: 1, message, recipients: ['bob'], task: null }));
  const inFlight = store.apply(big).then(
    () => 'committed',
    (e: unknown) => e,
  );
  // Kill the thread while it works on the batch (as an uncaught error would end it).
  await (store as unknown as { worker: { terminate(): Promise<number> } }).worker.terminate();
  const first = await inFlight;
  t.ok(first instanceof RelayError && first.code === ERRORS.storageBusy.code, `the batch in hand is refused with -32008, nothing acknowledged (${String(first)})`);
  const later = await store.apply([{ op: 'message.send', at: 1, message, recipients: ['bob'], task: null }]).then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(later instanceof RelayError && later.code === ERRORS.storageBusy.code, 'a later batch is refused with -32008');
  t.match((later as Error).message, /writer thread died/, 'saying the writer died');
  t.equal(fatal.length, 1, 'the death was reported once (the relay logs it as fatal)');
  t.match(store.health.lastFailure, { error: /writer thread died/ }, '/healthz sees it as the last failure');
  t.equal(await store.health.isWritable(), false, 'and not writable');
});
