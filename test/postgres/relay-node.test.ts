import t from 'tap';
import { startPostgres } from '../helpers/postgres.js';
import { describeStore } from '../../broker/config.js';
import { startRelay } from '../helpers/relay.js';
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
