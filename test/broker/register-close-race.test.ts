import t from 'tap';
import WebSocket from 'ws';
import { startRelay } from '../helpers/relay.js';
import { WsRpc } from '../helpers/ws-client.js';

/**
 * A client that sends agent/register and goes away before the answer: the registration commits,
 * but the closed socket must not be bound to the agent (it would read `connected` forever and
 * swallow every push to the agent, recorded as pushed).
 */
t.test('a socket closed before its registration commits is not bound to the agent', async (t) => {
  // Hold each group commit open for its full 10 ms (the knob the transport uses while frames wait
  // their turn), so the socket's close is processed before the registration commits.
  let hold = true;
  const relay = await startRelay(t, {}, { holdCommitWhile: () => hold });
  const ids: string[] = [];
  for (let i = 0; i < 20; i++) {
    const id = `gone-${i}`;
    ids.push(id);
    const ws = new WebSocket(relay.wsUrl);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    ws.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'agent/register', params: { id } }));
    ws.terminate();
  }
  hold = false;
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const deadline = Date.now() + 3000;
  let connected: string[] = [];
  for (;;) {
    const { agents } = await observer.call('agent/list', {});
    const registered = agents.filter((a: { id: string }) => ids.includes(a.id));
    connected = registered.filter((a: { connected: boolean }) => a.connected).map((a: { id: string }) => a.id);
    if (registered.length === ids.length && connected.length === 0) break;
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  t.comment(`registered ${ids.length} ids, connected ${connected.length}`);
  t.same(connected, [], 'no registration is bound to a socket that already closed');
  const sender = await WsRpc.connect(t, relay.wsUrl);
  const sent = await sender.call('message/send', { to: ids[0], body: 'anyone there?', from: 'ext:probe' });
  await new Promise((r) => setTimeout(r, 200));
  const got = await observer.call('message/get', { id: sent.message.id });
  t.equal(got.deliveries[0]?.state, 'queued', 'a message to such an agent stays queued');
});
