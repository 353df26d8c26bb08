import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Poll `cond` every `everyMs` until it holds; reject naming `what` once `timeoutMs` pass. For
 * states with no event to await (a row written, a process connected). The timeout is a safety net
 * that ends a broken test, never a timing assertion, so it is generous. It bounds an async check
 * too: a check that never answers (a request nobody replies to) fails here, saying so, instead of
 * holding the test until the file's timeout, which names nothing.
 */
export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000, everyMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await bounded(cond(), deadline, () => `timed out after ${timeoutMs} ms waiting for ${what}: its check did not answer`))) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** `value` if it settles before `deadline` (plus a second's grace for the check's own work). */
async function bounded<T>(value: T | Promise<T>, deadline: number, message: () => string): Promise<T> {
  if (!(value instanceof Promise)) return value;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message())), Math.max(0, deadline - Date.now()) + 1000);
  });
  try {
    return await Promise.race([value, late]);
  } finally {
    clearTimeout(timer);
  }
}
