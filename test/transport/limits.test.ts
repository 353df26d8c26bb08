import net from 'node:net';
import type { Duplex } from 'node:stream';
import t from 'tap';
import { CLOSE_CODES } from '../../protocol/index.js';
import { chooseTransport } from '../../broker/transport/index.js';
import { startRelay } from '../helpers/relay.js';
import { waitFor } from '../helpers/wait.js';
import { connectAgent, WsRpc } from '../helpers/ws-client.js';

/**
 * The limits and close codes every transport must keep, over real sockets, on whichever transport
 * AGENT_RELAY_TEST_TRANSPORT selects (scripts/test.sh runs this file on both). The rate limit,
 * binary and oversize frames, body limits and 429s are in test/broker and test/http; here is what
 * only the serial files touched: the send-buffer bound (4001, and the SSE stream ended), the idle
 * timeout with pings, the hard frame cap.
 */

const socketOf = (rpc: WsRpc) => (rpc.ws as unknown as { _socket: Duplex })._socket;
// Under the 64 KiB bound the tests set, so the sender's own reply (which echoes the body) fits.
const BIG = 'x'.repeat(40 * 1024);

t.test('start-up logs which transport runs and why', async (t) => {
  const relay = await startRelay(t);
  const line = relay.logs.find((l) => String(l.msg).startsWith('transport: '));
  const wanted = process.env.AGENT_RELAY_TEST_TRANSPORT === 'node' ? 'node' : chooseTransport('auto').kind;
  t.equal(line?.transport, wanted, `runs ${wanted}`);
  t.match(String(line?.msg), new RegExp(`^transport: ${wanted} \\(.+\\)$`), 'and says why');
});

t.test('a client that stops reading is cut at the send-buffer bound with 4001, then told so once it reads', async (t) => {
  const relay = await startRelay(t, { maxBackpressureBytes: 64 * 1024, sync: 'NORMAL' });
  const slow = await connectAgent(t, relay.wsUrl, { id: 'slow' });
  const sender = await connectAgent(t, relay.wsUrl, { id: 'sender' });
  socketOf(slow.rpc).pause();
  // The kernel's socket buffers take a few MB first; 1,000 × 40 KiB is far more than they hold.
  let sent = 0;
  while (relay.core.sessions.isConnected('slow') && sent < 1000) {
    await sender.rpc.call('message/send', { to: 'slow', body: BIG });
    sent++;
  }
  t.notOk(relay.core.sessions.isConnected('slow'), `the relay let go of the slow session (after ${sent} messages)`);
  t.ok(relay.core.sessions.isConnected('sender'), 'the sender is untouched');
  socketOf(slow.rpc).resume();
  t.equal(await slow.rpc.closed, CLOSE_CODES.slowConsumer, 'close code 4001: reconnect and resume by cursor');
  t.ok(slow.rpc.messages().length < sent, 'it did not get everything pushed: the rest waits for its resume');
});

t.test('multi-byte bodies: the send-buffer bound counts bytes, the cut is 4001, and nothing unwritten is recorded pushed', async (t) => {
  const relay = await startRelay(t, { maxBackpressureBytes: 64 * 1024, sync: 'NORMAL' });
  const slow = await connectAgent(t, relay.wsUrl, { id: 'slow' });
  const sender = await connectAgent(t, relay.wsUrl, { id: 'sender' });
  socketOf(slow.rpc).pause();
  // 3 bytes a character in UTF-8: counted in characters, the bound let three times as much through.
  const body = '€'.repeat(BIG.length / 3);
  const ids: number[] = [];
  while (relay.core.sessions.isConnected('slow') && ids.length < 1000) {
    ids.push((await sender.rpc.call('message/send', { to: 'slow', body })).message.id);
  }
  t.notOk(relay.core.sessions.isConnected('slow'), `the relay let go of the slow session (after ${ids.length} messages)`);
  socketOf(slow.rpc).resume();
  t.equal(await slow.rpc.closed, CLOSE_CODES.slowConsumer, 'close code 4001 (not 1006): reconnect and resume by cursor');
  const received = new Set(slow.rpc.messages().map((m) => m.id as number));
  t.ok(received.size < ids.length, `it got ${received.size} of ${ids.length}: the rest waits for its resume`);
  await new Promise((r) => setTimeout(r, 200)); // the pushed state is written at most every 50 ms
  const pushedNotReceived: number[] = [];
  for (const id of ids) {
    const { deliveries } = await sender.rpc.call('message/get', { id });
    const state = (deliveries as Array<{ agentId: string; state: string }>).find((d) => d.agentId === 'slow')?.state;
    if (state === 'pushed' && !received.has(id)) pushedNotReceived.push(id);
  }
  t.same(pushedNotReceived, [], `no message is recorded pushed that the client did not receive (${pushedNotReceived.length} were)`);
});

