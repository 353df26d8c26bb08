import { RelayClosedError, RelayDisconnectedError, RelayRpcError, RelayTimeoutError } from '../errors.js';
import { RelayUnreachableError } from '../http-client.js';
import { InvalidRelayUrlError } from '../relay-url.js';
import { EXIT, RefusedError, UsageError, type Io } from './context.js';
import { identityFile, type StoredIdentity } from './identity-store.js';

/** A failed command: its exit code, a stable name scripts can branch on, and what to do next. */
export interface Failure {
  exit: number;
  /** `usage`, `unreachable`, `relayToken`, `agentToken`, or the relay's error name (`conflict`, `notFound`, ...). */
  code: string;
  message: string;
}

export interface ExplainContext {
  /** The relay's HTTP base. */
  url: string;
  home: string;
  /** Whether a relay token was given (--token or AGENT_RELAY_TOKEN). */
  tokenGiven?: boolean;
  /** The stored identity the command acted as, when it did. */
  actingAs?: StoredIdentity | null;
}

/** Whether the relay's admission check refused the relay token (missing or wrong), not an agent's token. */
export function isRelayTokenRefusal(err: unknown): boolean {
  return err instanceof RelayRpcError && err.kind === 'unauthorized' && /relay token/.test(err.message);
}

function unauthorized(err: RelayRpcError, ctx: ExplainContext): Failure {
  if (isRelayTokenRefusal(err)) {
    const message = ctx.tokenGiven
      ? `the relay at ${ctx.url} refused the relay token given (--token or AGENT_RELAY_TOKEN): pass the AGENT_RELAY_TOKEN the relay was started with`
      : `the relay at ${ctx.url} needs a relay token and none was given: pass --token TOKEN or set AGENT_RELAY_TOKEN to the value the relay was started with`;
    return { exit: EXIT.refused, code: 'relayToken', message };
  }
  const me = ctx.actingAs;
  if (me) {
    return {
      exit: EXIT.refused,
      code: 'agentToken',
      message:
        `agent token for "${me.id}" stored for ${me.url} was refused (${err.message}); ` +
        `re-register with agent-relay register --id ${me.id} (if the relay knows another "${me.id}", pick another --id; the stored token is in ${identityFile(ctx.home, me.id)})`,
    };
  }
  return { exit: EXIT.refused, code: 'agentToken', message: `${err.message} (an agent token is needed: register with agent-relay register --id ID, then pass --as ID)` };
}

/** Turn any failure into a message that says what to do next, an exit code and a code. */
export function explain(err: unknown, ctx: ExplainContext): Failure {
  if (err instanceof UsageError || err instanceof InvalidRelayUrlError) return { exit: EXIT.usage, code: 'usage', message: err.message };
  if (err instanceof RefusedError) return { exit: EXIT.refused, code: err.code, message: err.message };
  if (err instanceof RelayUnreachableError) return { exit: EXIT.unreachable, code: 'unreachable', message: err.message };
  if (err instanceof RelayDisconnectedError || err instanceof RelayTimeoutError) {
    return { exit: EXIT.unreachable, code: 'unreachable', message: `${err.message}: is the relay running at ${ctx.url}? start it with agent-relay serve` };
  }
  if (err instanceof RelayClosedError) return { exit: EXIT.refused, code: 'closed', message: err.message };
  if (err instanceof RelayRpcError) {
    if (err.kind === 'unauthorized') return unauthorized(err, ctx);
    const hint = err.kind === 'cursorExpired' ? ' (that history was pruned: start again without --since)' : '';
    return { exit: EXIT.refused, code: err.kind ?? String(err.code), message: `${err.message}${hint}` };
  }
  return { exit: EXIT.refused, code: 'refused', message: err instanceof Error ? err.message : String(err) };
}

/** Print a failure: one line on stderr, a JSON document `{"error":{code,message,exit}}` with --json. */
export function report(io: Io, json: boolean, failure: Failure): void {
  io.err(json ? JSON.stringify({ error: { code: failure.code, message: failure.message, exit: failure.exit } }) : `agent-relay: ${failure.message}`);
}
