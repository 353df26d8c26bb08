import { frameShapeProblem, frameShapeRefusal, httpErrorReply, JSON_HEADERS, LIMITS, RelayError } from '../../protocol/index.js';
import type { HttpExchange } from '../../broker/domain/ports.js';

export { JSON_HEADERS };

export function sendJson(ex: HttpExchange, status: number, value: unknown): void {
  ex.reply(status, JSON_HEADERS, JSON.stringify(value));
}

/** Anything a handler threw, as the contract's error answer (protocol/error-reply.ts); internals never reach the client. */
export function sendError(ex: HttpExchange, err: unknown): void {
  const { status, headers, body } = httpErrorReply(err);
  ex.reply(status, headers, body);
}

/** A JSON object body, or a RelayError naming what is wrong with it. */
export function parseJsonBody(ex: HttpExchange): Record<string, unknown> {
  if (ex.body.length === 0) return {};
  const text = ex.body.toString('utf8');
  // The same shape checks as a JSON-RPC frame, before parsing (see frameShapeProblem).
  const shape = frameShapeProblem(text, LIMITS.maxDepth, LIMITS.maxFrameKeys);
  if (shape !== null) {
    const refusal = frameShapeRefusal(shape, 'body');
    throw new RelayError(refusal.kind, refusal.message);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw Object.assign(new RelayError('parseError', `parse error: body is not JSON (${(err as Error).message})`));
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new RelayError('invalidParams', 'invalid params: body must be a JSON object');
  return value as Record<string, unknown>;
}

export { decodeSegment } from '../../protocol/index.js';