t.test('an SSE stream whose client stops reading is ended past the send-buffer bound', async (t) => {
  const relay = await startRelay(t, { maxBackpressureBytes: 64 * 1024, sync: 'NORMAL' });
  const sender = await connectAgent(t, relay.wsUrl, { id: 'sender' });
  const socket = net.connect(relay.port, '127.0.0.1');
  t.teardown(() => socket.destroy());
  let text = '';
  socket.on('data', (d: Buffer) => (text += d.toString()));
  const ended = new Promise<void>((resolve) => socket.once('end', resolve));
  socket.write(`GET /api/stream?topics=messages HTTP/1.1\r\nHost: 127.0.0.1:${relay.port}\r\n\r\n`);
  const sse = () => [...relay.core.sessions.sessions()].filter((s) => s.kind === 'sse').length;
  await waitFor(() => sse() === 1 && text.includes('200'), 'the stream to open');
  socket.pause();
  let sent = 0;
  while (sse() === 1 && sent < 1000) {
    await sender.rpc.call('message/send', { to: 'sender', body: BIG });
    sent++;
  }
  t.equal(sse(), 0, `the stream's session is gone (after ${sent} messages)`);
  socket.resume();
  await ended;
  t.match(text, /^HTTP\/1\.1 200/, 'it was a stream');
  t.match(text, 'event: message/new', 'with events before it ended');
  t.match(text, /0\r\n\r\n$/, 'ended as a chunked response, not cut');
});

t.test('a client that answers no pings is cut after the idle timeout; one that answers stays', async (t) => {
  const relay = await startRelay(t, { idleTimeoutSec: 8 });
  const mute = await connectAgent(t, relay.wsUrl, { id: 'mute' });
  const live = await connectAgent(t, relay.wsUrl, { id: 'live' });
  let pings = 0;
  live.rpc.ws.on('ping', () => pings++);
  socketOf(mute.rpc).pause(); // reads nothing, so answers no ping
  const started = Date.now();
  await waitFor(() => !relay.core.sessions.isConnected('mute'), 'the silent client to be cut', 30_000, 100);
  const after = Date.now() - started;
  t.ok(after >= 4000, `not before the timeout (${after} ms)`);
  t.ok(relay.core.sessions.isConnected('live'), 'the client answering pings is still connected');
  t.ok(pings > 0, `it was pinged (${pings})`);
  socketOf(mute.rpc).resume();
  t.equal(await mute.rpc.closed, 1006, 'cut without a close frame, like a dead peer');
});

t.test('a frame over the hard cap (4 × max frame bytes) closes the socket; one under it gets -32005', async (t) => {
  const relay = await startRelay(t, { maxFrameBytes: 1024 });
  const rpc = await WsRpc.connect(t, relay.wsUrl);
  const under = await rpc.sendRaw(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'agent/list', params: { pad: 'y'.repeat(2000) } }));
  t.equal(under.error.code, -32005, 'over the limit but under the cap: a JSON-RPC error');
  rpc.ws.send('z'.repeat(4 * 1024 + 1));
  // uWS cuts the connection (the client sees 1006); ws sends 1009 "message too big" first. Both
  // are standard codes a client reconnects after; the frame is never handled.
  const code = await rpc.closed;
  t.ok(code === 1006 || code === 1009, `past the cap: closed (${code})`);
});
