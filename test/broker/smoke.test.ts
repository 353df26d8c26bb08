import t from 'tap';
import { startRelay } from '../helpers/relay.js';
import { connectAgent } from '../helpers/ws-client.js';

t.test('two agents exchange a direct message over real sockets', async (t) => {
  const relay = await startRelay(t);
  const a = await connectAgent(t, relay.wsUrl, { id: 'alice', label: 'Alice' });
  const b = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const sent = await a.rpc.call('message/send', { to: 'bob', body: 'hello' });
  t.same(sent.recipients, ['bob']);
  await b.rpc.until(() => b.rpc.messages().length === 1);
  t.equal(b.rpc.messages()[0]!.body, 'hello');
  t.equal(b.rpc.messages()[0]!.from, 'alice');
});
