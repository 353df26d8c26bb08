/**
 * The error catalogue: every error that may reach the wire, by meaning, with the HTTP status the
 * HTTP adapter answers for it and whether the same call may succeed later. Nothing outside this
 * table is ever sent to a client. A few meanings share a wire code (clients depend on the codes):
 * the first entry of a code is its default meaning; `rateLimited` is told apart from `tooLarge`
 * by `data.retryable: true`, which the error writer (error-reply.ts) always sets for it.
 */
export const ERRORS = {
  parseError: { code: -32700, message: 'parse error', httpStatus: 400, retryable: false },
  invalidRequest: { code: -32600, message: 'invalid request', httpStatus: 400, retryable: false },
  // An HTTP route called with a method it does not serve.
  methodNotAllowed: { code: -32600, message: 'method not allowed', httpStatus: 405, retryable: false },
  methodNotFound: { code: -32601, message: 'method not found', httpStatus: 404, retryable: false },
  invalidParams: { code: -32602, message: 'invalid params', httpStatus: 400, retryable: false },
  internal: { code: -32603, message: 'internal error', httpStatus: 500, retryable: true },
  unauthorized: { code: -32001, message: 'unauthorized', httpStatus: 401, retryable: false },
  // A request from a Host or Origin the relay does not serve: no credential makes it pass.
  forbidden: { code: -32001, message: 'forbidden', httpStatus: 403, retryable: false },
  notFound: { code: -32002, message: 'not found', httpStatus: 404, retryable: false },
  conflict: { code: -32003, message: 'conflict', httpStatus: 409, retryable: false },
  notRegistered: { code: -32004, message: 'not registered', httpStatus: 403, retryable: false },
  // Sent again as is, a frame, body, batch or result over a limit is refused again: never retried.
  tooLarge: { code: -32005, message: 'too large', httpStatus: 413, retryable: false },
  // Over a rate: the same call succeeds once the client slows down (after Retry-After when given).
  rateLimited: { code: -32005, message: 'rate limited', httpStatus: 429, retryable: true },
  staleClaim: { code: -32006, message: 'stale claim', httpStatus: 409, retryable: false },
  cursorExpired: { code: -32007, message: 'cursor expired', httpStatus: 410, retryable: false },
  storageBusy: { code: -32008, message: 'storage busy', httpStatus: 503, retryable: true },
} as const;

export type ErrorName = keyof typeof ERRORS;
export type ErrorCode = (typeof ERRORS)[ErrorName]['code'];

// The first entry of each code is its default meaning (see above).
const NAME_BY_CODE = new Map<number, ErrorName>();
for (const [name, e] of Object.entries(ERRORS)) if (!NAME_BY_CODE.has(e.code)) NAME_BY_CODE.set(e.code, name as ErrorName);

/**
 * The catalogue entry a wire error names: by its code, and for a shared code by `data.retryable`
 * (set only where it differs from the code's default, i.e. rate limited). Undefined for a code
 * outside the catalogue.
 */
export function errorKind(code: number, data?: unknown): ErrorName | undefined {
  const first = NAME_BY_CODE.get(code);
  const retryable = (data as { retryable?: unknown } | null | undefined)?.retryable;
  if (first === undefined || typeof retryable !== 'boolean' || ERRORS[first].retryable === retryable) return first;
  const other = (Object.keys(ERRORS) as ErrorName[]).find((n) => ERRORS[n].code === code && ERRORS[n].retryable === retryable);
  return other ?? first;
}

/** The HTTP status of a code's default meaning (500 for anything unknown). */
export function httpStatusFor(code: number): number {
  const name = NAME_BY_CODE.get(code);
  return name ? ERRORS[name].httpStatus : 500;
}

/** An error the relay means to send: its kind is from the catalogue, its message names the problem. */
export class RelayError extends Error {
  readonly kind: ErrorName;
  readonly code: ErrorCode;
  readonly data: Record<string, unknown> | undefined;

  constructor(kind: ErrorName, message?: string, data?: Record<string, unknown>) {
    // A refusal is an answer, not a bug: no stack to capture (it cost 4% of the relay's CPU in the
    // claims benchmark, where two of three claims are refused).
    const stackTraceLimit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message ?? ERRORS[kind].message);
    Error.stackTraceLimit = stackTraceLimit;
    this.name = 'RelayError';
    this.kind = kind;
    this.code = ERRORS[kind].code;
    this.data = data;
  }
}
