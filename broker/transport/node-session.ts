import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import type { ConnectionLimit } from './rate-limit.js';
import { QueuedSession } from './queued-session.js';

/** A Session over a `ws` WebSocket on a node:http upgrade. */
export class NodeSession extends QueuedSession {
  /** When the client last sent anything (a frame, a ping or a pong): the idle sweep reads it. */
  lastHeard = Date.now();

  constructor(
    private readonly ws: WebSocket,
    /** The upgraded TCP socket: corked while a turn's frames are written, as uWS does. */
    private readonly socket: Duplex,
    remote: string,
    limit: ConnectionLimit,
    maxBackpressure: number,
    /**
     * Runs when the relay closes or cuts the socket: the session is gone at once, as uWS calls its
     * close handler inside end(), not after the client's close frame (up to 30 s later with ws).
     */
    private readonly gone: (code: number) => void,
  ) {
    super(remote, limit, maxBackpressure);
  }

  protected bufferedBytes(): number {
    return this.ws.bufferedAmount;
  }

  protected writeFrames(frames: string[], sizes: number[]): boolean {
    this.socket.cork();
    try {
      for (let i = 0; i < frames.length; i++) {
        // The same bound uWS applies with maxBackpressure: a frame that would pass it is not written.
        if (this.ws.bufferedAmount + sizes[i]! > this.maxBackpressure) return false;
        this.ws.send(frames[i]!);
      }
      return true;
    } finally {
      this.socket.uncork();
    }
  }

  protected endSocket(code: number, reason: string): void {
    this.ws.close(code, reason);
    this.gone(code);
  }

  ping(): void {
    if (!this.closed) this.ws.ping();
  }

  /** Cut the TCP connection without a close frame, as uWS does on an idle timeout (the client sees 1006). */
  cut(): void {
    this.closed = true;
    this.ws.terminate();
    this.gone(1006);
  }
}
