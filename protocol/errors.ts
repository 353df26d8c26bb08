/**
 * The error catalogue: every code that may reach the wire, with the HTTP status the REST adapter
 * answers for it. Nothing outside this table is ever sent to a client.
 */
export const ERRORS = {
  parseError: { code: -32700, message: 'parse error', httpStatus: 400, retryable: false },
  invalidRequest: { code: -32600, message: 'invalid request', httpStatus: 400, retryable: false },
  methodNotFound: { code: -32601, message: 'method not found', httpStatus: 404, retryable: false },
  invalidParams: { code: -32602, message: 'invalid params', httpStatus: 400, retryable: false },
  internal: { code: -32603, message: 'internal error', httpStatus: 500, retryable: true },
  unauthorized: { code: -32001, message: 'unauthorized', httpStatus: 401, retryable: false },
  notFound: { code: -32002, message: 'not found', httpStatus: 404, retryable: false },
  conflict: { code: -32003, message: 'conflict', httpStatus: 409, retryable: false },
  notRegistered: { code: -32004, message: 'not registered', httpStatus: 403, retryable: false },
  tooLarge: { code: -32005, message: 'too large or rate limited', httpStatus: 413, retryable: true },
  staleClaim: { code: -32006, message: 'stale claim', httpStatus: 409, retryable: false },
  cursorExpired: { code: -32007, message: 'cursor expired', httpStatus: 410, retryable: false },
  storageBusy: { code: -32008, message: 'storage busy', httpStatus: 503, retryable: true },
} as const;

export type ErrorName = keyof typeof ERRORS;
export type ErrorCode = (typeof ERRORS)[ErrorName]['code'];

const BY_CODE = new Map<number, (typeof ERRORS)[ErrorName]>(Object.values(ERRORS).map((e) => [e.code, e]));

/** The HTTP status for a JSON-RPC error code (500 for anything unknown). */
export function httpStatusFor(code: number): number {
  return BY_CODE.get(code)?.httpStatus ?? 500;
}

/** An error the relay means to send: its code is from the catalogue, its message names the problem. */
export class RelayError extends Error {
  readonly code: ErrorCode;
  readonly data: Record<string, unknown> | undefined;

  constructor(name: ErrorName, message?: string, data?: Record<string, unknown>) {
    // A refusal is an answer, not a bug: no stack to capture (it cost 4% of the relay's CPU in the
    // claims benchmark, where two of three claims are refused).
    const stackTraceLimit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message ?? ERRORS[name].message);
    Error.stackTraceLimit = stackTraceLimit;
    this.name = 'RelayError';
    this.code = ERRORS[name].code;
    this.data = data;
  }
}
