import type { HttpResponse } from 'uWebSockets.js';
import { BaseExchange, QueuedStream, type ExchangeInit } from './queued-exchange.js';

const STATUS_TEXT: Record<number, string> = {
  200: 'OK',
  201: 'Created',
  202: 'Accepted',
  204: 'No Content',
  304: 'Not Modified',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  410: 'Gone',
  413: 'Payload Too Large',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

/** uWS takes the status line as text. */
function statusLine(status: number): string {
  return `${status} ${STATUS_TEXT[status] ?? ''}`.trim();
}

/**
 * An HttpExchange over a uWS response. uWS forbids touching a response after abort or end, so all
 * writes go through here, corked, and become no-ops once the exchange is finished.
 */
export class UwsExchange extends BaseExchange {
  constructor(
    private readonly res: HttpResponse,
    init: ExchangeInit,
  ) {
    super(init);
    res.onAborted(() => this.clientGone());
  }

  protected writeReply(status: number, headers: Record<string, string>, body: string | Buffer): void {
    this.res.cork(() => {
      this.res.writeStatus(statusLine(status));
      for (const [k, v] of Object.entries(headers)) this.res.writeHeader(k, v);
      this.res.end(body);
    });
  }

  protected writeHead(status: number, headers: Record<string, string>): void {
    this.res.cork(() => {
      this.res.writeStatus(statusLine(status));
      for (const [k, v] of Object.entries(headers)) this.res.writeHeader(k, v);
    });
  }

  protected openStream(onEnd: () => void): QueuedStream {
    return new UwsStream(this.res, this.init.maxBackpressureBytes, onEnd);
  }
}

class UwsStream extends QueuedStream {
  /** Bytes of writes uWS could not send at once, since the socket last drained. */
  private buffered = 0;

  constructor(
    private readonly res: HttpResponse,
    maxBuffered: number,
    onEnd: () => void,
  ) {
    super(maxBuffered, onEnd);
    res.onWritable(() => {
      this.buffered = 0;
      return true;
    });
  }

  protected unsentBytes(): number {
    return this.buffered;
  }

  protected writeNow(text: string, bytes: number): void {
    let ok = true;
    this.res.cork(() => {
      ok = this.res.write(text);
    });
    if (!ok) this.buffered += bytes;
  }

  protected endNow(): void {
    this.res.cork(() => this.res.end());
  }
}
