import { RelayError, type MethodName } from '../../protocol/index.js';
import type { Caller, HttpExchange } from '../../broker/domain/ports.js';

export interface RouteInput {
  /** Named path segments. */
  path: Record<string, string>;
  query: URLSearchParams;
  body: Record<string, unknown>;
  /** Who calls: the transport resolved X-Agent-Id / X-Agent-Token (the path id for agent routes). */
  caller: Caller;
}

export interface RestRoute {
  verb: 'GET' | 'POST' | 'PATCH';
  pattern: RegExp;
  method: MethodName;
  params: (r: RouteInput) => Record<string, unknown>;
  /** Status for success (default 200). */
  status?: (result: Record<string, unknown>) => number;
}

/** Query values as the schema expects: numbers and booleans parsed, bad text passed on for zod to name. */
export function num(v: string | null): number | string | undefined {
  if (v === null || v === '') return undefined;
  return /^-?\d+$/.test(v) ? Number(v) : v;
}

export function bool(v: string | null): boolean | string | undefined {
  if (v === null || v === '') return undefined;
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  return v;
}

function str(v: string | null): string | undefined {
  return v === null || v === '' ? undefined : v;
}

const id = (r: RouteInput) => num(r.path.id!);
const withBody = (r: RouteInput, extra: Record<string, unknown>) => ({ ...r.body, ...extra });

/** A heartbeat is the path agent's own: a token of another agent (named by X-Agent-Id) does not beat for it. */
function asPathAgent(r: RouteInput): Record<string, never> {
  if (r.caller.agentId !== null && r.caller.agentId !== r.path.id) {
    throw new RelayError('unauthorized', `unauthorized: agentToken does not match agent ${r.path.id}`);
  }
  return {};
}

function clean(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}

/**
 * The REST surface of PROTOCOL.md as thin translations onto the method table: each route only
 * moves path, query, body and headers into the method's params. No business rule lives here.
 */
