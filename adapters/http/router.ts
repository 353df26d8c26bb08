import { INGRESS_PATH, METHODS, RelayError } from '../../protocol/index.js';
import type { Domain } from '../../broker/domain/domain.js';
import type { HttpExchange, HttpHandler } from '../../broker/domain/ports.js';
import type { RpcDispatcher } from '../../broker/transport/rpc-dispatch.js';
import type { Registry } from 'prom-client';
import { DashboardFiles } from './dashboard.js';
import { handleInbox, InboxWaiters } from './inbox.js';
import { handleIngress } from './ingress.js';
import { decodeSegment, JSON_HEADERS, parseJsonBody, sendError, sendJson } from './respond.js';
import { identityFrom, matchRoute, REST_ROUTES } from './rest.js';
import { handleStream } from './sse.js';

export interface HttpDeps {
  domain: Domain;
  dispatcher: RpcDispatcher;
  waiters: InboxWaiters;
  metrics: Registry;
  sseKeepAliveMs: number;
  /** The built dashboard (dist/dashboard of the package). */
  dashboardDir: string;
}

const HTTP_CTX = { session: null, agentId: null, transport: 'http' as const };

/**
 * Every HTTP route. POST /rpc runs the WebSocket's dispatcher; REST routes are translations onto
 * the same method calls; inbox, stream and ingress are the HTTP-only shapes of the same logic.
 */
export function createHttpHandler(deps: HttpDeps): HttpHandler {
  const { domain, dispatcher } = deps;
  const dashboard = new DashboardFiles(deps.dashboardDir);
  return async (ex) => {
    const path = ex.path;
    if (!presentedAgentTokenHolds(ex, domain)) return;
    if (dashboard.serve(ex)) return;
    if (path === '/rpc') {
      if (ex.method !== 'POST') return sendError(ex, new RelayError('methodNotAllowed', 'use POST /rpc with a JSON-RPC body'));
      const response = await dispatcher.handleFrame(ex.body.toString('utf8'), HTTP_CTX);
      if (response === null) return ex.reply(204, { 'cache-control': 'no-store' }, '');
      return ex.reply(200, JSON_HEADERS, response);
    }
    if (path === '/healthz' && ex.method === 'GET') return await health(ex, domain);
    if (path === '/metrics' && ex.method === 'GET') {
      const text = await deps.metrics.metrics();
      return ex.reply(200, { 'content-type': deps.metrics.contentType, 'cache-control': 'no-store' }, text);
    }
    if (path === '/api/stream' && ex.method === 'GET') return handleStream(ex, domain, { keepAliveMs: deps.sseKeepAliveMs });
    const inbox = /^\/api\/agents\/([^/]+)\/inbox$/.exec(path);
    if (inbox && ex.method === 'GET') {
      const agentId = decodeSegment(inbox[1]!);
      if (agentId === null) return notFound(ex);
      return handleInbox(ex, agentId, dispatcher, deps.waiters);
    }
    const ingress = INGRESS_PATH.exec(path);
    if (ingress && ex.method === 'POST') return handleIngress(ex, ingress[1]!, domain);

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
      const params = match.route.params({ path: pathParams, query: ex.query, body, identity: identityFrom(ex) });
      // Over HTTP the only identity is a presented token: a call that needs one and carries none is 401, as for the inbox.
      if (METHODS[match.route.method].auth === 'agent' && typeof params.agentToken !== 'string') {
        throw new RelayError('unauthorized', `unauthorized: ${ex.method} ${ex.path} needs X-Agent-Token (and X-Agent-Id where the path does not name the agent)`);
      }
      const result = (await dispatcher.call(match.route.method, params, HTTP_CTX)) as Record<string, unknown>;
      sendJson(ex, match.route.status?.(result) ?? 200, result);
    } catch (err) {
      sendError(ex, err);
    }
  };
}

const AGENT_PATH = /^\/api\/agents\/([^/]+)/;

/**
 * A presented agent credential is always checked, on every route (webhook ingress aside: it
 * authenticates with its integration's secret): a request carrying a wrong or another agent's
 * X-Agent-Token is refused with 401 even where the route needs no identity (public reads, health,
 * metrics, the dashboard), instead of being served as if the header were not there. The agent is
 * the one X-Agent-Id names, else the /api/agents/:id path, else the agentId query parameter.
 * Found by the reliability suite's auth matrix. X-Agent-Id without X-Agent-Token, and a token that
 * names no agent, are 401 too. Returns false when it answered the refusal.
 */
function presentedAgentTokenHolds(ex: HttpExchange, domain: Domain): boolean {
  if (INGRESS_PATH.test(ex.path)) return true;
  const token = ex.headers['x-agent-token'];
  const headerId = ex.headers['x-agent-id'];
  try {
    // An id without its token used to be served as ext:observer: a half identity is refused, never dropped.
    if (headerId !== undefined && token === undefined) {
      throw new RelayError('unauthorized', `unauthorized: X-Agent-Id names agent ${headerId.slice(0, 128)} but X-Agent-Token is missing: send both to act as the agent, or neither to act as an observer`);
    }
    if (token === undefined) return true;
    const fromPath = AGENT_PATH.exec(ex.path)?.[1];
    const named = headerId ?? (fromPath !== undefined ? (decodeSegment(fromPath) ?? undefined) : undefined) ?? ex.query.get('agentId') ?? undefined;
    if (named === undefined) {
      throw new RelayError('unauthorized', `unauthorized: X-Agent-Token is given but X-Agent-Id is missing: ${ex.method} ${ex.path} does not name the agent, so add X-Agent-Id`);
    }
    domain.agents.authenticate(named, token);
    return true;
  } catch (err) {
    sendError(ex, err);
    return false;
  }
}

function notFound(ex: HttpExchange): void {
  sendError(ex, new RelayError('notFound', `not found: ${ex.method} ${ex.path}`));
}

async function health(ex: HttpExchange, d: Domain): Promise<void> {
  // A full disk still takes the write lock: the last commit's outcome says whether writes land.
  const lastCommitFailure = d.store.health.lastFailure;
  const writable = lastCommitFailure === null && (await d.store.health.isWritable());
  sendJson(ex, writable ? 200 : 503, {
    ok: writable,
    ready: true,
    dbWritable: writable,
    lastCommitFailure,
    agents: d.agents.size,
    connections: d.sessions.size,
    cursor: d.store.messages.maxId(),
    // What the relay's own connection runs with (PRAGMAs are per connection): the durability
    // setting as the store applied it, checked by the reliability suite after fresh opens and crashes.
    storage: d.store.health.settings(),
  });
}
