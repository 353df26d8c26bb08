import { ZodError } from 'zod';
import { ERRORS, RelayError, type ErrorName } from './errors.js';

/** A contract error as it goes on the wire (JSON-RPC `error`, HTTP body `{error}`). */
export interface WireError {
  code: number;
  message: string;
  data?: Record<string, unknown>;
}

/** What every transport sends for a failure: the wire error, and over HTTP its status and headers. */
export interface ErrorReply {
  kind: ErrorName;
  error: WireError;
  status: number;
  headers: Record<string, string>;
}

/** The headers of every JSON answer over HTTP. */
export const JSON_HEADERS = { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' } as const;

/** A zod failure as -32602 naming the field: "invalid params: to: must be ...". */
export function describeZodError(err: ZodError): WireError {
  const issues = err.issues.map((i) => ({ path: i.path.map(String).join('.') || '(params)', message: i.message }));
  const first = issues[0]!;
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more)` : '';
  return { code: ERRORS.invalidParams.code, message: `invalid params: ${first.path}: ${first.message}${more}`, data: { issues } };
}

/**
 * The one mapping from anything thrown to what the client is told. A RelayError keeps its message
 * and data; a zod failure names the field; anything else (a bug, a storage fault the store did not
 * turn into a RelayError) is "internal error" and leaks nothing: kind 'internal' tells the caller
 * to log it. Status and Retry-After come from the catalogue entry, never from the message text.
 */
export function errorReply(err: unknown): ErrorReply {
  if (err instanceof RelayError) {
    const entry = ERRORS[err.kind];
    // The wire code is shared with tooLarge: this is how a client knows it may retry.
    const data = err.kind === 'rateLimited' ? { ...err.data, retryable: true } : err.data;
    const error: WireError = data === undefined ? { code: err.code, message: err.message } : { code: err.code, message: err.message, data };
    const retryAfterMs = data?.retryAfterMs;
    const headers: Record<string, string> = typeof retryAfterMs === 'number' ? { 'retry-after': String(Math.max(1, Math.ceil(retryAfterMs / 1000))) } : {};
    return { kind: err.kind, error, status: entry.httpStatus, headers };
  }
  if (err instanceof ZodError) return { kind: 'invalidParams', error: describeZodError(err), status: ERRORS.invalidParams.httpStatus, headers: {} };
  return { kind: 'internal', error: { code: ERRORS.internal.code, message: 'internal error' }, status: ERRORS.internal.httpStatus, headers: {} };
}

/** The same failure as a whole HTTP answer: status, headers and the `{error}` body text. */
export function httpErrorReply(err: unknown): { kind: ErrorName; status: number; headers: Record<string, string>; body: string } {
  const r = errorReply(err);
  return { kind: r.kind, status: r.status, headers: { ...JSON_HEADERS, ...r.headers }, body: JSON.stringify({ error: r.error }) };
}
