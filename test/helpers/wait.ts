import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Poll `cond` every `everyMs` until it holds; reject naming `what` once `timeoutMs` pass. For
 * states with no event to await (a row written, a process connected). The timeout is a safety net
 * that ends a broken test, never a timing assertion, so it is generous.
 */
export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000, everyMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}
