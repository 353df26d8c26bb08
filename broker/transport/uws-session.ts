import type { WebSocket } from 'uWebSockets.js';
import type { ConnectionLimit } from './rate-limit.js';
import { QueuedSession } from './queued-session.js';

/** Per-socket state kept in uWS user data. */
export interface SocketData {
  session: UwsSession | null;
  remote: string;
}

/** A Session over a uWS WebSocket. */
export class UwsSession extends QueuedSession {
  constructor(
    private readonly ws: WebSocket<SocketData>,
    remote: string,
    limit: ConnectionLimit,
    maxBackpressure: number,
  ) {
    super(remote, limit, maxBackpressure);
  }

  protected bufferedBytes(): number {
    return this.ws.getBufferedAmount();
  }

  protected writeFrames(frames: string[]): boolean {
    let dropped = false;
    this.ws.cork(() => {
      for (const f of frames) {
        // 2: DROPPED, over maxBackpressure (closeOnBackpressureLimit is off: we close with our code).
        if (this.ws.send(f, false, false) === 2) {
          dropped = true;
          break;
        }
      }
    });
    return !dropped;
  }

  protected endSocket(code: number, reason: string): void {
    this.ws.end(code, reason);
  }
}
