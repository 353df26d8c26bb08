import { METHODS, RelayError } from '../../protocol/index.js';
import type { Caller, HttpExchange, HttpHandler, RelayEdge } from '../../broker/domain/ports.js';
import type { Registry } from 'prom-client';
import { DashboardFiles } from './dashboard.js';
import { handleInbox, type InboxWaiters } from './inbox.js';
import { handleIngress } from './ingress.js';
import { decodeSegment, JSON_HEADERS, parseJsonBody, sendError, sendJson } from './respond.js';
import { matchRoute, REST_ROUTES } from './rest.js';
import { handleStream } from './sse.js';
import { INGRESS_PATH } from '../../protocol/index.js';

export interface HttpDeps {
  relay: RelayEdge;
  waiters: InboxWaiters;
  metrics: Registry;
  sseKeepAliveMs: number;
  /** The built dashboard (dist/dashboard of the package). */
  dashboardDir: string;
}

/**
 * Every HTTP route. POST /rpc runs the WebSocket's dispatcher; REST routes are translations onto
 * the same method calls; inbox, stream and ingress are the HTTP-only shapes of the same logic. The
 * caller's credentials were resolved by the transport before any route runs.
 */
export function createHttpHandler(deps: HttpDeps): HttpHandler {
  const { relay } = deps;
  const dashboard = new DashboardFiles(deps.dashboardDir);
  return async (ex, caller) => {
    const path = ex.path;
    if (dashboard.serve(ex)) return;
    if (path === '/rpc') {
      if (ex.method !== 'POST') return sendError(ex, new RelayError('methodNotAllowed', 'use POST /rpc with a JSON-RPC body'));
      const response = await relay.handleFrame(ex.body.toString('utf8'), caller);
      if (response === null) return ex.reply(204, { 'cache-control': 'no-store' }, '');
      return ex.reply(200, JSON_HEADERS, response);
    }
    if (path === '/healthz' && ex.method === 'GET') return await health(ex, relay);
    if (path === '/metrics' && ex.method === 'GET') {
      const text = await deps.metrics.metrics();
      return ex.reply(200, { 'content-type': deps.metrics.contentType, 'cache-control': 'no-store' }, text);
    }
    if (path === '/api/stream' && ex.method === 'GET') return handleStream(ex, caller, relay, { keepAliveMs: deps.sseKeepAliveMs });
    const inbox = /^\/api\/agents\/([^/]+)\/inbox$/.exec(path);
    if (inbox && ex.method === 'GET') {
      const agentId = decodeSegment(inbox[1]!);
      if (agentId === null) return notFound(ex);
      return handleInbox(ex, caller, agentId, relay, deps.waiters);
    }
    if (INGRESS_PATH.test(path) && ex.method === 'POST') return handleIngress(ex, caller, relay);

    const match = matchRoute(REST_ROUTES, ex);
    if (match === 'method') return sendError(ex, new RelayError('methodNotAllowed', `${ex.method} is not supported on ${path}`));
    if (!match) return notFound(ex);
    const pathParams: Record<string, string> = {};
    for (const [k, v] of Object.entries(match.path)) {
      const decoded = decodeSegment(v);
      if (decoded === null) return notFound(ex);
      pathParams[k] = decoded;
    }
    try {
      const body = ex.method === 'GET' ? {} : parseJsonBody(ex);
      const params = match.route.params({ path: pathParams, query: ex.query, body, caller });
      // Over HTTP the only identity is a presented token: a call that needs one and carries none is 401, as for the inbox.
      if (METHODS[match.route.method].auth === 'agent' && caller.agentId === null && typeof params.agentToken !== 'string') {
        throw new RelayError('unauthorized', `unauthorized: ${ex.method} ${ex.path} needs X-Agent-Token (and X-Agent-Id where the path does not name the agent)`);
      }
      const result = (await relay.call(match.route.method, params, caller)) as Record<string, unknown>;
      sendJson(ex, match.route.status?.(result) ?? 200, result);
    } catch (err) {
      sendError(ex, err);
    }
  };
}

function notFound(ex: HttpExchange): void {
  sendError(ex, new RelayError('notFound', `not found: ${ex.method} ${ex.path}`));
}

async function health(ex: HttpExchange, relay: RelayEdge): Promise<void> {
  const h = await relay.health();
  sendJson(ex, h.writable ? 200 : 503, {
    ok: h.writable,
    ready: true,
    dbWritable: h.writable,
    lastCommitFailure: h.lastCommitFailure,
    agents: h.agents,
    connections: h.connections,
    cursor: h.cursor,
    // What the relay's own connection runs with (PRAGMAs are per connection): the durability
    // setting as the store applied it, checked by the reliability suite after fresh opens and crashes.
    storage: h.storage,
  });
}

export type { Caller };
