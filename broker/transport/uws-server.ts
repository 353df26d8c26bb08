import uWS from 'uWebSockets.js';
import { CLOSE_CODES, ERRORS, INGRESS_PATH, WS_SUBPROTOCOL } from '../../protocol/index.js';
import type { RelayConfig } from '../config.js';
import type { CallContext } from '../domain/context.js';
import type { RelayCore } from '../domain/core.js';
import type { HttpHandler } from '../domain/ports.js';
import { noteDisconnected } from '../domain/presence.js';
import type { Logger } from '../logger.js';
import { checkRequest, type RequestHeaders } from './auth.js';
import { somethingListens } from './port-probe.js';
import { ClientRateLimiter, ConnectionBuckets } from './rate-limit.js';
import { FairDispatch } from './fair-dispatch.js';
import { BodyTooLarge, readBody } from './http-body.js';
import { UwsExchange } from './http-exchange.js';
import type { RpcDispatcher } from './rpc-dispatch.js';
import { WsSession, type SocketData } from './ws-session.js';

/** This is the only module that imports uWebSockets.js. */

export interface TransportDeps {
  core: RelayCore;
  dispatcher: RpcDispatcher;
  config: RelayConfig;
  log: Logger;
  http: HttpHandler;
}

export interface RunningTransport {
  port: number;
  /** Stop accepting connections and requests. */
  stopListening(): void;
  /** Close every live WebSocket with the given code. */
  closeAll(code: number, reason: string): void;
}

// uWS closes frames over its own limit without a reply; ours is lower so most oversize frames get a JSON-RPC error.
const UWS_PAYLOAD_HEADROOM = 4;
// Frames one connection may start per event-loop turn before the rest wait their turn: about a
// millisecond of work, so a burst cannot hold up other connections for long.
const FRAMES_PER_TURN = 32;
// The dashboard page and its bundles hold no data: served without the token, the page asks for it.
const DASHBOARD_PATH = /^\/(index\.html)?$|^\/assets\/[A-Za-z0-9._-]+$/;

function errorFrame(code: number, message: string): string {
  return JSON.stringify({ jsonrpc: '2.0', id: null, error: { code, message } });
}

