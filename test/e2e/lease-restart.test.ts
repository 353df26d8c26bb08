import { join } from 'node:path';
import t from 'tap';
import { spawnRelay } from '../helpers/relay-process.js';
import { connectAgent, rpcErrorOf, WsRpc } from '../helpers/ws-client.js';

t.test('a lease survives a relay restart: still in force, still refusing, renewable with its token; tokens keep rising', async (t) => {
  const dbPath = join(t.testdir(), 'relay.db');
  const r1 = await spawnRelay(t, { dbPath });
  const alice = await connectAgent(t, r1.wsUrl, { id: 'alice' });
  const held = await alice.rpc.call('lease/acquire', { resources: ['src/auth/**', 'db:migrations'], ttlMs: 600_000, reason: 'schema change' });

  t.equal(await r1.stop('SIGTERM'), 0, 'the relay process stopped by pid exits cleanly');
  const r2 = await spawnRelay(t, { dbPath });

  const observer = await WsRpc.connect(t, r2.wsUrl);
  const { leases } = await observer.call('lease/list', {});
  t.same(leases, [held.lease], 'the lease is listed as it was granted');
  const bob = await connectAgent(t, r2.wsUrl, { id: 'bob' });
  const refused = await rpcErrorOf(bob.rpc.call('lease/acquire', { resources: ['db:migrations'] }));
  t.equal(refused.code, -32003, 'and still refuses another agent');
  t.match(refused.error.data, { holder: 'alice', reason: 'schema change', expiresAt: held.lease.expiresAt });

  const alice2 = await connectAgent(t, r2.wsUrl, { id: 'alice', agentToken: alice.token });
  const renewed = await alice2.rpc.call('lease/renew', { leaseId: held.lease.id, token: held.token });
  t.ok(renewed.token > held.token, 'its holder renews it with the token from before the restart');
  const other = await bob.rpc.call('lease/acquire', { resources: ['docs/**'] });
  t.ok(other.token > renewed.token, 'the token counter survived: no token is issued twice');
});
