/** An address that cannot be a relay's: `reason` says what a valid one looks like. */
export class InvalidRelayUrlError extends Error {
  constructor(
    readonly input: string,
    readonly reason: string,
  ) {
    super(`${reason}, got ${JSON.stringify(input)}`);
    this.name = 'InvalidRelayUrlError';
  }
}

const EXPECTED = "expected the relay's address, such as http://127.0.0.1:4850";

/**
 * The relay's HTTP base (`http://host:port`, no trailing slash) from any address it is known by:
 * what it prints for WebSocket clients (`ws://host:port/rpc`) is the same relay, so ws and wss
 * become http and https and the /rpc path is dropped.
 */
export function relayHttpUrl(input: string): string {
  let u: URL;
  try {
    u = new URL(input.trim());
  } catch {
    throw new InvalidRelayUrlError(input, EXPECTED);
  }
  const scheme = { 'http:': 'http:', 'https:': 'https:', 'ws:': 'http:', 'wss:': 'https:' }[u.protocol];
  if (!scheme || !u.hostname) throw new InvalidRelayUrlError(input, `${EXPECTED} (http, https, ws or wss)`);
  if (u.search || u.hash) throw new InvalidRelayUrlError(input, `${EXPECTED} (no query or #fragment)`);
  const path = u.pathname.replace(/\/+$/, '').replace(/\/rpc$/, '');
  return `${scheme}//${u.host}${path}`;
}
