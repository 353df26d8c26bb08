import { ZodError } from 'zod';
import { ERRORS, frameShapeProblem, frameShapeRefusal, httpStatusFor, LIMITS, RelayError } from '../../protocol/index.js';
import type { HttpExchange } from '../../broker/domain/ports.js';
import { describeZodError } from '../../broker/transport/rpc-dispatch.js';

export const JSON_HEADERS = { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' };

export function sendJson(ex: HttpExchange, status: number, value: unknown): void {
  ex.reply(status, JSON_HEADERS, JSON.stringify(value));
}

/** The error body and HTTP status for anything a handler threw; internals never reach the client. */
export function errorReply(err: unknown): { status: number; body: { error: { code: number; message: string; data?: unknown } } } {
  if (err instanceof RelayError) {
    const status = err.code === ERRORS.tooLarge.code && err.message.startsWith('rate limited') ? 429 : httpStatusFor(err.code);
    return { status, body: { error: { code: err.code, message: err.message, ...(err.data ? { data: err.data } : {}) } } };
  }
  if (err instanceof ZodError) return { status: 400, body: { error: describeZodError(err) } };
  return { status: 500, body: { error: { code: ERRORS.internal.code, message: 'internal error' } } };
}

export function sendError(ex: HttpExchange, err: unknown): void {
  const { status, body } = errorReply(err);
  sendJson(ex, status, body);
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

/** A decoded path segment, or null for a malformed percent-escape (answered 404, never 500). */
export function decodeSegment(raw: string): string | null {
  try {
    return decodeURIComponent(raw);
  } catch {
    return null;
  }
}
