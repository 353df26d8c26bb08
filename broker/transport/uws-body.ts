import type { HttpResponse } from 'uWebSockets.js';
import { BodyCollector, type BodyDone } from './http-gate.js';

/**
 * Read a request body with the limit enforced inside onData (it stops at max + 1 byte, it does not
 * buffer everything and measure afterwards). The caller must have registered onAborted.
 */
export function readUwsBody(res: HttpResponse, maxBytes: number, onDone: BodyDone): void {
  const body = new BodyCollector(maxBytes, onDone);
  res.onData((chunk, isLast) => body.add(chunk, isLast));
}
