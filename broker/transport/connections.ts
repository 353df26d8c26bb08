import { CLOSE_CODES, errorReply, RelayError, WS_SUBPROTOCOL } from '../../protocol/index.js';
import type { Caller } from '../domain/context.js';
import { detach } from '../domain/attach.js';
import { checkRequest, type Refusal, type RequestHeaders } from './auth.js';
import { FairDispatch } from './fair-dispatch.js';
import { ConnectionBuckets, type ConnectionLimit } from './rate-limit.js';
import type { LiveSession } from './queued-session.js';
import type { TransportDeps } from './types.js';

// Frames one connection may start per event-loop turn before the rest wait their turn: about a
// millisecond of work, so a burst cannot hold up other connections for long.
const FRAMES_PER_TURN = 32;

/** A JSON-RPC error frame with no id (the frame it answers was not read as a request). */
export function errorFrame(err: RelayError): string {
  return JSON.stringify({ jsonrpc: '2.0', id: null, error: errorReply(err).error });
}

/** The subprotocol the relay answers: its own when offered, else none. */
export function chooseSubprotocol(offered: string): string {
  return offered.split(',').some((p) => p.trim() === WS_SUBPROTOCOL) ? WS_SUBPROTOCOL : '';
}

/**
 * Admission of a WebSocket upgrade (token, Host, Origin): a refusal to answer with its HTTP
 * status, or the subprotocol to accept.
 */
export function admitUpgrade(headers: RequestHeaders, deps: TransportDeps, port: number): { refusal: Refusal } | { protocol: string } {
  const refusal = checkRequest(headers, deps.config, port);
  if (refusal) {
    deps.log.info({ reason: refusal.reason, origin: headers.origin, host: headers.host }, 'upgrade refused');
    return { refusal };
  }
  return { protocol: chooseSubprotocol(headers.protocol) };
}

/**
 * The transport-neutral half of the /rpc WebSocket route: every live session, the per-connection
 * rate limit and flood close (4003), frame checks (binary, oversize), fair turn-taking between
 * connections, and what a close means to the domain. A binding only turns its socket events into
 * calls here.
 */
export class Connections<S extends LiveSession> {
  private readonly live = new Set<S>();
  private readonly buckets: ConnectionBuckets;
  private readonly fair: FairDispatch<S>;

  constructor(private readonly deps: TransportDeps) {
    const { config, dispatcher, log } = deps;
    this.buckets = new ConnectionBuckets(config.rateLimitPerSec, config.rateBurst);
    const handle = (session: S, text: string) => {
      const ctx: Caller = { session, agentId: null, transport: 'ws' };
      dispatcher.handleFrame(text, ctx, config.maxBackpressureBytes).then(
        (response) => {
          // A reply too big for the buffer on its own was already turned into -32005; one that does
          // not fit beside what is still buffered is cut like a notification would be (4001): left
          // unsent, the client would wait for it forever.
          if (response !== null && session.send(response) === 'dropped') {
            log.warn({ session: session.id, agentId: session.agentId }, 'slow consumer disconnected (reply over the send-buffer bound)');
            session.close(CLOSE_CODES.slowConsumer, 'slow consumer: send buffer over limit, resume by cursor');
          }
        },
        (err: unknown) => log.error({ err }, 'frame handling failed'),
      );
    };
    // One connection's burst no longer runs ahead of everyone else's frames (see fair-dispatch.ts).
    this.fair = new FairDispatch<S>(handle, FRAMES_PER_TURN, config.maxBackpressureBytes, (session) => this.closeFlooder(session, 'rate limited: too many frames waiting; slow down and reconnect'));
  }

  /** Frames read but still waiting their turn: the group commit is held open for them (CommitQueue holdWhile). */
  framesWaiting(): number {
    return this.fair.backlog;
  }

  /** The rate limit a new connection from `remote` starts with. */
  limitFor(remote: string): ConnectionLimit {
    return this.buckets.forConnection(remote);
  }

  opened(session: S): void {
    this.live.add(session);
    this.deps.domain.sessions.add(session);
  }

  /**
   * One frame from the client. `text` decodes it; it is called at most once, before this returns
   * (uWS's buffer is only valid during its callback).
   */
  frame(session: S, byteLength: number, isBinary: boolean, text: () => string): void {
    const { config } = this.deps;
    if (!session.limit.bucket.take()) {
      session.overLimit++;
      if (session.overLimit > session.limit.refusalsBeforeClose) {
        // Frames admitted before the flood still waiting their turn are answered first.
        this.fair.closeWhenDrained(session, () => this.closeFlooder(session, 'rate limited: slow down and reconnect'));
        return;
      }
      session.send(errorFrame(new RelayError('rateLimited', `rate limited: more than ${config.rateLimitPerSec} frames/s; slow down`, { retryAfterMs: session.limit.bucket.msUntilNext() })));
      return;
    }
    // An admitted frame pays down one refusal instead of forgiving them all: a flood that goes on
    // while the bucket refills a token every few ms used to reset the count and was never closed
    // (found by the reliability suite's rate-limit test). Now only a client that stays mostly
    // under its rate works its count back to zero.
    if (session.overLimit > 0) session.overLimit--;
    if (isBinary) {
      session.send(errorFrame(new RelayError('invalidRequest', 'invalid request: binary frames are not accepted; send JSON text')));
      return;
    }
    if (byteLength > config.maxFrameBytes) {
      session.send(errorFrame(new RelayError('tooLarge', `too large: frame of ${byteLength} bytes exceeds ${config.maxFrameBytes}`)));
      return;
    }
    this.fair.submit(session, text(), byteLength);
  }

  /** The socket is gone (closed by either side, or cut). */
  closed(session: S, code: number): void {
    session.closed = true;
    if (!this.live.delete(session)) return;
    const agentId = detach(this.deps.domain, session);
    this.deps.log.debug({ session: session.id, agentId, code }, 'socket closed');
  }

  /** Every live session, for an idle sweep. */
  sessions(): IterableIterator<S> {
    return this.live.values();
  }

  closeAll(code: number, reason: string): void {
    for (const s of [...this.live]) s.close(code, reason);
  }

  private closeFlooder(session: S, reason: string): void {
    this.buckets.closedForFlooding(session.remote);
    session.close(CLOSE_CODES.rateLimited, reason);
  }
}

/**
 * Hard cap on one frame's payload, above which the WebSocket library closes the socket without a
 * reply; below it, frames over maxFrameBytes get a JSON-RPC -32005 instead.
 */
export function hardFrameCap(maxFrameBytes: number): number {
  return Math.min(maxFrameBytes * 4, 256 * 1024 * 1024);
}
