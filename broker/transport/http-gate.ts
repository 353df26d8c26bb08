import { httpErrorReply, INGRESS_PATH, RelayError } from '../../protocol/index.js';
import type { HttpExchange } from '../domain/ports.js';
import { checkRequest } from './auth.js';
import { Credentials } from './credentials.js';
import { ClientRateLimiter } from './rate-limit.js';
import type { TransportDeps } from './types.js';

// The dashboard page and its bundles hold no data: served without the token, the page asks for it.
const DASHBOARD_PATH = /^\/(index\.html)?$|^\/assets\/[A-Za-z0-9._-]+$/;

export class BodyTooLarge extends Error {}

export type BodyDone = (body: Buffer | BodyTooLarge) => void;

/** Reads the request body, refusing it past `maxBytes` while reading; calls `onDone` once. */
export type BodyReader = (maxBytes: number, onDone: BodyDone) => void;

/**
 * Collects body chunks up to a hard limit: the chunk that passes it ends the read with
 * BodyTooLarge at once, so at most max + one chunk is ever looked at and nothing past max is kept.
 */
export class BodyCollector {
  private readonly chunks: Buffer[] = [];
  private size = 0;
  private done = false;

  constructor(
    private readonly maxBytes: number,
    private readonly onDone: BodyDone,
  ) {}

  /** One chunk; it is copied (uWS reuses its memory after the callback). */
  add(chunk: ArrayBuffer | Uint8Array, isLast: boolean): void {
    if (this.done) return;
    this.size += chunk.byteLength;
    if (this.size > this.maxBytes) {
      this.tooLarge();
      return;
    }
    this.chunks.push(Buffer.from(chunk instanceof ArrayBuffer ? new Uint8Array(chunk) : chunk));
    if (isLast) {
      this.done = true;
      this.onDone(Buffer.concat(this.chunks, this.size));
    }
  }

  /** Refuse without reading (e.g. a Content-Length already over the limit). */
  tooLarge(): void {
    if (this.done) return;
    this.done = true;
    this.chunks.length = 0;
    this.onDone(new BodyTooLarge(`body over ${this.maxBytes} bytes`));
  }
}

/** A refusal (or failure) as the contract's HTTP error answer (protocol/error-reply.ts). */
function replyError(exchange: HttpExchange, err: unknown, headers: Record<string, string> = {}): void {
  const reply = httpErrorReply(err);
  exchange.reply(reply.status, { ...reply.headers, ...headers }, reply.body);
}

/** An exchange whose body the gate fills in once it is read. */
export interface GateExchange extends HttpExchange {
  body: Buffer;
}

/**
 * The transport-neutral half of every HTTP route: per-address rate limit (429 + Retry-After),
 * admission (token, Host, Origin), the body limit (413), the caller's credentials (Credentials:
 * once, for every route), then the relay's HttpHandler, whose
 * failure becomes a 500 that leaks nothing. `port` is read per request (it is known only once
 * listening).
 */
export function createHttpGate(deps: TransportDeps, port: () => number): (exchange: GateExchange, remote: string, readBody: BodyReader) => void {
  const { config, log } = deps;
  const limiter = new ClientRateLimiter(config.httpRateLimitPerSec, config.httpRateBurst);
  const credentials = new Credentials(deps.domain.agents, deps.domain.integrations, log, () => deps.domain.now());
  const dispatch = (exchange: GateExchange) => {
    credentials.http(exchange).then(
      (caller) =>
        Promise.resolve(deps.http(exchange, caller)).catch((err: unknown) => {
          log.error({ err, path: exchange.path }, 'http handler failed');
          replyError(exchange, err);
        }),
      (err: unknown) => replyError(exchange, err),
    );
  };
  return (exchange, remote, readBody) => {
    const retryAfter = limiter.check(remote);
    if (retryAfter !== null) {
      replyError(
        exchange,
        new RelayError('rateLimited', `rate limited: more than ${config.httpRateLimitPerSec} requests/s from this address; retry after ${retryAfter} s`, { retryAfterMs: retryAfter * 1000 }),
      );
      return;
    }
    const { headers, method, path } = exchange;
    const refusal = checkRequest({ authorization: headers.authorization ?? '', origin: headers.origin ?? '', host: headers.host ?? '', protocol: '' }, config, port(), {
      ownAuth: INGRESS_PATH.test(path) || ((method === 'GET' || method === 'HEAD') && DASHBOARD_PATH.test(path)),
    });
    if (refusal) {
      replyError(exchange, new RelayError(refusal.status.startsWith('401') ? 'unauthorized' : 'forbidden', refusal.reason));
      return;
    }
    if (method === 'GET' || method === 'HEAD' || method === 'DELETE' || method === 'OPTIONS') {
      dispatch(exchange);
      return;
    }
    readBody(config.maxFrameBytes, (body) => {
      if (body instanceof BodyTooLarge) {
        replyError(exchange, new RelayError('tooLarge', `too large: body exceeds ${config.maxFrameBytes} bytes`), { connection: 'close' });
        return;
      }
      exchange.body = body;
      dispatch(exchange);
    });
  };
}
