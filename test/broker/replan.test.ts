import t from 'tap';
import { startRelay, writeCounter } from '../helpers/relay.js';
import { connectAgent, rpcErrorOf, WsRpc } from '../helpers/ws-client.js';

// A write planned against a state that moved on before its commit is refused by the store as
// `changed` and planned again (broker/domain/replan.ts): the caller hears the answer for the state
// the write really met, never the refusal itself.

t.test('an update planned against a claim its own release ends is planned again and answered for the open task', async (t) => {
  const taskWrites = writeCounter('task.create', 'task.claim', 'task.release', 'task.transition');
  const relay = await startRelay(t, {}, { observeCommit: taskWrites.observeCommit });
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice', tags: ['workers'] });
  const observer = await WsRpc.connect(t, relay.wsUrl);
  for (let round = 0; round < 5; round++) {
    const { task } = await observer.call('task/create', { title: `deploy ${round}`, target: 'tag:workers', from: 'ext:ci' });
    const { claimToken } = await alice.rpc.call('task/claim', { id: task.id });
    const before = taskWrites.total();
    // Both frames are read in one turn: each is planned against the claimed task before either commits.
    const [released, refused] = await Promise.all([alice.rpc.call('task/release', { id: task.id, claimToken }), rpcErrorOf(alice.rpc.call('task/update', { id: task.id, claimToken, progress: 50 }))]);
    t.equal(released.task.status, 'open', 'the release lands');
    t.equal(taskWrites.total() - before, 2, 'the update reached the store behind the release and was refused there as changed');
    t.equal(refused.code, -32006, 'planned again, the update meets an unclaimed task: its token is stale');
    t.equal(refused.error.message, `claimToken: ${claimToken} is stale for task ${task.id} (current attempt ${claimToken}, unclaimed)`);
    const now = await observer.call('task/get', { id: task.id });
    t.equal(now.task.status, 'open');
    t.equal(now.task.progress, 0, 'nothing of the update was applied');
  }
});
