import uWS from 'uWebSockets.js';
import { WS_PATH } from '../../protocol/websocket.js';

/**
 * The transport's ceiling: a bare uWebSockets.js server with no durability and no routing. It
 * answers `agent/register` by subscribing the socket to its tags and `message/send` by publishing
 * a relay-shaped `message/new` frame to the tag's topic (uWS's own C++ fan-out), then acknowledging.
 */
const port = Number(process.argv[2]);
let nextId = 1;
const app = uWS.App();

app.ws<{ n: number }>(WS_PATH, {
  compression: uWS.DISABLED,
  maxPayloadLength: 4 * 1024 * 1024,
  maxBackpressure: 4 * 1024 * 1024,
  idleTimeout: 120,
  message: (ws, raw) => {
    const req = JSON.parse(Buffer.from(raw).toString('utf8')) as { id: number; method: string; params: Record<string, any> };
    if (req.method === 'agent/register') {
      for (const t of req.params.tags ?? []) ws.subscribe(String(t));
      ws.send(JSON.stringify({ jsonrpc: '2.0', id: req.id, result: { agent: { id: req.params.id }, agentToken: 'x', cursor: 0 } }));
      return;
    }
    if (req.method === 'message/send') {
      const p = req.params;
      const id = nextId++;
      const message = {
        id,
        from: p.from ?? 'ext:bench',
        to: p.to,
        channel: null,
        subject: null,
        body: p.body,
        replyTo: null,
        threadId: id,
        claimable: false,
        taskId: null,
        createdAt: Date.now(),
        meta: {},
      };
      const topic = String(p.to).replace(/^tag:/, '');
      app.publish(topic, JSON.stringify({ jsonrpc: '2.0', method: 'message/new', params: { message } }), false);
      ws.send(JSON.stringify({ jsonrpc: '2.0', id: req.id, result: { message, recipients: [], warnings: [] } }));
      return;
    }
    ws.send(JSON.stringify({ jsonrpc: '2.0', id: req.id, error: { code: -32601, message: 'method not found' } }));
  },
});
app.get('/healthz', (res) => {
  res.end('ok');
});
app.listen('127.0.0.1', port, (token) => {
  if (!token) {
    process.stderr.write(`uws-bare: cannot listen on ${port}\n`);
    process.exit(1);
  }
});
process.on('SIGTERM', () => process.exit(0));
