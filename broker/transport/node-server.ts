import http, { type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { StartupError } from '../startup-error.js';
import type { RequestHeaders } from './auth.js';
import { admitUpgrade, Connections, hardFrameCap } from './connections.js';
import { createHttpGate } from './http-gate.js';
import { listenOrWait } from './listen.js';
import { NodeExchange, readNodeBody } from './node-exchange.js';
import { NodeSession } from './node-session.js';
import type { RunningTransport, TransportDeps } from './types.js';

/** The client address as uWS reports it: an IPv4 peer on a dual-stack socket without its ::ffff: prefix. */
function remoteOf(socket: { remoteAddress?: string | undefined }): string {
  const a = socket.remoteAddress ?? '';
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}

function header(v: string | string[] | undefined): string {
  return Array.isArray(v) ? v.join(', ') : (v ?? '');
}

/** Answer an upgrade that is not accepted with a plain HTTP response, then close the connection. */
function refuseUpgrade(socket: Duplex, status: string, reason: string): void {
  const body = `${reason}\n`;
  socket.end(`HTTP/1.1 ${status}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
}

/**
 * The portable transport, over node:http and `ws`: it runs wherever Node does (no native build),
 * with the same routes, limits and close codes as the uWS one; a thin binding of their events to
 * connections.ts and http-gate.ts.
 */
export function startNodeTransport(deps: TransportDeps): Promise<RunningTransport> {
  const { config, log } = deps;
  let port = config.port;
  const connections = new Connections<NodeSession>(deps);
  const gate = createHttpGate(deps, () => port);

  // requireHostHeader off: a request without Host gets the gate's 403 naming it, as on uWS, not node's bare 400.
  const server = http.createServer({ requireHostHeader: false }, (req, res) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) headers[k] = header(v);
    const exchange = new NodeExchange(res, {
      method: (req.method ?? 'GET').toUpperCase(),
      path: q >= 0 ? url.slice(0, q) : url,
      query: new URLSearchParams(q >= 0 ? url.slice(q + 1) : ''),
      headers,
      maxBackpressureBytes: config.maxBackpressureBytes,
    });
    gate(exchange, remoteOf(req.socket), (max, onDone) => readNodeBody(req, max, onDone));
  });

  const accepted = new WeakMap<IncomingMessage, string>();
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: hardFrameCap(config.maxFrameBytes),
    perMessageDeflate: false,
    clientTracking: false,
    // admitUpgrade already chose; false sends no Sec-WebSocket-Protocol header.
    handleProtocols: (_offered, req) => accepted.get(req) || false,
  });

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => undefined); // a reset before or during the handshake is the client's business
    if ((req.url ?? '').split('?')[0] !== '/rpc') {
      refuseUpgrade(socket, '404 Not Found', 'no WebSocket route here: connect to /rpc');
      return;
    }
    const h: RequestHeaders = {
      authorization: header(req.headers.authorization),
      origin: header(req.headers.origin),
      host: header(req.headers.host),
      protocol: header(req.headers['sec-websocket-protocol']),
    };
    const admitted = admitUpgrade(h, deps, port);
    if ('refusal' in admitted) {
      refuseUpgrade(socket, admitted.refusal.status, admitted.refusal.reason);
      return;
    }
    accepted.set(req, admitted.protocol);
    wss.handleUpgrade(req, socket, head, (ws) => {
      const remote = remoteOf(req.socket);
      const session: NodeSession = new NodeSession(ws, socket, remote, connections.limitFor(remote), config.maxBackpressureBytes, (code) => connections.closed(session, code));
      connections.opened(session);
      const heard = () => {
        session.lastHeard = Date.now();
      };
      ws.on('message', (data: Buffer, isBinary: boolean) => {
        heard();
        connections.frame(session, data.byteLength, isBinary, () => data.toString('utf8'));
      });
      ws.on('pong', heard);
      ws.on('ping', heard);
      // ws closes the socket itself after a protocol error (oversize frame: 1009, bad UTF-8: 1007).
      ws.on('error', (err) => log.debug({ err, session: session.id }, 'websocket error'));
      ws.on('close', (code: number) => connections.closed(session, code));
    });
  });

  // Idle timeout with pings, as uWS's idleTimeout + sendPingsAutomatically: a client silent for half
  // the timeout is pinged, one silent for all of it is cut.
  const idleMs = config.idleTimeoutSec * 1000;
  const sweep = setInterval(() => {
    const now = Date.now();
    for (const s of connections.sessions()) {
      const silent = now - s.lastHeard;
      if (silent >= idleMs) s.cut();
      else if (silent >= idleMs / 2) s.ping();
    }
  }, idleMs / 4);
  sweep.unref();

  const tryListen = () =>
    new Promise<true | false>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        server.off('listening', onListening);
        if (err.code === 'EADDRINUSE') resolve(false);
        else reject(new StartupError(`cannot listen on ${config.host}:${config.port}: ${err.code ?? err.message}`));
      };
      const onListening = () => {
        server.off('error', onError);
        resolve(true);
      };
      server.once('error', onError);
      server.once('listening', onListening);
      // Node sets SO_REUSEADDR (TIME_WAIT leftovers do not block it) and never SO_REUSEPORT unless
      // asked: a second listener gets EADDRINUSE.
      server.listen({ host: config.host, port: config.port, exclusive: true });
    });
  return listenOrWait(tryListen, config.host, config.port, config.listenWaitMs, log).then(() => {
    const address = server.address();
    port = typeof address === 'object' && address ? address.port : config.port;
    return {
      port,
      stopListening: () => {
        clearInterval(sweep);
        server.close();
      },
      framesWaiting: () => connections.framesWaiting(),
      closeAll: (code, reason) => {
        connections.closeAll(code, reason);
        server.closeIdleConnections();
      },
    };
  });
}
