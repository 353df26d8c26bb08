import t from 'tap';
import { startRelay } from '../helpers/relay.js';
import { connectAgent, WsRpc } from '../helpers/ws-client.js';

/**
 * A batch's entries run in order, each after the previous one answered: an entry sees the session
 * state earlier entries set. Before, entries ran concurrently and the send below went out as
 * ext:observer although the same frame had just registered the connection as alice.
 */

const entry = (id: number, method: string, params: unknown) => ({ jsonrpc: '2.0', id, method, params });

t.test('[agent/register, message/send] in one frame sends as the agent just registered', async (t) => {
  const relay = await startRelay(t);
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const rpc = await WsRpc.connect(t, relay.wsUrl);
  const replies = (await rpc.sendRaw(JSON.stringify([entry(1, 'agent/register', { id: 'alice' }), entry(2, 'message/send', { to: 'bob', body: 'hi from alice' })]))) as any[];
  t.same(
    replies.map((r) => r.id),
    [1, 2],
    'answers come in request order',
  );
  t.equal(replies[0].result.agent.id, 'alice', 'the register entry registered alice');
  t.equal(replies[1].result.message.from, 'alice', 'the send entry went out as alice, not ext:observer');
  await bob.rpc.until(() => bob.rpc.messages().length === 1, 3000, 'the message at bob');
  t.equal(bob.rpc.messages()[0]!.from, 'alice');
});

t.test("a later entry sees an earlier entry's write", async (t) => {
  const relay = await startRelay(t);
  const rpc = await WsRpc.connect(t, relay.wsUrl);
  const replies = (await rpc.sendRaw(
    JSON.stringify([entry(1, 'agent/register', { id: 'carol' }), entry(2, 'message/send', { to: 'carol', body: 'note to self' }), entry(3, 'message/list', { unread: true })]),
  )) as any[];
  t.same(
    replies[2].result.messages.map((m: any) => m.body),
    ['note to self'],
    'the list after the send, as carol, holds it',
  );
});
