/**
 * The slow subscriber of slow-consumer.serial.ts, run as its own process so that its catch-up
 * (megabytes of backlog parsed at once) does not block the event loop that measures the fast
 * subscribers' latency: the test is about what the relay does to them, not what the test's own
 * process does. `node --import tsx slow-subscriber.ts URL`; it registers as `slow` (tag `sub`)
 * through the client library. Lines on stdin: `pause` stops reading its socket, `resume` reads
 * again, `quit` closes. Lines on stdout: `ready`, `m ID` per message delivered, `c CODE` per
 * disconnect.
 */
import WebSocket from 'ws';
import { createRelayClient, type WebSocketLike } from '../../clients/index.js';

const url = process.argv[2]!;
const sockets: WebSocket[] = [];
const slow = createRelayClient({
  url,
  agent: { id: 'slow', tags: ['sub'] },
  reconnect: { initialMs: 100, maxMs: 1000 },
  heartbeatMs: 0,
  createSocket: (u, protocols) => {
    const ws = new WebSocket(u, protocols);
    sockets.push(ws);
    return ws as unknown as WebSocketLike;
  },
});
const socketOf = (ws: WebSocket) => (ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;

let out: string[] = [];
const flush = () => {
  if (out.length) process.stdout.write(out.join(''));
  out = [];
};
setInterval(flush, 20).unref();
slow.on('message', (m) => out.push(`m ${m.id}\n`));
slow.on('disconnected', (d) => out.push(`c ${d.code}\n`));

// The socket paused is the one resumed: by then the relay has cut it, and reading again is how
// the client sees the cut and reconnects.
let stalled: WebSocket | null = null;
process.stdin.setEncoding('utf8').on('data', (s: string) => {
  for (const line of s.split('\n')) {
    if (line === 'pause') {
      stalled = sockets.at(-1)!;
      socketOf(stalled).pause();
    }
    if (line === 'resume' && stalled) socketOf(stalled).resume();
    if (line === 'quit') {
      flush();
      void slow.close().then(() => process.exit(0));
    }
  }
});

await slow.connect();
process.stdout.write('ready\n');
