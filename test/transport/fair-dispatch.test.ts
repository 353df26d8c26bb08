import t from 'tap';
import { FairDispatch } from '../../broker/transport/fair-dispatch.js';

/**
 * FairDispatch on its own, with plain objects for connections: which frames start on arrival,
 * which at the end of the turn, and in what order. The end of a turn is FairDispatch's own
 * setImmediate; awaiting one more setImmediate lands right after it.
 */

interface Conn {
  name: string;
  closed: boolean;
}

const PER_TURN = 4;
const LONE_PER_TURN = 40;
const endOfTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

function setup() {
  const started: string[] = [];
  const overflowed: string[] = [];
  const fair = new FairDispatch<Conn>((conn, text) => started.push(`${conn.name}:${text}`), PER_TURN, LONE_PER_TURN, 1_000_000, (conn) => overflowed.push(conn.name));
  const conn = (name: string): Conn => ({ name, closed: false });
  const burst = (c: Conn, n: number) => {
    for (let i = 0; i < n; i++) fair.submit(c, String(i));
  };
  return { fair, started, overflowed, conn, burst };
}

const frames = (name: string, from: number, to: number) => Array.from({ length: to - from }, (_, i) => `${name}:${from + i}`);

t.test('a lone connection is not deferred: its whole burst starts in the same turn, in order', async (t) => {
  const { fair, started, conn, burst } = setup();
  const a = conn('a');
  burst(a, 20);
  t.same(started, frames('a', 0, PER_TURN), 'perTurn frames start on arrival (another socket may still be read this turn)');
  t.equal(fair.backlog, 20 - PER_TURN);
  await endOfTurn();
  t.same(started, frames('a', 0, 20), 'nobody else waits: the rest start at the end of the same turn, in order');
  t.equal(fair.backlog, 0);

  // Next turn, still alone: its new burst again starts within that turn.
  burst(a, 10);
  await endOfTurn();
  t.equal(started.length, 30, 'and so does its next burst');
});

t.test('two busy connections alternate, perTurn frames each per turn, each in its own order', async (t) => {
  const { fair, started, conn, burst } = setup();
  const a = conn('a');
  const b = conn('b');
  burst(a, 12);
  burst(b, 12);
  t.same(started, [...frames('a', 0, 4), ...frames('b', 0, 4)], 'on arrival: perTurn each');
  await endOfTurn();
  t.same(started.slice(8), [...frames('a', 4, 8), ...frames('b', 4, 8)], 'end of turn: both wait, so perTurn each');
  t.equal(fair.backlog, 8, 'the rest waits for the next turn');
  await endOfTurn();
  t.same(started.slice(16), [...frames('a', 8, 12), ...frames('b', 8, 12)]);
  t.equal(fair.backlog, 0);
});

t.test('once the other connection has nothing waiting, the busy one is no longer deferred', async (t) => {
  const { fair, started, conn, burst } = setup();
  const a = conn('a');
  const b = conn('b');
  burst(a, 30);
  burst(b, 6);
  await endOfTurn();
  t.same(started.slice(8), [...frames('a', 4, 8), ...frames('b', 4, 6)], 'contended: perTurn for a, the rest of b');
  await endOfTurn();
  t.same(started.slice(14), frames('a', 8, 30), 'a alone: all its waiting frames start in this turn');
  t.equal(fair.backlog, 0);
});

t.test('a frame of another connection arriving during a burst starts before the burst’s rest', async (t) => {
  const { started, conn, burst } = setup();
  const a = conn('a');
  const b = conn('b');
  burst(a, 30);
  burst(b, 1);
  t.same(started, [...frames('a', 0, 4), 'b:0'], 'b started after perTurn of a’s frames, not after all of them');
  await endOfTurn();
  t.equal(started.length, 31, 'then a, alone, finishes in the same turn');
});

t.test('a lone connection starts at most lonePerTurn at the end of a turn; a later frame waits behind no more', async (t) => {
  const { fair, started, conn, burst } = setup();
  const a = conn('a');
  const b = conn('b');
  burst(a, 100);
  await endOfTurn();
  t.same(started, frames('a', 0, PER_TURN + LONE_PER_TURN), 'perTurn on arrival, lonePerTurn at the end of the turn');
  t.equal(fair.backlog, 100 - PER_TURN - LONE_PER_TURN);
  burst(b, 1);
  t.equal(started.at(-1), 'b:0', 'a frame of another connection in the next turn starts on arrival, ahead of the rest');
  await endOfTurn();
  t.same(started.slice(45), frames('a', 44, 84), 'b has nothing waiting: a is alone again');
  await endOfTurn();
  t.same(started.slice(85), frames('a', 84, 100));
  t.equal(fair.backlog, 0);
});
