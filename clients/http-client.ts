import type { MethodName, MethodParams, MethodResult } from '../protocol/method-table.js';
import type { Message } from '../protocol/common.js';
import { RelayRpcError } from './errors.js';
import { relayHttpUrl } from './relay-url.js';

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
    const response = await this.fetch('/rpc', { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    const frame = (await response.json().catch(() => null)) as { result?: unknown; error?: { code: number; message: string; data?: Record<string, unknown> } } | null;
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
    const response = await this.fetch(`/api/agents/${encodeURIComponent(identity.agentId)}/inbox?${q}`, { headers: { 'x-agent-token': identity.agentToken } }, (opts.waitSec ?? 0) * 1000);
    return this.json(response, 'inbox');
  }

  /** `GET /healthz`. */
  async health(): Promise<{ ok: boolean; dbWritable: boolean; agents: number; connections: number; cursor: number }> {
    return this.json(await this.fetch('/healthz', {}), 'healthz');
  }

  /** Open, update or resolve a task through an integration's ingress, authenticated by its secret. */
  async ingress(integration: string, secret: string, event: Record<string, unknown>): Promise<{ task?: unknown; created?: boolean; duplicate?: boolean }> {
    const response = await this.fetch(`/api/integrations/${encodeURIComponent(integration)}/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${secret}` },
      body: JSON.stringify(event),
    });
    return this.json(response, 'ingress');
  }

  private async json<T>(response: Response, what: string): Promise<T> {
    const body = (await response.json().catch(() => null)) as (T & { error?: { code: number; message: string; data?: Record<string, unknown> } }) | null;
    if (!response.ok || !body) {
      const err = body?.error;
      throw new RelayRpcError(err?.code ?? -32603, err?.message ?? `${what}: HTTP ${response.status}`, err?.data, what);
    }
    return body;
  }

  private async fetch(path: string, init: RequestInit, extraMs = 0): Promise<Response> {
    const headers = new Headers(init.headers);
    // Ingress carries the integration's secret instead of the relay token.
    if (this.token && !headers.has('authorization')) headers.set('authorization', `Bearer ${this.token}`);
    try {
      return await fetch(this.url + path, { ...init, headers, signal: AbortSignal.timeout(this.timeoutMs + extraMs) });
    } catch (err) {
      const e = err as Error & { cause?: { code?: string; message?: string; errors?: Array<{ code?: string }> } };
      const cause = e.name === 'TimeoutError' ? `no answer within ${this.timeoutMs + extraMs} ms` : (e.cause?.code ?? e.cause?.errors?.[0]?.code ?? e.cause?.message ?? e.message);
      throw new RelayUnreachableError(this.url, cause);
    }
  }
}