export const REST_ROUTES: RestRoute[] = [
  { verb: 'POST', pattern: /^\/api\/agents$/, method: 'agent/register', params: (r) => r.body, status: (res) => (res.created ? 201 : 200) },
  {
    verb: 'GET',
    pattern: /^\/api\/agents$/,
    method: 'agent/list',
    params: (r) =>
      clean({ status: str(r.query.get('status')), tag: str(r.query.get('tag')), capability: str(r.query.get('capability')), after: str(r.query.get('after')), limit: num(r.query.get('limit')) }),
  },
  // The path names the agent: X-Agent-Token alone proves the caller is it (X-Agent-Id may still name another caller: see Credentials).
  { verb: 'PATCH', pattern: /^\/api\/agents\/(?<id>[^/]+)$/, method: 'agent/update', params: (r) => withBody(r, { id: r.path.id }) },
  { verb: 'POST', pattern: /^\/api\/agents\/(?<id>[^/]+)\/heartbeat$/, method: 'agent/heartbeat', params: (r) => withBody(r, asPathAgent(r)) },
  { verb: 'POST', pattern: /^\/api\/messages$/, method: 'message/send', params: (r) => withBody(r, {}), status: () => 201 },
  {
    verb: 'GET',
    pattern: /^\/api\/messages$/,
    method: 'message/list',
    params: (r) =>
      clean({
        agentId: str(r.query.get('agentId')) ?? r.caller.agentId ?? undefined,
        since: num(r.query.get('since')),
        limit: num(r.query.get('limit')),
        channel: str(r.query.get('channel')),
        threadId: num(r.query.get('threadId')),
        unread: bool(r.query.get('unread')),
      }),
  },
  {
    verb: 'GET',
    pattern: /^\/api\/messages\/search$/,
    method: 'message/search',
    params: (r) =>
      clean({
        query: r.query.get('q') ?? undefined,
        channel: str(r.query.get('channel')),
        from: str(r.query.get('from')),
        to: str(r.query.get('to')),
        since: num(r.query.get('since')),
        limit: num(r.query.get('limit')),
        after: str(r.query.get('after')),
      }),
  },
  { verb: 'POST', pattern: /^\/api\/messages\/read$/, method: 'message/read', params: (r) => withBody(r, {}) },
  { verb: 'GET', pattern: /^\/api\/messages\/(?<id>\d+)$/, method: 'message/get', params: (r) => ({ id: id(r) }) },
  { verb: 'POST', pattern: /^\/api\/messages\/(?<id>\d+)\/claim$/, method: 'message/claim', params: (r) => withBody(r, { id: id(r) }) },
  { verb: 'POST', pattern: /^\/api\/messages\/(?<id>\d+)\/ack$/, method: 'message/ack', params: (r) => withBody(r, { id: id(r) }) },
  { verb: 'GET', pattern: /^\/api\/threads\/(?<id>\d+)$/, method: 'thread/get', params: (r) => clean({ id: id(r), since: num(r.query.get('since')) }) },
  { verb: 'POST', pattern: /^\/api\/tasks$/, method: 'task/create', params: (r) => withBody(r, {}), status: (res) => (res.created ? 201 : 200) },
  {
    verb: 'GET',
    pattern: /^\/api\/tasks$/,
    method: 'task/list',
    params: (r) =>
      clean({
        status: str(r.query.get('status')),
        target: str(r.query.get('target')),
        channel: str(r.query.get('channel')),
        claimedBy: str(r.query.get('claimedBy')),
        limit: num(r.query.get('limit')),
        since: num(r.query.get('since')),
      }),
  },
  { verb: 'GET', pattern: /^\/api\/tasks\/(?<id>\d+)$/, method: 'task/get', params: (r) => clean({ id: id(r), since: num(r.query.get('since')) }) },
  { verb: 'POST', pattern: /^\/api\/tasks\/(?<id>\d+)\/claim$/, method: 'task/claim', params: (r) => withBody(r, { id: id(r) }) },
  { verb: 'PATCH', pattern: /^\/api\/tasks\/(?<id>\d+)$/, method: 'task/update', params: (r) => withBody(r, { id: id(r) }) },
  { verb: 'POST', pattern: /^\/api\/tasks\/(?<id>\d+)\/release$/, method: 'task/release', params: (r) => withBody(r, { id: id(r) }) },
  { verb: 'POST', pattern: /^\/api\/leases$/, method: 'lease/acquire', params: (r) => withBody(r, {}), status: () => 201 },
  {
    verb: 'GET',
    pattern: /^\/api\/leases$/,
    method: 'lease/list',
    params: (r) => clean({ holder: str(r.query.get('holder')), resource: str(r.query.get('resource')), limit: num(r.query.get('limit')), since: num(r.query.get('since')) }),
  },
  { verb: 'POST', pattern: /^\/api\/leases\/(?<id>\d+)\/renew$/, method: 'lease/renew', params: (r) => withBody(r, { leaseId: id(r) }) },
  { verb: 'POST', pattern: /^\/api\/leases\/(?<id>\d+)\/release$/, method: 'lease/release', params: (r) => withBody(r, { leaseId: id(r) }) },
  {
    verb: 'GET',
    pattern: /^\/api\/events$/,
    method: 'event/list',
    params: (r) => clean({ since: num(r.query.get('since')), kind: str(r.query.get('kind')), taskId: num(r.query.get('taskId')), limit: num(r.query.get('limit')) }),
  },
];

export function matchRoute(routes: readonly RestRoute[], ex: HttpExchange): { route: RestRoute; path: Record<string, string> } | 'method' | null {
  let pathMatched = false;
  for (const route of routes) {
    const m = route.pattern.exec(ex.path);
    if (!m) continue;
    pathMatched = true;
    if (route.verb === ex.method) return { route, path: { ...(m.groups ?? {}) } };
  }
  return pathMatched ? 'method' : null;
}
