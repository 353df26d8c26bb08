import { isLoopback, type RelayConfig } from '../config.js';
import { safeEqual } from '../domain/tokens.js';
import { WS_BEARER_PREFIX } from '../../protocol/websocket.js';

export interface RequestHeaders {
  authorization: string;
  origin: string;
  host: string;
  protocol: string;
}

export type Refusal = { status: '401 Unauthorized' | '403 Forbidden'; reason: string };

const LOOPBACK_NAMES = ['127.0.0.1', 'localhost', '[::1]', '::1'];

/** The bearer token offered in Authorization, or as a `bearer.TOKEN` WebSocket subprotocol (browsers). */
export function presentedToken(h: RequestHeaders): string | null {
  const m = /^Bearer\s+(.+)$/i.exec(h.authorization);
  if (m) return m[1]!.trim();
  for (const p of h.protocol.split(',')) {
    const v = p.trim();
    if (v.startsWith(WS_BEARER_PREFIX)) return v.slice(WS_BEARER_PREFIX.length);
  }
  return null;
}

function hostName(hostHeader: string): string {
  const h = hostHeader.trim().toLowerCase();
  // A bracketed IPv6 literal may only be followed by a port: `[::1].evil.example` used to be read
  // as `[::1]` and admitted (found by the reliability suite's Host matrix). Anything else after
  // the bracket is returned whole, which no allow-list entry matches.
  if (h.startsWith('[')) return /^(\[[^\]]*\])(?::\d*)?$/.exec(h)?.[1] ?? h;
  const colon = h.lastIndexOf(':');
  return colon >= 0 ? h.slice(0, colon) : h;
}

/**
 * Admission for every upgrade and HTTP request, before any work: token (constant time), Host
 * (DNS rebinding) and Origin (cross-site WebSocket hijacking). Returns null when admitted.
 */
export function checkRequest(h: RequestHeaders, config: RelayConfig, port: number, opts: { ownAuth?: boolean } = {}): Refusal | null {
  // Webhook ingress authenticates with the integration's own secret: senders such as GitHub cannot add the relay token.
  if (config.token && !opts.ownAuth) {
    const token = presentedToken(h);
    if (token === null || !safeEqual(token, config.token)) return { status: '401 Unauthorized', reason: 'missing or wrong relay token' };
  }
  const bindIsLoopback = isLoopback(config.host);
  const allowedHosts = new Set([...LOOPBACK_NAMES, config.host.toLowerCase(), ...config.allowedHosts.map((x) => x.toLowerCase())]);
  if (!h.host) return { status: '403 Forbidden', reason: 'missing Host header' };
  // On a loopback bind only loopback names may be used: a rebinding DNS name pointing at 127.0.0.1 is refused.
  if ((bindIsLoopback || config.allowedHosts.length > 0) && !allowedHosts.has(hostName(h.host))) {
    return { status: '403 Forbidden', reason: `Host ${h.host} is not allowed` };
  }
  if (h.origin) {
    const allowedOrigins = new Set(config.allowedOrigins.map((o) => o.toLowerCase().replace(/\/$/, '')));
    for (const name of allowedHosts) {
      allowedOrigins.add(`http://${name}:${port}`);
      allowedOrigins.add(`https://${name}:${port}`);
    }
    if (!allowedOrigins.has(h.origin.toLowerCase().replace(/\/$/, ''))) {
      return { status: '403 Forbidden', reason: `Origin ${h.origin} is not allowed` };
    }
  }
  return null;
}
