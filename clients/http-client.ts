import type * as Http from 'node:http';
import { createRequire } from 'node:module';
import type { MethodName, MethodParams, MethodResult } from '../protocol/method-table.js';
import type { Message } from '../protocol/common.js';
import { RelayRpcError } from './errors.js';
import { relayHttpUrl } from './relay-url.js';

// node:http through require, not an ESM import: importing it builds an ESM facade that reads
// every export, and on Node 22+ one of them (its lazy WebSocket/fetch getters) loads undici,
// ~10 ms of a short command's start-up. https is only loaded for an https:// relay.
const require = createRequire(import.meta.url);
const requestFor = (protocol: string): typeof Http.request => (require(protocol === 'https:' ? 'node:https' : 'node:http') as typeof Http).request;

/** The relay did not answer at all (not running, wrong address, timed out). */
export class RelayUnreachableError extends Error {
  constructor(
    readonly url: string,
    cause: string,
  ) {
    super(`relay not reachable at ${url} (${cause}): is it running? start it with agent-relay serve`);
    this.name = 'RelayUnreachableError';
  }
}

export interface HttpClientOptions {
  /** `http://host:port` of the relay (its `ws://host:port/rpc` is taken too). */
  url: string;
  /** Relay token, when the relay has one. */
  token?: string;
  /** Bound on one request (long-polls add their wait), ms. */
  timeoutMs?: number;
}

/** An agent's identity for agent-scoped HTTP calls. */
export interface HttpIdentity {
  agentId: string;
  agentToken: string;
}

/**
 * One-shot calls over HTTP (`POST /rpc`, the inbox long-poll, webhook ingress) for scripts, hooks
 * and the CLI: no connection to keep, the same method table as the WebSocket.
 */
/** What `GET /healthz` reports. */
export interface RelayHealth {
  ok: boolean;
  dbWritable: boolean;
  /** The storage failure of the last commit (a full disk, an I/O error) until a write commits again. */
  lastCommitFailure: { at: number; error: string } | null;
  agents: number;
  connections: number;
  cursor: number;
  storage: { synchronous: string; journalMode: string };
}

export class RelayHttpClient {
  readonly url: string;
  private readonly token: string | undefined;
  private readonly timeoutMs: number;

  constructor(opts: HttpClientOptions) {
    this.url = relayHttpUrl(opts.url);
    this.token = opts.token;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
  }

  /** Call a method; agent-scoped methods take the identity's id and token as params. */
  async call<M extends MethodName>(method: M, params: MethodParams<M>, identity?: HttpIdentity): Promise<MethodResult<M>> {
    const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method, params: identity ? { ...params, agentId: identity.agentId, agentToken: identity.agentToken } : params });
    const response = await this.send('/rpc', { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    const frame = parseJson(response.body) as { result?: unknown; error?: { code: number; message: string; data?: Record<string, unknown> } } | null;
    if (!frame) throw new RelayRpcError(-32603, `relay answered HTTP ${response.status} without a JSON-RPC body`, undefined, method);
    if (frame.error) throw new RelayRpcError(frame.error.code, frame.error.message, frame.error.data, method);
    return frame.result as MethodResult<M>;
  }

  /** The agent's inbox after `since`; with `waitSec`, long-polls until something arrives or the wait ends. */
  async inbox(identity: HttpIdentity, opts: { since?: number; unread?: boolean; waitSec?: number; limit?: number } = {}): Promise<{ messages: Message[]; cursor: number }> {
    const q = new URLSearchParams();
    if (opts.since !== undefined) q.set('since', String(opts.since));
    if (opts.unread) q.set('unread', 'true');
    if (opts.waitSec) q.set('wait', String(opts.waitSec));
    if (opts.limit) q.set('limit', String(opts.limit));
    const response = await this.send(`/api/agents/${encodeURIComponent(identity.agentId)}/inbox?${q}`, { headers: { 'x-agent-token': identity.agentToken } }, (opts.waitSec ?? 0) * 1000);
    return this.json(response, 'inbox');
  }

  /** `GET /healthz`: the report, also when it is 503 (the database cannot be written). */
  async health(): Promise<RelayHealth> {
    // A 503 is still a report (the database is not writable, and why): return it, not an error.
    const response = await this.send('/healthz', {});
    const report = response.status === 503 ? parseJson(response.body) : null;
    if (report && typeof report === 'object' && 'dbWritable' in report) return report as RelayHealth;
    return this.json(response, 'healthz');
  }

  /** Open, update or resolve a task through an integration's ingress, authenticated by its secret. */
  async ingress(integration: string, secret: string, event: Record<string, unknown>): Promise<{ task?: unknown; created?: boolean; duplicate?: boolean }> {
    const response = await this.send(`/api/integrations/${encodeURIComponent(integration)}/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${secret}` },
      body: JSON.stringify(event),
    });
    return this.json(response, 'ingress');
  }

  private json<T>(response: HttpAnswer, what: string): T {
    const body = parseJson(response.body) as (T & { error?: { code: number; message: string; data?: Record<string, unknown> } }) | null;
    if (response.status < 200 || response.status >= 300 || !body) {
      const err = body?.error;
      throw new RelayRpcError(err?.code ?? -32603, err?.message ?? `${what}: HTTP ${response.status}`, err?.data, what);
    }
    return body;
  }

  /**
   * One request with node:http, not fetch: fetch loads undici on first use, which cost a short
   * CLI command or hook about 30 ms of its start-up (measured beside `node -e 0`).
   */
  private send(path: string, init: { method?: string; headers?: Record<string, string>; body?: string }, extraMs = 0): Promise<HttpAnswer> {
    const headers: Record<string, string> = { ...init.headers };
    // Ingress carries the integration's secret instead of the relay token.
    if (this.token && !headers.authorization) headers.authorization = `Bearer ${this.token}`;
    if (init.body !== undefined) headers['content-length'] = String(Buffer.byteLength(init.body));
    const timeoutMs = this.timeoutMs + extraMs;
    const url = new URL(this.url + path);
    const request = requestFor(url.protocol);
    return new Promise((resolve, reject) => {
      const unreachable = (cause: string) => reject(new RelayUnreachableError(this.url, cause));
      const req = request(url, { method: init.method ?? 'GET', headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', (err: NodeJS.ErrnoException) => unreachable(err.code ?? err.message));
      });
      // The whole exchange, not only idle time, is bounded: a relay that trickles an answer is as stuck as a silent one.
      const deadline = setTimeout(() => req.destroy(new TimeoutError(timeoutMs)), timeoutMs);
      req.on('close', () => clearTimeout(deadline));
      req.on('error', (err: NodeJS.ErrnoException) => unreachable(err instanceof TimeoutError ? err.message : (err.code ?? err.message)));
      req.end(init.body);
    });
  }
}

interface HttpAnswer {
  status: number;
  body: string;
}

class TimeoutError extends Error {
  constructor(ms: number) {
    super(`no answer within ${ms} ms`);
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return null;
  }
}
