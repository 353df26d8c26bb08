import type { HttpResponse } from 'uWebSockets.js';

export class BodyTooLarge extends Error {}

/**
 * Read a request body with a hard limit enforced inside onData (it stops at max + 1 byte, it does
 * not buffer everything and measure afterwards). The caller must have registered onAborted.
 */
export function readBody(res: HttpResponse, maxBytes: number, onDone: (body: Buffer | BodyTooLarge) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let done = false;
  res.onData((chunk, isLast) => {
    if (done) return;
    size += chunk.byteLength;
    if (size > maxBytes) {
      done = true;
      onDone(new BodyTooLarge(`body over ${maxBytes} bytes`));
      return;
    }
    // uWS reuses the chunk's memory after this callback returns: copy it.
    chunks.push(Buffer.from(chunk.slice(0)));
    if (isLast) {
      done = true;
      onDone(Buffer.concat(chunks, size));
    }
  });
}
