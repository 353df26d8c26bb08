import { CLOSE_CODES, type StreamTopic } from '../../protocol/index.js';
import type { SendResult, Session } from '../domain/ports.js';
import type { ConnectionLimit } from './rate-limit.js';

let nextSessionId = 1;

/** A WebSocket session as the transport sees it: the domain's Session plus its rate-limit state. */
export interface LiveSession extends Session {
  /** The client's address. */
  readonly remote: string;
  /** The per-connection rate limit, and how many refusals it gets before it is closed. */
  readonly limit: ConnectionLimit;
  /** Refused frames not yet paid down by admitted ones: past limit.refusalsBeforeClose the socket is closed. */
  overLimit: number;
  closed: boolean;
}

/**
 * A Session whose frames written during the current event-loop turn leave together, in one corked
 * write, once the turn's work is done (setImmediate: after every frame uWS read in this turn, not
 * after each one's microtasks): a group commit that pushes ten messages to a subscriber costs one
 * syscall, not ten (one write per frame was a third of the relay's CPU in a 100-subscriber
 * fan-out), and a client's four claims read in one go get their four answers in one write (a
 * flush per frame made 1.6 writes per read in the claims benchmark; now 1). Order is kept: every frame of this socket goes through this queue.
 * Writes after close are dropped silently (the socket is gone). A binding supplies the socket
 * operations.
 */
export abstract class QueuedSession implements LiveSession {
  readonly id = nextSessionId++;
  readonly kind = 'ws' as const;
  agentId: string | null = null;
  readonly topics = new Set<StreamTopic>();
  closed = false;
  overLimit = 0;
  private out: string[] | null = null;
  /** UTF-8 sizes of `out`: the bound is in bytes, as the socket counts them, not UTF-16 characters. */
  private outSizes: number[] = [];
  private outBytes = 0;

  constructor(
    readonly remote: string,
    readonly limit: ConnectionLimit,
    /** Send buffer above which a frame is refused ('dropped': the caller cuts the slow consumer). */
    protected readonly maxBackpressure: number,
  ) {}

  /** Bytes the socket has accepted but not yet sent. */
  protected abstract bufferedBytes(): number;
  /** Write the frames (of these UTF-8 sizes) in one corked go; false when the socket refused one as over its bound. */
  protected abstract writeFrames(frames: string[], sizes: number[]): boolean;
  /** Send a close frame with this code and reason (already short enough). */
  protected abstract endSocket(code: number, reason: string): void;

  send(frame: string): SendResult {
    if (this.closed) return 'ok';
    const size = Buffer.byteLength(frame);
    let buffered = this.bufferedBytes() + this.outBytes;
    if (buffered + size > this.maxBackpressure && this.out !== null) {
      // Frames of this turn are not yet the client's backlog: write them now, and count against
      // the bound only what the socket could not take.
      this.flush();
      if (this.closed) return 'dropped';
      buffered = this.bufferedBytes();
    }
    if (buffered + size > this.maxBackpressure) return 'dropped';
    if (this.out === null) {
      this.out = [];
      setImmediate(this.flush);
    }
    this.out.push(frame);
    this.outSizes.push(size);
    this.outBytes += size;
    return buffered > 0 ? 'backpressure' : 'ok';
  }

  private readonly flush = (): void => {
    const frames = this.out;
    const sizes = this.outSizes;
    this.out = null;
    this.outSizes = [];
    this.outBytes = 0;
    if (!frames || this.closed) return;
    if (!this.writeFrames(frames, sizes)) this.close(CLOSE_CODES.slowConsumer, 'slow consumer: send buffer over limit, resume by cursor');
  };

  close(code: number, reason: string): void {
    if (this.closed) return;
    this.flush();
    if (this.closed) return; // the flush found a slow consumer and closed it
    this.closed = true;
    // Close reasons must stay under 123 bytes.
    this.endSocket(code, reason.slice(0, 120));
  }
}
