import { DEFAULT_BACKOFF, reconnectDelay } from '../backoff.js';
import { RelayRpcError } from '../errors.js';
import { RelayUnreachableError } from '../http-client.js';
import type { CliContext } from './context.js';

/** A following command lost the relay and tries again after `delayMs`: said on stderr, but not under --json (stderr carries only errors there). */
export function reconnectNotice(ctx: CliContext, reason: string, delayMs: number): void {
  if (!ctx.json) ctx.io.err(`relay connection lost (${reason}); reconnecting in ${delayMs} ms`);
}

/** Failures a follower waits out (the relay restarting, busy, rate limiting); others end it. */
function transient(err: unknown): boolean {
  return err instanceof RelayUnreachableError || (err instanceof RelayRpcError && err.retryable);
}

/**
 * Call `poll` again and again, as `inbox --follow` does: a transient failure is retried with the
 * client library's backoff (so a relay restart is waited out), anything else is thrown.
 */
export async function followForever(ctx: CliContext, poll: () => Promise<void>): Promise<never> {
  let attempt = 0;
  for (;;) {
    try {
      await poll();
      attempt = 0;
    } catch (err) {
      if (!transient(err)) throw err;
      const delayMs = reconnectDelay(attempt++, DEFAULT_BACKOFF);
      reconnectNotice(ctx, err instanceof Error ? err.message : String(err), delayMs);
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }
}
