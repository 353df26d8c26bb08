import type { WebSocket } from 'uWebSockets.js';
import type { StreamTopic } from '../../protocol/index.js';
import type { SendResult, Session } from '../domain/ports.js';
import type { TokenBucket } from './rate-limit.js';

/** Per-socket state kept in uWS user data. */
export interface SocketData {
  session: WsSession | null;
  remote: string;
}

let nextSessionId = 1;

/** A Session over a uWS WebSocket. Writes after close are dropped silently (the socket is gone). */
export class WsSession implements Session {
  readonly id = nextSessionId++;
  readonly kind = 'ws' as const;
  agentId: string | null = null;
  readonly topics = new Set<StreamTopic>();
  closed = false;
  /** Frames over the per-connection rate in a row (the socket is closed past a bound). */
  overLimit = 0;

  constructor(
    private readonly ws: WebSocket<SocketData>,
    /** The per-connection rate limit. */
    readonly rate: TokenBucket,
  ) {}

  send(frame: string): SendResult {
    if (this.closed) return 'ok';
    let result = 1;
    this.ws.cork(() => {
      result = this.ws.send(frame, false, false);
    });
    return result === 1 ? 'ok' : result === 0 ? 'backpressure' : 'dropped';
  }

  close(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.ws.end(code, reason.slice(0, 120));
  }
}
