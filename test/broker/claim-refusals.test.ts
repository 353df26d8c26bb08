import t from 'tap';
import { onPostgres, startRelay, writeCounter } from '../helpers/relay.js';
import { connectAgent, rpcErrorOf, WsRpc } from '../helpers/ws-client.js';

// A claim of a task this relay saw claimed is refused from memory (broker/domain/claimed-tasks.ts);
// these tests hold it to the store's answers. Several nodes on PostgreSQL always ask the store.

t.test('a claim that loses to a committed owner is refused without a write, in the words the store uses', async (t) => {
  const dir = t.testdir();
  const claims = writeCounter('task.claim');
  const relay = await startRelay(t, {}, { dir, observeCommit: claims.observeCommit });
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice', tags: ['workers'] });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob', tags: ['workers'] });
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const { task } = await observer.call('task/create', { title: 'deploy', target: 'tag:workers', from: 'ext:ci' });
  const claimed = await alice.rpc.call('task/claim', { id: task.id });
  t.equal(claimed.claimToken, 1);

  const before = claims.total();
  const remembered = await rpcErrorOf(bob.rpc.call('task/claim', { id: task.id }));
  t.equal(remembered.code, -32003);
  t.equal(remembered.error.message, `task ${task.id} is already claimed by alice`);
  t.same(remembered.error.data, { owner: 'alice', status: 'claimed' });
  t.equal(claims.total() - before, onPostgres ? 1 : 0, 'on a store of its own, the refusal took no write');

  // A fresh relay on the same database knows nothing yet: the store refuses, with the same answer.
  await relay.close();
  const again = await startRelay(t, {}, { dir });
  const carol = await connectAgent(t, again.wsUrl, { id: 'carol', tags: ['workers'] });
  const fromStore = await rpcErrorOf(carol.rpc.call('task/claim', { id: task.id }));
  t.equal(fromStore.code, remembered.code);
  t.equal(fromStore.error.message, `task ${task.id} is already claimed by alice`);
  t.same(fromStore.error.data, remembered.error.data);

  // A progress update is remembered too: the refusal names the task's state now.
  const alice2 = await connectAgent(t, again.wsUrl, { id: 'alice', agentToken: alice.token, tags: ['workers'] });
  await alice2.rpc.call('task/update', { id: task.id, claimToken: 1, status: 'in_progress', progress: 40 });
  const inProgress = await rpcErrorOf(carol.rpc.call('task/claim', { id: task.id }));
  t.same(inProgress.error.data, { owner: 'alice', status: 'in_progress' });

  // A finished task is forgotten (pruning may delete it): the store answers, with its last owner.
  await alice2.rpc.call('task/update', { id: task.id, claimToken: 1, status: 'done' });
  const done = await rpcErrorOf(carol.rpc.call('task/claim', { id: task.id }));
  t.equal(done.code, -32003);
  t.same(done.error.data, { owner: 'alice', status: 'done' });
});

t.test('a release, by its owner or by going offline, is never undone by a remembered claim', async (t) => {
  const relay = await startRelay(t);
  const agents = await Promise.all(['w1', 'w2', 'w3'].map((id) => connectAgent(t, relay.wsUrl, { id, tags: ['workers'] })));
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const { task } = await observer.call('task/create', { title: 'rotate keys', target: 'tag:workers', from: 'ext:ci' });
  let token = 0;
  const ROUNDS = 60;
  for (let round = 0; round < ROUNDS; round++) {
    const owner = agents[round % 3]!;
    const next = agents[(round + 1) % 3]!;
    const other = agents[(round + 2) % 3]!;
    const won = await owner.rpc.call('task/claim', { id: task.id });
    t.equal(won.claimToken, ++token, `round ${round}: ${owner.id} claims attempt ${token}`);
    const lost = await rpcErrorOf(next.rpc.call('task/claim', { id: task.id }));
    t.equal(lost.error.data?.owner, owner.id, `round ${round}: ${next.id} loses to ${owner.id}`);
    if (round % 2 === 0) {
      // The owner's release and the next claim race on the wire; once the release is answered a
      // claim must find the task open.
      const racing = other.rpc.call('task/claim', { id: task.id }).then(
        () => 'won',
        (err: { code: number }) => err.code,
      );
      await owner.rpc.call('task/release', { id: task.id, claimToken: token });
      const raced = await racing;
      if (raced === 'won') {
        token++;
        await other.rpc.call('task/release', { id: task.id, claimToken: token });
      } else t.equal(raced, -32003, `round ${round}: a claim racing the release either wins or meets the owner`);
    } else {
      await owner.rpc.call('agent/update', { status: 'offline' });
      await owner.rpc.call('agent/heartbeat', {});
    }
    t.equal((await observer.call('task/get', { id: task.id })).task.status, 'open', `round ${round}: open again`);
  }
  const claims = (await observer.call('event/list', { kind: 'task.claimed', taskId: task.id, limit: 500 })).events;
  t.equal(claims.length, token, 'every claim answered as won is one task.claimed event');
});
