import type { HttpResponse } from 'uWebSockets.js';
import type { HttpExchange, HttpStream, SendResult } from '../domain/ports.js';

const STATUS_TEXT: Record<number, string> = {
  200: 'OK', 201: 'Created', 202: 'Accepted', 204: 'No Content', 304: 'Not Modified', 400: 'Bad Request',
  401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 409: 'Conflict',
  410: 'Gone', 413: 'Payload Too Large', 429: 'Too Many Requests', 500: 'Internal Server Error', 503: 'Service Unavailable',
};

export function statusLine(status: number): string {
  return `${status} ${STATUS_TEXT[status] ?? ''}`.trim();
}

export interface ExchangeInit {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: Record<string, string>;
  maxBackpressureBytes: number;
}

/**
 * An HttpExchange over a uWS response. uWS forbids touching a response after abort or end, so all
 * writes go through here, corked, and become no-ops once the exchange is finished.
 */
export class UwsExchange implements HttpExchange {
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly headers: Record<string, string>;
  body: Buffer = Buffer.alloc(0);
  private finished = false;
  private abortHandlers: Array<() => void> = [];
  private stream_: UwsStream | null = null;

  constructor(private readonly res: HttpResponse, private readonly init: ExchangeInit) {
    this.method = init.method;
    this.path = init.path;
    this.query = init.query;
    this.headers = init.headers;
    res.onAborted(() => {
      this.finished = true;
      if (this.stream_) this.stream_.closed = true;
      for (const fn of this.abortHandlers.splice(0)) fn();
    });
  }

  get aborted(): boolean {
    return this.finished;
  }

  onAbort(fn: () => void): void {
    this.abortHandlers.push(fn);
  }

  reply(status: number, headers: Record<string, string>, body: string | Buffer): void {
    if (this.finished) return;
    if (this.stream_) {
      // Already streaming: the status line is sent; the only answer left is to end the stream.
      this.stream_.end();
      return;
    }
    this.finished = true;
    this.abortHandlers = [];
    this.res.cork(() => {
      this.res.writeStatus(statusLine(status));
      for (const [k, v] of Object.entries(headers)) this.res.writeHeader(k, v);
      this.res.end(body);
    });
  }

  stream(status: number, headers: Record<string, string>): HttpStream {
    if (this.stream_) return this.stream_;
    const stream = new UwsStream(this.res, this.init.maxBackpressureBytes, () => {
      this.finished = true;
      this.abortHandlers = [];
    });
    this.stream_ = stream;
    if (this.finished) {
      stream.closed = true;
      return stream;
    }
    this.res.cork(() => {
      this.res.writeStatus(statusLine(status));
      for (const [k, v] of Object.entries(headers)) this.res.writeHeader(k, v);
    });
    return stream;
  }
}

/** A streamed response with a send-buffer bound: past it, the stream is ended (the client resumes). */
class UwsStream implements HttpStream {
  closed = false;
  private buffered = 0;

  constructor(
    private readonly res: HttpResponse,
    private readonly maxBuffered: number,
    private readonly onEnd: () => void,
  ) {
    res.onWritable(() => {
      this.buffered = 0;
      return true;
    });
  }

  write(chunk: string): SendResult {
    if (this.closed) return 'dropped';
    let ok = true;
    this.res.cork(() => {
      ok = this.res.write(chunk);
    });
    if (ok) return 'ok';
    this.buffered += Buffer.byteLength(chunk);
    if (this.buffered > this.maxBuffered) {
      this.end();
      return 'dropped';
    }
    return 'backpressure';
  }

  end(): void {
    if (this.closed) return;
    this.closed = true;
    this.onEnd();
    this.res.cork(() => this.res.end());
  }
}
