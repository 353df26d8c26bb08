import t from 'tap';
import { FairDispatch } from '../../broker/transport/fair-dispatch.js';

/**
 * FairDispatch on its own, with plain objects for connections: which frames start on arrival,
 * which in later turns, and in what order. A turn ends at FairDispatch's own setImmediate;
 * awaiting one more setImmediate lands right after it.
 */

interface Conn {
  name: string;
  closed: boolean;
}

const PER_TURN = 4;
const endOfTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

function setup(maxWaitingBytes = 1_000_000) {
  const started: string[] = [];
  const overflowed: string[] = [];
  const fair = new FairDispatch<Conn>(
    (conn, text) => started.push(`${conn.name}:${text}`),
    PER_TURN,
    maxWaitingBytes,
    (conn) => overflowed.push(conn.name),
  );
  const conn = (name: string): Conn => ({ name, closed: false });
  const burst = (c: Conn, n: number) => {
    for (let i = 0; i < n; i++) fair.submit(c, String(i), Buffer.byteLength(String(i)));
  };
  return { fair, started, overflowed, conn, burst };
}

const frames = (name: string, from: number, to: number) => Array.from({ length: to - from }, (_, i) => `${name}:${from + i}`);

t.test('a burst starts perTurn frames per turn, in order', async (t) => {
  const { fair, started, conn, burst } = setup();
  const a = conn('a');
  burst(a, 10);
  t.same(started, frames('a', 0, 4), 'perTurn frames start on arrival');
  t.equal(fair.backlog, 6, 'the rest waits');
  await endOfTurn();
  t.same(started, frames('a', 0, 8), 'perTurn more in the next turn');
  await endOfTurn();
  t.same(started, frames('a', 0, 10), 'and the rest, in order');
  t.equal(fair.backlog, 0);
});

t.test('two busy connections alternate, perTurn frames each per turn, each in its own order', async (t) => {
  const { fair, started, conn, burst } = setup();
  const a = conn('a');
  const b = conn('b');
  burst(a, 12);
  burst(b, 12);
  t.same(started, [...frames('a', 0, 4), ...frames('b', 0, 4)], 'on arrival: perTurn each');
  await endOfTurn();
  t.same(started.slice(8), [...frames('a', 4, 8), ...frames('b', 4, 8)]);
  await endOfTurn();
  t.same(started.slice(16), [...frames('a', 8, 12), ...frames('b', 8, 12)]);
  t.equal(fair.backlog, 0);
});

t.test('a frame of another connection arriving during a burst starts before the burst’s rest', async (t) => {
  const { started, conn, burst } = setup();
  const a = conn('a');
  const b = conn('b');
  burst(a, 30);
  burst(b, 1);
  t.same(started, [...frames('a', 0, 4), 'b:0'], 'b started after perTurn of a’s frames, not after all of them');
});

t.test('a closed connection’s waiting frames are dropped; an overflowing one is reported and dropped', async (t) => {
  const { fair, started, overflowed, conn, burst } = setup();
  const a = conn('a');
  burst(a, 10);
  a.closed = true;
  await endOfTurn();
  t.same(started, frames('a', 0, 4), 'nothing more of a closed connection runs');
  t.equal(fair.backlog, 0);

  const small = setup(10);
  const c = small.conn('c');
  small.burst(c, 4 + 11);
  t.same(small.overflowed, ['c'], 'more than maxWaitingBytes waiting: onOverflow (the relay closes the socket there)');
  c.closed = true;
  await endOfTurn();
  t.same(small.started, frames('c', 0, 4), 'nothing that waited ran');
  t.equal(small.fair.backlog, 0, 'and it is all dropped');
  t.same(overflowed, []);
});