export function startTransport(deps: TransportDeps): Promise<RunningTransport> {
  const { core, dispatcher, config, log } = deps;
  const app = uWS.App();
  let port = config.port;
  let listenSocket: uWS.us_listen_socket | null = null;
  const sockets = new Set<WsSession>();

  const handle = (session: WsSession, text: string) => {
    const ctx: CallContext = { session, agentId: null, transport: 'ws' };
    dispatcher.handleFrame(text, ctx).then(
      (response) => {
        if (response !== null) session.send(response);
      },
      (err: unknown) => log.error({ err }, 'frame handling failed'),
    );
  };
  // One connection's burst no longer runs ahead of everyone else's frames (see fair-dispatch.ts).
  const buckets = new ConnectionBuckets(config.rateLimitPerSec, config.rateBurst);
  const closeFlooder = (session: WsSession, reason: string) => {
    buckets.closedForFlooding(session.remote);
    session.close(CLOSE_CODES.rateLimited, reason);
  };
  const fair = new FairDispatch<WsSession>(handle, FRAMES_PER_TURN, config.maxBackpressureBytes, (session) =>
    closeFlooder(session, 'rate limited: too many frames waiting; slow down and reconnect'),
  );
  // A burst spread over several turns still shares one group commit (see WriteQueue.holdWhile).
  core.queue.holdWhile = () => fair.backlog > 0;

  app.ws<SocketData>('/rpc', {
    compression: uWS.DISABLED,
    maxPayloadLength: Math.min(config.maxFrameBytes * UWS_PAYLOAD_HEADROOM, 256 * 1024 * 1024),
    maxBackpressure: config.maxBackpressureBytes,
    closeOnBackpressureLimit: 0,
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
      const refusal = checkRequest(headers, config, port);
      if (refusal) {
        log.info({ reason: refusal.reason, origin: headers.origin, host: headers.host }, 'upgrade refused');
        res.cork(() => {
          res.writeStatus(refusal.status).writeHeader('content-type', 'text/plain').end(`${refusal.reason}\n`);
        });
        return;
      }
      const offered = headers.protocol.split(',').map((p) => p.trim());
      const protocol = offered.includes(WS_SUBPROTOCOL) ? WS_SUBPROTOCOL : '';
      const remote = Buffer.from(res.getRemoteAddressAsText()).toString();
      res.upgrade<SocketData>({ session: null, remote }, key, protocol, extensions, context);
    },

    open: (ws) => {
      const { remote } = ws.getUserData();
      const session = new WsSession(ws, remote, buckets.forConnection(remote), config.maxBackpressureBytes);
      ws.getUserData().session = session;
      sockets.add(session);
      core.sessions.add(session);
    },

    message: (ws, message, isBinary) => {
      const session = ws.getUserData().session!;
      if (!session.limit.bucket.take()) {
        session.overLimit++;
        if (session.overLimit > session.limit.refusalsBeforeClose) {
          // Frames admitted before the flood still waiting their turn are answered first.
          fair.closeWhenDrained(session, () => closeFlooder(session, 'rate limited: slow down and reconnect'));
          return;
        }
        session.send(errorFrame(ERRORS.tooLarge.code, `rate limited: more than ${config.rateLimitPerSec} frames/s; slow down`));
        return;
      }
      // An admitted frame pays down one refusal instead of forgiving them all: a flood that goes on
      // while the bucket refills a token every few ms used to reset the count and was never closed
      // (found by the reliability suite's rate-limit test). Now only a client that stays mostly
      // under its rate works its count back to zero.
      if (session.overLimit > 0) session.overLimit--;
      if (isBinary) {
        session.send(errorFrame(ERRORS.invalidRequest.code, 'invalid request: binary frames are not accepted; send JSON text'));
        return;
      }
      if (message.byteLength > config.maxFrameBytes) {
        session.send(errorFrame(ERRORS.tooLarge.code, `too large: frame of ${message.byteLength} bytes exceeds ${config.maxFrameBytes}`));
        return;
      }
      // The ArrayBuffer is only valid during this callback: decode now.
      fair.submit(session, Buffer.from(message).toString('utf8'));
    },

    close: (ws, code) => {
      const session = ws.getUserData().session;
      if (!session) return;
      session.closed = true;
      sockets.delete(session);
      const agentId = core.sessions.remove(session);
      if (agentId) noteDisconnected(core, agentId);
      log.debug({ session: session.id, agentId, code }, 'socket closed');
    },
  });

  const httpLimiter = new ClientRateLimiter(config.httpRateLimitPerSec, config.httpRateBurst);
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
    const retryAfter = httpLimiter.check(Buffer.from(res.getRemoteAddressAsText()).toString());
    if (retryAfter !== null) {
      exchange.reply(429, { 'content-type': 'application/json', 'retry-after': String(retryAfter) }, JSON.stringify({ error: { code: ERRORS.tooLarge.code, message: `rate limited: more than ${config.httpRateLimitPerSec} requests/s from this address; retry after ${retryAfter} s` } }));
      return;
    }
    const refusal = checkRequest(
      { authorization: headers.authorization ?? '', origin: headers.origin ?? '', host: headers.host ?? '', protocol: '' },
      config,
      port,
      { ownAuth: INGRESS_PATH.test(exchange.path) || ((exchange.method === 'GET' || exchange.method === 'HEAD') && DASHBOARD_PATH.test(exchange.path)) },
    );
    if (refusal) {
      const status = refusal.status.startsWith('401') ? 401 : 403;
      exchange.reply(status, { 'content-type': 'application/json' }, JSON.stringify({ error: { code: ERRORS.unauthorized.code, message: refusal.reason } }));
      return;
    }
    const dispatch = () => {
      Promise.resolve(deps.http(exchange)).catch((err: unknown) => {
        log.error({ err, path: exchange.path }, 'http handler failed');
        exchange.reply(500, { 'content-type': 'application/json' }, JSON.stringify({ error: { code: ERRORS.internal.code, message: 'internal error' } }));
      });
    };
    if (exchange.method === 'GET' || exchange.method === 'HEAD' || exchange.method === 'DELETE' || exchange.method === 'OPTIONS') {
      dispatch();
      return;
    }
    readBody(res, config.maxFrameBytes, (body) => {
      if (body instanceof BodyTooLarge) {
        exchange.reply(413, { 'content-type': 'application/json', connection: 'close' }, JSON.stringify({ error: { code: ERRORS.tooLarge.code, message: `too large: body exceeds ${config.maxFrameBytes} bytes` } }));
        return;
      }
      exchange.body = body;
      dispatch();
    });
  });

  return listenOrWait(app, config.host, config.port, config.listenWaitMs, log).then((socket) => {
    listenSocket = socket;
    port = uWS.us_socket_local_port(socket as unknown as uWS.us_socket);
    return {
      port,
      stopListening: () => {
        if (listenSocket) uWS.us_listen_socket_close(listenSocket);
        listenSocket = null;
      },
      closeAll: (code, reason) => {
        for (const s of [...sockets]) s.close(code, reason);
      },
    };
  });
}

// Linux keeps a closed connection's port in TIME_WAIT for 60 s, and this uWS build sets no
// SO_REUSEADDR, so a restart on a fixed port right after a run with clients cannot bind yet.
const RELISTEN_EVERY_MS = 500;

/** Listen; while the port is only held by TIME_WAIT leftovers (nobody answers on it), keep trying. */
async function listenOrWait(app: uWS.TemplatedApp, host: string, wanted: number, waitMs: number, log: Logger): Promise<uWS.us_listen_socket> {
  const deadline = Date.now() + waitMs;
  let warned = false;
  for (;;) {
    const socket = await new Promise<uWS.us_listen_socket | false>((resolve) => app.listen(host, wanted, resolve));
    if (socket) {
      if (warned) log.info({ port: wanted }, 'port free again: listening');
      return socket;
    }
    const inUse = wanted === 0 || (await somethingListens(host, wanted));
    if (inUse || Date.now() > deadline) throw new Error(`cannot listen on ${host}:${wanted}: address in use or not available`);
    if (!warned) log.warn({ port: wanted }, `port still held by connections of the previous run (TIME_WAIT); retrying for up to ${Math.round(waitMs / 1000)} s`);
    warned = true;
    await new Promise((resolve) => setTimeout(resolve, RELISTEN_EVERY_MS));
  }
}

