import type * as Uws from 'uWebSockets.js';
import type { RequestHeaders } from './auth.js';
import { admitUpgrade, Connections, hardFrameCap } from './connections.js';
import { createHttpGate } from './http-gate.js';
import { listenOrWait } from './listen.js';
import { readUwsBody } from './uws-body.js';
import { UwsExchange } from './uws-exchange.js';
import { UwsSession, type SocketData } from './uws-session.js';
import type { RunningTransport, TransportDeps } from './types.js';

// uSockets' listen option: bind without SO_REUSEPORT.
const LIBUS_LISTEN_EXCLUSIVE_PORT = 1;

/** The loaded uWebSockets.js module (see uws-loader.ts: it is never imported statically). */
export type UwsModule = typeof Uws;

/** The transport over uWebSockets.js: a thin binding of its callbacks to connections.ts and http-gate.ts. */
export function startUwsTransport(uWS: UwsModule, deps: TransportDeps): Promise<RunningTransport> {
  const { config, log } = deps;
  const app = uWS.App();
  let port = config.port;
  let listenSocket: Uws.us_listen_socket | null = null;
  const connections = new Connections<UwsSession>(deps);

  app.ws<SocketData>('/rpc', {
    compression: uWS.DISABLED,
    maxPayloadLength: hardFrameCap(config.maxFrameBytes),
    maxBackpressure: config.maxBackpressureBytes,
    closeOnBackpressureLimit: 0,
    // uWS wants a multiple of 4.
    idleTimeout: config.idleTimeoutSec - (config.idleTimeoutSec % 4),
    sendPingsAutomatically: true,

    upgrade: (res, req, context) => {
      // Headers live only during this callback: copy them out first.
      const headers: RequestHeaders = {
        authorization: req.getHeader('authorization'),
        origin: req.getHeader('origin'),
        host: req.getHeader('host'),
        protocol: req.getHeader('sec-websocket-protocol'),
      };
      const key = req.getHeader('sec-websocket-key');
      const extensions = req.getHeader('sec-websocket-extensions');
      const admitted = admitUpgrade(headers, deps, port);
      if ('refusal' in admitted) {
        const { refusal } = admitted;
        res.cork(() => {
          res.writeStatus(refusal.status).writeHeader('content-type', 'text/plain').end(`${refusal.reason}\n`);
        });
        return;
      }
      const remote = Buffer.from(res.getRemoteAddressAsText()).toString();
      res.upgrade<SocketData>({ session: null, remote }, key, admitted.protocol, extensions, context);
    },

    open: (ws) => {
      const { remote } = ws.getUserData();
      const session = new UwsSession(ws, remote, connections.limitFor(remote), config.maxBackpressureBytes);
      ws.getUserData().session = session;
      connections.opened(session);
    },

    // The ArrayBuffer is only valid during this callback: connections decodes it before returning.
    message: (ws, message, isBinary) => {
      connections.frame(ws.getUserData().session!, message.byteLength, isBinary, () => Buffer.from(message).toString('utf8'));
    },

    close: (ws, code) => {
      const session = ws.getUserData().session;
      if (session) connections.closed(session, code);
    },
  });

  const gate = createHttpGate(deps, () => port);
  app.any('/*', (res, req) => {
    // Headers and URL live only during this callback: copy them out first.
    const headers: Record<string, string> = {};
    req.forEach((k, v) => {
      headers[k] = v;
    });
    const exchange = new UwsExchange(res, {
      method: req.getMethod().toUpperCase(),
      path: req.getUrl(),
      query: new URLSearchParams(req.getQuery() ?? ''),
      headers,
      maxBackpressureBytes: config.maxBackpressureBytes,
    });
    gate(exchange, Buffer.from(res.getRemoteAddressAsText()).toString(), (max, onDone) => readUwsBody(res, max, onDone));
  });

  // Exclusive: uWS otherwise binds with SO_REUSEPORT, and a second relay on the port would
  // silently share its connections with the first. listen(host, port, options, cb) honours both
  // host and options in these builds (a second exclusive bind fails); the .d.ts omits that form.
  const listen = app.listen.bind(app) as unknown as (host: string, port: number, options: number, cb: (s: Uws.us_listen_socket | false) => void) => void;
  const tryListen = () => new Promise<Uws.us_listen_socket | false>((resolve) => listen(config.host, config.port, LIBUS_LISTEN_EXCLUSIVE_PORT, resolve));
  return listenOrWait(tryListen, config.host, config.port, config.listenWaitMs, log).then((socket) => {
    listenSocket = socket;
    port = uWS.us_socket_local_port(socket as unknown as Uws.us_socket);
    return {
      port,
      stopListening: () => {
        if (listenSocket) uWS.us_listen_socket_close(listenSocket);
        listenSocket = null;
      },
      framesWaiting: () => connections.framesWaiting(),
      closeAll: (code, reason) => connections.closeAll(code, reason),
    };
  });
}
