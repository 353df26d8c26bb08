import { ERRORS, errorKind, type ErrorName } from '../protocol/errors.js';

/** The relay answered with a JSON-RPC error from the contract's catalogue. */
export class RelayRpcError extends Error {
  /** The catalogue name (`conflict`, `staleClaim`, ...), or undefined for a code outside it. */
  readonly kind: ErrorName | undefined;

  constructor(
    readonly code: number,
    message: string,
    readonly data?: Record<string, unknown>,
    readonly method?: string,
  ) {
    super(message);
    this.name = 'RelayRpcError';
    this.kind = errorKind(code, data);
  }

  /** Whether the same call may succeed later (storage busy, rate limited, internal); never for too large. */
  get retryable(): boolean {
    return this.kind ? ERRORS[this.kind].retryable : false;
  }
}

/** The call could not reach the relay: not connected (with `whenDisconnected: 'fail'`), or the connection dropped mid-call (the call may or may not have been applied). */
export class RelayDisconnectedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RelayDisconnectedError';
  }
}

/** No answer (or no connection to send it on) within the call timeout. */
export class RelayTimeoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RelayTimeoutError';
  }
}

/** The relay refused this client for good (bad token, replaced by a newer connection): it will not reconnect. */
export class RelayClosedError extends Error {
  constructor(
    message: string,
    readonly closeCode: number,
  ) {
    super(message);
    this.name = 'RelayClosedError';
  }
}
