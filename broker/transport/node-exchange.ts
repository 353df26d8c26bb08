import type { IncomingMessage, ServerResponse } from 'node:http';
import { BodyCollector, type BodyDone } from './http-gate.js';
import { BaseExchange, QueuedStream, type ExchangeInit } from './queued-exchange.js';

/** An HttpExchange over node:http's request and response. */
export class NodeExchange extends BaseExchange {
  constructor(
    private readonly res: ServerResponse,
    init: ExchangeInit,
  ) {
    super(init);
    // 'close' also follows a normal end; clientGone is a no-op once the exchange is answered.
    res.on('close', () => this.clientGone());
  }

  protected writeReply(status: number, headers: Record<string, string>, body: string | Buffer): void {
    // setHeader + end (not writeHead) lets node send Content-Length rather than chunked encoding.
    this.res.statusCode = status;
    for (const [k, v] of Object.entries(headers)) this.res.setHeader(k, v);
    this.res.end(body);
  }

  protected writeHead(status: number, headers: Record<string, string>): void {
    this.res.writeHead(status, headers);
    // A stream's client waits for the headers before the first event.
    this.res.flushHeaders();
  }

  protected openStream(onEnd: () => void): QueuedStream {
    return new NodeStream(this.res, this.init.maxBackpressureBytes, onEnd);
  }
}

class NodeStream extends QueuedStream {
  constructor(
    private readonly res: ServerResponse,
    maxBuffered: number,
    onEnd: () => void,
  ) {
    super(maxBuffered, onEnd);
  }

  protected unsentBytes(): number {
    // The response's own buffer plus its socket's.
    return this.res.writableLength;
  }

  protected writeNow(text: string): void {
    this.res.write(text);
  }

  protected endNow(): void {
    this.res.end();
  }
}

const NO_BYTES = Buffer.alloc(0);

/**
 * Read a request body with the limit enforced as chunks arrive: a declared Content-Length over it
 * is refused before reading, and a body that grows past it stops being kept at once.
 */
export function readNodeBody(req: IncomingMessage, maxBytes: number, onDone: BodyDone): void {
  const body = new BodyCollector(maxBytes, onDone);
  if (Number(req.headers['content-length'] ?? 0) > maxBytes) {
    body.tooLarge();
    return;
  }
  req.on('data', (chunk: Buffer) => body.add(chunk, false));
  req.on('end', () => body.add(NO_BYTES, true));
}
