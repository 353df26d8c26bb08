import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { loadConfig } from '../../broker/config.js';
import { CallbackDispatcher, DEFAULT_CALLBACK_POLICY } from '../../broker/domain/callbacks.js';
import { Domain } from '../../broker/domain/domain.js';
import { systemClock } from '../../broker/domain/ports.js';
import { createLogger } from '../../broker/logger.js';
import { PostgresStore } from '../../broker/store-postgres/store.js';
import { startPostgres } from '../helpers/postgres.js';
import { taskCreateOp } from '../helpers/records.js';
import { waitFor } from '../helpers/wait.js';

/*
 * The callback outbox with several dispatchers: three relay nodes' CallbackDispatchers (each with
 * its own store and domain) on one PostgreSQL database, delivering to one receiver. Each callback
 * is sent once, in per-task order; a dispatcher that dies with callbacks in flight has exactly
 * those sent again, with the same webhook-id, once their leases end.
 */

const server = await startPostgres(t);
const SECRET = 'whsec_dGVzdC1zZWNyZXQtb2YtdGhlLW91dGJveA==';
// A short attempt timeout, so a lease (3 × timeout) ends within the test.
const POLICY = { ...DEFAULT_CALLBACK_POLICY, timeoutMs: 400, baseDelayMs: 50 };

interface Received {
  webhookId: string;
  taskId: number;
  eventId: number;
}

/** A callback receiver on 127.0.0.1: records each POST; `hold` keeps answers back until `release`. */
async function receiver(t: Test) {
  const received: Received[] = [];
  let holding = false;
  const held: ServerResponse[] = [];
  const http = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString()) as { data: { event: { id: number; taskId: number } } };
      received.push({ webhookId: String(req.headers['webhook-id']), taskId: body.data.event.taskId, eventId: body.data.event.id });
      if (holding) held.push(res);
      else res.end('ok');
    });
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => http.close(() => resolve())));
  return {
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}/hook`,
    received,
    hold: () => (holding = true),
    release: () => {
      holding = false;
      for (const res of held.splice(0)) res.end('ok');
    },
  };
}

async function node(t: Test, url: string) {
  const config = loadConfig({}, { allowPrivateCallbacks: true, callbackSecret: SECRET });
  const store = await PostgresStore.open({ url });
  const core = await Domain.open(store, config, createLogger('silent'), systemClock);
  const dispatcher = new CallbackDispatcher(core, (signer) => core.secretFor(signer), POLICY);
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    dispatcher.stop();
    await store.close();
  };
  t.teardown(close);
  return { core, dispatcher, close };
}

/** Each task: created, then claimed — two callbacks, in that order. */
async function tasks(core: Domain, rx: string, n: number, prefix: string): Promise<number[]> {
  const ids: number[] = [];
  for (let i = 0; i < n; i++) {
    const id = await core.queue.apply(taskCreateOp(`${prefix} ${i}`, Date.now(), rx), (o) => (o.ok ? (o.value as { task: { id: number } }).task.id : -1));
    await core.queue.apply({ op: 'task.claim', at: Date.now(), taskId: id, agentId: 'bob' }, () => undefined);
    ids.push(id);
  }
  return ids;
}

/** Per task, the event ids in the order their first delivery arrived: ascending if the task's order held. */
function orderViolations(received: readonly Received[]): number {
  const seen = new Set<string>();
  const last = new Map<number, number>();
  let violations = 0;
  for (const r of received) {
    if (seen.has(r.webhookId)) continue;
    seen.add(r.webhookId);
    if ((last.get(r.taskId) ?? 0) > r.eventId) violations++;
    last.set(r.taskId, r.eventId);
  }
  return violations;
}

const counts = (received: readonly Received[]) => {
  const by = new Map<string, number>();
  for (const r of received) by.set(r.webhookId, (by.get(r.webhookId) ?? 0) + 1);
  return by;
};

t.test('three dispatchers on one database: each callback sent once, in per-task order', async (t) => {
  const url = await server.freshDatabase();
  const rx = await receiver(t);
  const nodes = [await node(t, url), await node(t, url), await node(t, url)];
  const ids = await tasks(nodes[0]!.core, rx.url, 40, 'task');
  const expected = ids.length * 2;
  for (const n of nodes) n.dispatcher.kick();
  await waitFor(() => counts(rx.received).size === expected, `${expected} callbacks delivered`, 20_000);
  // A moment more: a second send of any of them would arrive now.
  await new Promise((r) => setTimeout(r, 300));
  const sentTwice = [...counts(rx.received).values()].filter((c) => c > 1).length;
  t.equal(rx.received.length, expected, `${expected} deliveries for ${expected} callbacks`);
  t.equal(sentTwice, 0, 'none sent twice');
  t.equal(orderViolations(rx.received), 0, 'each task’s callbacks arrived in event order');
  const depth = await nodes[1]!.core.store.outbox.depthByState();
  t.same(depth, { pending: 0, delivered: expected, dead: 0 }, 'every outbox entry recorded as delivered');
});

t.test('a dispatcher that dies with callbacks in flight: exactly those are sent again, same webhook-id, once their leases end', async (t) => {
  const url = await server.freshDatabase();
  const rx = await receiver(t);
  const [doomed, ...survivors] = [await node(t, url), await node(t, url), await node(t, url)];
  const ids = await tasks(doomed!.core, rx.url, 10, 'task');
  const expected = ids.length * 2;

  rx.hold();
  doomed!.dispatcher.kick();
  await waitFor(() => rx.received.length > 0, 'the first dispatcher to send');
  await new Promise((r) => setTimeout(r, 100));
  const inFlight = new Set(rx.received.map((r) => r.webhookId));
  await doomed!.close(); // dies: its answers will find no store to record them in
  const diedAt = Date.now();
  rx.release();
  for (const n of survivors) n.dispatcher.kick();
  await waitFor(() => counts(rx.received).size === expected, `${expected} callbacks delivered`, 20_000);
  await waitFor(() => [...inFlight].every((id) => (counts(rx.received).get(id) ?? 0) >= 2), 'the dead dispatcher’s callbacks sent again', 10_000);
  const resentAfterMs = Date.now() - diedAt;
  await new Promise((r) => setTimeout(r, 300));

  const by = counts(rx.received);
  const resent = [...by.entries()].filter(([, c]) => c > 1).map(([id]) => id);
  t.same(resent.sort(), [...inFlight].sort(), `exactly the ${inFlight.size} in flight when it died were sent again (after ${resentAfterMs} ms; its leases: ${3 * POLICY.timeoutMs} ms)`);
  t.ok(
    resent.every((id) => by.get(id) === 2),
    'each once more, under the same webhook-id',
  );
  t.equal(by.size, expected, `every callback delivered (${expected})`);
  t.equal(orderViolations(rx.received), 0, 'in per-task order');
  t.same(await survivors[0]!.core.store.outbox.depthByState(), { pending: 0, delivered: expected, dead: 0 }, 'all recorded as delivered by the survivors');
});
