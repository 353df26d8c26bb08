import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { startPostgres } from '../helpers/postgres.js';
import { describeStore } from '../../broker/config.js';
import { startRelay } from '../helpers/relay.js';
import { spawnRelay } from '../helpers/relay-process.js';
import { waitFor } from '../helpers/wait.js';
import { connectAgent } from '../helpers/ws-client.js';

/** A relay on AGENT_RELAY_STORE=postgres://…: the one node of its database, until nodes share a change feed. */
const server = await startPostgres(t);

t.test('a relay serves a PostgreSQL database; a second node on it is refused, and may start once the first stopped', async (t) => {
  const store = await server.freshDatabase();
  const first = await startRelay(t, { store });
  const alice = await connectAgent(t, first.wsUrl, { id: 'alice' });
  const bob = await connectAgent(t, first.wsUrl, { id: 'bob' });
  const sent = await alice.rpc.call('message/send', { to: 'bob', body: 'on postgres' });
  await bob.rpc.until(() => bob.rpc.messages().length === 1, 5000, 'the push to bob');
  t.equal(bob.rpc.messages()[0]!.id, sent.message.id, 'bob is pushed the message');

  await t.rejects(startRelay(t, { store }), /another relay node is serving this database/, 'a second node is refused at start-up, saying why');

  await first.close();
  const again = await startRelay(t, { store });
  const bob2 = await connectAgent(t, again.wsUrl, { id: 'bob', agentToken: bob.token, since: 0 });
  t.equal(bob2.cursor >= sent.message.id, true, 'the data is still there');
  const listed = await bob2.rpc.call('message/list', { since: 0 });
  t.same(
    listed.messages.map((m: { body: string }) => m.body),
    ['on postgres'],
    'and the message with it',
  );
});

t.test('the start-up line names the store without its password', async (t) => {
  t.equal(describeStore({ store: 'postgres://relay:s3cret@db.internal:5432/relay', dbPath: '/unused' }), 'postgres://relay:***@db.internal:5432/relay');
  t.equal(describeStore({ store: undefined, dbPath: '/home/me/.agent-relay/relay.db' }), '/home/me/.agent-relay/relay.db', 'SQLite: the file');
});

t.test('a callback retry due while PostgreSQL is down: the relay process stays up, and the retry is sent once it is back', async (t) => {
  const store = await server.freshDatabase();
  // The receiver fails the first attempt, so a retry is due within a second (backoff base 1 s).
  const hits: string[] = [];
  const rx = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      hits.push(String(req.headers['webhook-id']));
      res.writeHead(hits.length === 1 ? 500 : 200).end();
    });
  });
  await new Promise<void>((r) => rx.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => rx.close(() => r())));
  const url = `http://127.0.0.1:${(rx.address() as AddressInfo).port}/hook`;
  const relay = await spawnRelay(t, {
    dbPath: join(t.testdir(), 'unused.db'),
    env: { AGENT_RELAY_STORE: store, AGENT_RELAY_CALLBACK_SECRET: `whsec_${Buffer.alloc(32, 7).toString('base64')}`, AGENT_RELAY_ALLOW_PRIVATE_CALLBACKS: 'true' },
  });
  let exitedWith: unknown = null;
  void relay.exited.then((e) => (exitedWith = e));
  const boss = await connectAgent(t, relay.wsUrl, { id: 'boss' });
  const { task } = await boss.rpc.call('task/create', { title: 'build it', target: 'boss', callbackUrl: url });
  await waitFor(() => hits.length === 1, 'the first attempt (answered 500)');
  // The database stops only once that attempt's outcome is stored: an outcome lost with the database
  // leaves its entry leased, sent again only when the lease ends (3 x the 10 s attempt timeout).
  const recorded = async () => ((await boss.rpc.call('task/get', { id: task.id })).callbacks as { lastStatus: number | null }[]).some((c) => c.lastStatus === 500);
  await waitFor(recorded, 'the first attempt recorded as answered 500');
  await server.stop();
  // The retry's pass falls in this window: its reads fail with the server gone.
  await sleep(2500);
  await server.start();
  await waitFor(() => hits.length === 2 || exitedWith !== null, 'the retry after PostgreSQL is back', 20_000);
  t.equal(exitedWith, null, `the relay process is still running${exitedWith ? `: it exited ${JSON.stringify(exitedWith)}; stderr: ${relay.stderr().slice(-1500)}` : ''}`);
  t.same(hits, [hits[0], hits[0]], 'the same callback (one webhook-id), sent again once the store was back');
  t.match(relay.stdout(), /a callback dispatcher pass failed; trying again/, 'the failed pass is logged');
  t.equal(await relay.stop(), 0, 'and it shuts down cleanly');
});
