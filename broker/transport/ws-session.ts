import type { WebSocket } from 'uWebSockets.js';
import { CLOSE_CODES, type StreamTopic } from '../../protocol/index.js';
import type { SendResult, Session } from '../domain/ports.js';
import type { ConnectionLimit } from './rate-limit.js';

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
  /** Refused frames not yet paid down by admitted ones: past limit.refusalsBeforeClose the socket is closed. */
  overLimit = 0;

  /**
   * Frames written during the current turn. They leave together, in one corked write, once the
   * turn's synchronous work is done: a group commit that pushes ten messages to a subscriber costs
   * one syscall, not ten (one write per frame was a third of the relay's CPU in a 100-subscriber
   * fan-out). Order is kept: every frame of this socket goes through this queue.
   */
  private out: string[] | null = null;
  private outBytes = 0;

  constructor(
    private readonly ws: WebSocket<SocketData>,
    /** The client's address, as uWS reports it. */
    readonly remote: string,
    /** The per-connection rate limit, and how many refusals it gets before it is closed. */
    readonly limit: ConnectionLimit,
    /** Send buffer above which a frame is refused ('dropped': the caller cuts the slow consumer). */
    private readonly maxBackpressure: number,
  ) {}

  send(frame: string): SendResult {
    if (this.closed) return 'ok';
    const buffered = this.ws.getBufferedAmount() + this.outBytes;
    if (buffered + frame.length > this.maxBackpressure) return 'dropped';
    if (this.out === null) {
      this.out = [];
      queueMicrotask(this.flush);
    }
    this.out.push(frame);
    this.outBytes += frame.length;
    return buffered > 0 ? 'backpressure' : 'ok';
  }

  private readonly flush = (): void => {
    const frames = this.out;
    this.out = null;
    this.outBytes = 0;
    if (!frames || this.closed) return;
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
  };

  close(code: number, reason: string): void {
    if (this.closed) return;
    this.flush();
    if (this.closed) return; // the flush found a slow consumer and closed it
    this.closed = true;
    this.ws.end(code, reason.slice(0, 120));
  }
}
