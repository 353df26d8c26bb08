import t from 'tap';
import type { WriteOp } from '../../broker/domain/store-port.js';
import { wireOps } from '../../broker/store-postgres/wire.js';
import { sendOp, storedAgent } from '../helpers/records.js';

// How the PostgreSQL writer sends a batch (broker/store-postgres/wire.ts): plain sends in runs of
// flat rows, everything else as it is, routing changes marked. The database's side of it is
// checked on a real PostgreSQL by test/postgres (store-contract, same-as-sqlite, feed).

const plain = (body: string) => sendOp({ body, subject: 'Build' });
const reply = { ...sendOp({ body: 're', replyTo: 1 }) } as WriteOp;
const { inboxFloor: _f, ...agent } = storedAgent('bob');
const register: WriteOp = { op: 'agent.insert', at: 1, agent, maxAgents: 10, events: [] };

t.test('consecutive plain sends go as one run; a reply or another op ends it', async (t) => {
  const wire = wireOps([plain('a'), plain('b'), reply, plain('c'), register, plain('d')], { vectors: true, runs: true }) as Record<string, unknown>[];
  t.same(
    wire.map((o) => o.op),
    ['message.run', 'message.send', 'message.run', 'agent.insert', 'message.run'],
  );
  t.same(
    (wire[0]!.rows as { body: string }[]).map((r) => r.body),
    ['a', 'b'],
    'the run keeps the sends in order',
  );
  t.match(wire[0]!.rows, [{ from: 'alice', subject: 'Build', search: "'build':1A 'a':2B", routedAt: null }], 'a row: the message, its vector, its route stamp');
  t.equal(wire[3]!.reroutes, true, 'a registration is marked as a routing change');
});

t.test('without vectors, or for the op-by-op fallback', async (t) => {
  const rows = (wireOps([plain('a')], { vectors: false, runs: true })[0] as { rows: { search: unknown }[] }).rows;
  t.equal(rows[0]!.search, null, 'no vector: the database computes it');
  const alone = wireOps([plain('a'), plain('b')], { vectors: true, runs: false });
  t.same(
    alone.map((o) => (o as { op: string }).op),
    ['message.send', 'message.send'],
    'every op alone, as the port gave it',
  );
});
