import type { Logger } from '../logger.js';
import { StartupError } from '../startup-error.js';
import { somethingListens } from './port-probe.js';

// Linux keeps a closed connection's port in TIME_WAIT for 60 s, and uWS sets no SO_REUSEADDR, so
// a restart on a fixed port right after a run with clients cannot bind yet.
const RELISTEN_EVERY_MS = 500;

/** The one line a user sees when a second relay starts on a port someone already serves. */
export function portInUse(port: number): StartupError {
  return new StartupError(`port ${port} is already in use (another relay?)`);
}

/**
 * Listen exclusively (`tryListen` resolves false when the port is taken). A live listener on the
 * port fails at once with portInUse; a port held only by TIME_WAIT leftovers (nobody answers on it)
 * is retried for up to `waitMs`.
 */
export async function listenOrWait<T>(tryListen: () => Promise<T | false>, host: string, wanted: number, waitMs: number, log: Logger): Promise<T> {
  const deadline = Date.now() + waitMs;
  let warned = false;
  for (;;) {
    const socket = await tryListen();
    if (socket !== false) {
      if (warned) log.info({ port: wanted }, 'port free again: listening');
      return socket;
    }
    if (wanted === 0) throw new StartupError(`cannot listen on ${host}: no free port`);
    if (await somethingListens(host, wanted)) throw portInUse(wanted);
    if (Date.now() > deadline) throw new StartupError(`cannot listen on ${host}:${wanted}: address in use or not available`);
    if (!warned) log.warn({ port: wanted }, `port still held by connections of the previous run (TIME_WAIT); retrying for up to ${Math.round(waitMs / 1000)} s`);
    warned = true;
    await new Promise((resolve) => setTimeout(resolve, RELISTEN_EVERY_MS));
  }
}
