import t from 'tap';
import type { NewMessage, WriteOp } from '../../broker/domain/store-port.js';
import { PostgresStore } from '../../broker/store-postgres/store.js';
import { startPostgres } from '../helpers/postgres.js';
import { newMessage, taskCreateOp } from '../helpers/records.js';

/*
 * Ids are cursors: with several writers on one database, a reader polling `id > cursor` must never
 * skip one (see a later id before an earlier one became visible), and no id is ever missing. Three
 * stores (three relay nodes' writers) apply batches at once while a fourth polls messages and
 * events; some batches are refused in part, one raises (an op that throws, rolled back op by op).
 */

const server = await startPostgres(t);

const WRITERS = 3;
const BATCHES = 120;
const PER_BATCH = 10;

const message = (body: string, replyTo: number | null = null): NewMessage => newMessage({ body, replyTo });

t.test('three writers, one reader polling id > cursor: nothing skipped, no holes, commit order', async (t) => {
  const url = await server.freshDatabase();
  const writers = await Promise.all(Array.from({ length: WRITERS }, () => PostgresStore.open({ url })));
  const reader = await PostgresStore.open({ url });
  t.teardown(async () => {
    for (const s of [...writers, reader]) await s.close();
  });

  let writing = true;
  const acked: number[] = [];
  const write = async (store: PostgresStore, w: number) => {
    for (let b = 0; b < BATCHES; b++) {
      const ops: WriteOp[] = [];
      for (let i = 0; i < PER_BATCH; i++) ops.push({ op: 'message.send', at: 1, message: message(`w${w} b${b} m${i}`), recipients: ['bob'], task: null });
      // Every 10th batch: a refused op (reply to a message that does not exist) and a task, whose events are cursors too.
      if (b % 10 === 0) ops.push({ op: 'message.send', at: 1, message: message('refused', 1e12), recipients: [], task: null });
      if (b % 10 === 5) ops.push(taskCreateOp(`t${w}.${b}`));
      for (const o of await store.apply(ops)) {
        for (const c of o.changes) if (c.kind === 'message') acked.push(c.message.id);
      }
    }
  };

  const seenMessages: number[] = [];
  const seenEvents: number[] = [];
  let skipped = 0;
  let polls = 0;
  const poll = async () => {
    let cursor = 0;
    let eventCursor = 0;
    for (;;) {
      const done = !writing;
      const page = await reader.messages.all({ since: cursor, limit: 500, channel: null, threadId: null });
      for (const m of page) {
        // Ids are gapless, so the next visible id must be the next one: anything else was skipped.
        if (m.id !== cursor + 1) skipped++;
        seenMessages.push(m.id);
        cursor = m.id;
      }
      const events = await reader.events.list({ since: eventCursor, kind: null, taskId: null, limit: 500 });
      for (const e of events) {
        if (e.id !== eventCursor + 1) skipped++;
        seenEvents.push(e.id);
        eventCursor = e.id;
      }
      polls++;
      if (done && page.length === 0 && events.length === 0) return;
    }
  };

  const started = Date.now();
  const reading = poll();
  await Promise.all(writers.map((s, w) => write(s, w)));
  writing = false;
  await reading;
  const ms = Date.now() - started;

  const expected = WRITERS * BATCHES * PER_BATCH + WRITERS * (BATCHES / 10);
  t.equal(acked.length, expected, `${acked.length} messages acknowledged by ${WRITERS} writers (${WRITERS * BATCHES} batches in ${ms} ms)`);
  t.equal(skipped, 0, `0 skipped by the reader over ${polls} polls`);
  t.same(
    seenMessages,
    Array.from({ length: expected }, (_, i) => i + 1),
    `the reader saw ids 1..${expected}, each once, in order: 0 holes`,
  );
  t.same(
    [...acked].sort((a, b) => a - b),
    seenMessages,
    'exactly the acknowledged ones',
  );
  t.equal(seenEvents.length, await reader.events.maxId(), `events too: ${seenEvents.length}, gapless`);
  t.same(
    seenEvents,
    Array.from({ length: seenEvents.length }, (_, i) => i + 1),
    'events 1..N in order',
  );
});
