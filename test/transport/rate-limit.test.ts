import t from 'tap';
import { ConnectionBuckets, FLOOD_COOLDOWN_MS, FLOOD_RECONNECT_TOKENS, REFUSALS_BEFORE_CLOSE, REPEAT_REFUSALS_BEFORE_CLOSE, TokenBucket } from '../../broker/transport/rate-limit.js';

/**
 * The WebSocket rate limit's buckets on their own: a connection's burst, and the burst withheld
 * from new connections of an address closed for flooding (the reconnect-for-a-fresh-burst bypass).
 * The cool-down runs on an injected clock; the buckets' refill on the real one, so a test only
 * counts what a bucket admits at once (far less than a token refills in the time it takes).
 */

const RATE = 10; // a token per 100 ms: nothing refills while a test takes its tokens
const BURST = 50;

const conn = (buckets: ConnectionBuckets, address: string) => buckets.forConnection(address).bucket;

function admittedAtOnce(bucket: TokenBucket): number {
  let n = 0;
  while (n < 10 * BURST && bucket.take()) n++;
  return n;
}

t.test('a token bucket admits its burst at once, then refuses', async (t) => {
  t.equal(admittedAtOnce(new TokenBucket(RATE, BURST)), BURST);
  t.equal(admittedAtOnce(new TokenBucket(RATE, BURST, 0)), 0, 'one that starts empty admits nothing at once');
});

t.test('an address closed for flooding gets no burst on new connections until the cool-down ends', async (t) => {
  let now = 1_000_000;
  const buckets = new ConnectionBuckets(RATE, BURST, () => now);
  const open = buckets.forConnection('127.0.0.1').bucket;
  t.equal(admittedAtOnce(conn(buckets, '127.0.0.1')), BURST, 'a first connection gets the burst');

  buckets.closedForFlooding('127.0.0.1');
  t.equal(admittedAtOnce(conn(buckets, '127.0.0.1')), FLOOD_RECONNECT_TOKENS, 'reconnecting right after the close: a few frames at once, not a fresh burst');
  t.equal(admittedAtOnce(conn(buckets, '127.0.0.2')), BURST, 'another address keeps its burst');
  t.equal(admittedAtOnce(open), BURST, 'a connection already open from the flooding address keeps its own bucket');

  now += FLOOD_COOLDOWN_MS - 1;
  t.equal(admittedAtOnce(conn(buckets, '127.0.0.1')), FLOOD_RECONNECT_TOKENS, 'still cooling down just before the end');
  buckets.closedForFlooding('127.0.0.1');
  now += FLOOD_COOLDOWN_MS - 1;
  t.equal(admittedAtOnce(conn(buckets, '127.0.0.1')), FLOOD_RECONNECT_TOKENS, 'a new flooding close starts the cool-down again');
  now += 1;
  t.equal(admittedAtOnce(conn(buckets, '127.0.0.1')), BURST, 'once it has passed, the burst is back');
});

t.test('the reconnect allowance never exceeds the configured burst', async (t) => {
  const buckets = new ConnectionBuckets(RATE, 3);
  buckets.closedForFlooding('127.0.0.1');
  t.equal(admittedAtOnce(conn(buckets, '127.0.0.1')), 3);
});

t.test('a connection from an address closed for flooding gets fewer refusals before it is closed', async (t) => {
  const buckets = new ConnectionBuckets(RATE, BURST);
  t.equal(buckets.forConnection('127.0.0.1').refusalsBeforeClose, REFUSALS_BEFORE_CLOSE);
  buckets.closedForFlooding('127.0.0.1');
  t.equal(buckets.forConnection('127.0.0.1').refusalsBeforeClose, REPEAT_REFUSALS_BEFORE_CLOSE);
  t.equal(buckets.forConnection('127.0.0.2').refusalsBeforeClose, REFUSALS_BEFORE_CLOSE, 'not another address');
});
