import type { WebSocket } from 'uWebSockets.js';
import { CLOSE_CODES, type StreamTopic } from '../../protocol/index.js';
import type { SendResult, Session } from '../domain/ports.js';
import type { TokenBucket } from './rate-limit.js';
import { TurnBatch } from './turn-batch.js';

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
  /** Refused frames not yet paid down by admitted ones (the socket is closed past a bound). */
  overLimit = 0;

  /** Frames written during the current turn: they leave in one corked write. */
  private readonly batch = new TurnBatch((frames) => this.writeFrames(frames));

  constructor(
    private readonly ws: WebSocket<SocketData>,
    /** The per-connection rate limit. */
    readonly rate: TokenBucket,
    /** Send buffer above which a frame is refused ('dropped': the caller cuts the slow consumer). */
    private readonly maxBackpressure: number,
  ) {}

  send(frame: string): SendResult {
    if (this.closed) return 'ok';
    const buffered = this.ws.getBufferedAmount() + this.batch.bytes;
    if (buffered + frame.length > this.maxBackpressure) return 'dropped';
    this.batch.push(frame, frame.length);
    return buffered > 0 ? 'backpressure' : 'ok';
  }

  private writeFrames(frames: string[]): void {
    if (this.closed) return;
    let dropped = false;
    this.ws.cork(() => {
      for (const f of frames) {
        if (this.ws.send(f, false, false) === 2) {
          dropped = true;
          break;
        }
      }
    });
    if (dropped) this.close(CLOSE_CODES.slowConsumer, 'slow consumer: send buffer over limit, resume by cursor');
  }

  close(code: number, reason: string): void {
    if (this.closed) return;
    this.batch.flush();
    if (this.closed) return; // the flush found a slow consumer and closed it
    this.closed = true;
    this.ws.end(code, reason.slice(0, 120));
  }
}
