import { EventEmitter } from 'eventemitter3';
import { createJSONRPCErrorResponse, JSONRPCClient, JSONRPCErrorException, type JSONRPCResponse } from 'json-rpc-2.0';
import { shouldReconnect } from '../protocol/close-codes.js';
import { WS_BEARER_PREFIX, WS_PATH, WS_SUBPROTOCOL } from '../protocol/websocket.js';
import type { Agent, AgentSummary, Message, RelayEvent } from '../protocol/common.js';
import type { MethodName, MethodParams, MethodResult } from '../protocol/method-table.js';
import type { AgentRegisterParams } from '../protocol/methods/agent.js';
import type { StreamTopic } from '../protocol/methods/event.js';
import type { MessageSendParams } from '../protocol/methods/message.js';
import type { LeaseUpdatedParams, TaskUpdatedParams } from '../protocol/notifications.js';
import { DEFAULT_BACKOFF, reconnectDelay, type BackoffPolicy } from './backoff.js';
import { RelayClosedError, RelayDisconnectedError, RelayRpcError, RelayTimeoutError } from './errors.js';
import { RecentIds } from './recent-ids.js';

/** The part of a WebSocket the client uses: the browser's WebSocket and the `ws` package both fit. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: { message?: string }) => void) | null;
}

export type SocketFactory = (url: string, protocols: string[], token: string | undefined) => WebSocketLike;

/** Who this client is: an agent (registers) or an observer (subscribes to the live feed). */
export type AgentIdentity = Omit<AgentRegisterParams, 'agentToken' | 'since'>;

export interface RelayClientOptions {
  /** `http://host:port` or `ws://host:port/rpc`. */
  url: string;
  /** Relay token, when the relay has one. */
  token?: string;
  /** Register as this agent on every (re)connect. */
  agent?: AgentIdentity;
  /** Token of an earlier registration of `agent.id`, to resume it. */
  agentToken?: string;
  /** Observe these topics (the dashboard, `tail`) instead of, or as well as, being an agent. */
  observe?: StreamTopic[];
  /** Last message id the application already has; later ones are delivered first on connect. */
  since?: number;
  /** Last event id the application already has (observers of `events`). */
  eventsSince?: number;
  /** Heartbeat interval for agents, ms (0 turns it off). */
  heartbeatMs?: number;
  /** Reconnect policy, or false to stay down after a drop. */
  reconnect?: Partial<BackoffPolicy> | false;
  /** Let connect() keep trying until the relay answers, instead of failing on the first refusal. */
  waitForRelay?: boolean;
  /** Calls made while disconnected wait for the connection (bounded by the call timeout) or fail at once. */
  whenDisconnected?: 'wait' | 'fail';
  /** Bound on a call, including any wait for the connection, ms. */
  callTimeoutMs?: number;
  /** How to open a socket; defaults to the global WebSocket (browsers, Node ≥ 22). */
  createSocket?: SocketFactory;
}

export interface ReadyInfo {
  agent: Agent | null;
  cursor: number;
  reconnected: boolean;
}

export interface DisconnectInfo {
  code: number;
  reason: string;
  willReconnect: boolean;
  /** When willReconnect: the wait before the next attempt. */
  delayMs?: number;
}

export interface RelayClientEvents {
  ready: [info: ReadyInfo];
  disconnected: [info: DisconnectInfo];
  /** Every message once, in order, across reconnects. */
  message: [message: Message];
  task: [update: TaskUpdatedParams];
  /** A lease was acquired, renewed or ended (to its holder, and to observers of `leases`). */
  lease: [update: LeaseUpdatedParams];
  /** An agent changed: it comes without `meta` (agent/list has it). */
  agent: [agent: AgentSummary];
  event: [event: RelayEvent];
  /** Trouble the client handled itself (a failed heartbeat, an unreadable frame). */
  error: [error: Error];
  /** The client closed for good: by close(), or refused by the relay. */
  closed: [reason: Error | null];
}

type State = 'idle' | 'connecting' | 'handshaking' | 'ready' | 'waiting' | 'closed';

const TIMEOUT_CODE = -1;
const SOCKET_OPEN = 1;

/** `http://h:p` → `ws://h:p/rpc`; a ws URL without a path gets `/rpc`. */
export function toWebSocketUrl(url: string): string {
  const u = new URL(url);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  if (u.pathname === '/' || u.pathname === '') u.pathname = WS_PATH;
  return u.toString();
}

/** Browsers cannot set headers on an upgrade: the token rides as a `bearer.TOKEN` subprotocol. */
function globalSocket(url: string, protocols: string[], token: string | undefined): WebSocketLike {
  const Ctor = (globalThis as { WebSocket?: new (url: string, protocols: string[]) => WebSocketLike }).WebSocket;
  if (!Ctor) throw new Error('no global WebSocket: pass createSocket (clients/index.ts does this for Node)');
  return new Ctor(url, token ? [...protocols, WS_BEARER_PREFIX + token] : protocols);
}

/**
 * A typed JSON-RPC client for the relay that survives relay restarts and network drops: it
 * reconnects with backoff, re-registers with its agent token and `since` = the last message id it
 * delivered, and hands each message to the application exactly once, in order.
 */
export class RelayClient extends EventEmitter<RelayClientEvents> {
  readonly url: string;
  private readonly opts: RelayClientOptions;
  private readonly backoff: BackoffPolicy;
  private readonly createSocket: SocketFactory;
  private state: State = 'idle';
  private ws: WebSocketLike | null = null;
  private rpc: JSONRPCClient | null = null;
  private attempt = 0;
  private everReady = false;
  private lastSocketError = '';
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private heartbeatTimer: ReturnType<typeof setInterval> | null = null;
  private readyWaiters = new Set<{ resolve: () => void; reject: (e: Error) => void }>();
  private firstConnect: { resolve: () => void; reject: (e: Error) => void } | null = null;
  private closedReason: Error | null = null;
  private readonly seenMessages = new RecentIds();
  private readonly seenEvents = new RecentIds();
  private _cursor: number;
  private _eventCursor: number;
  private _agent: Agent | null = null;
  private _agentToken: string | undefined;

  constructor(opts: RelayClientOptions) {
    super();
    this.opts = opts;
    this.url = toWebSocketUrl(opts.url);
    this.backoff = { ...DEFAULT_BACKOFF, ...(opts.reconnect || {}) };
    this.createSocket = opts.createSocket ?? globalSocket;
    this._cursor = opts.since ?? 0;
    this._eventCursor = opts.eventsSince ?? 0;
    this._agentToken = opts.agentToken;
  }

  /** Highest message id delivered to the application. */
  get cursor(): number {
    return this._cursor;
  }
  get eventCursor(): number {
    return this._eventCursor;
  }
  /** This client's agent as the relay last described it (null for observers). */
  get agent(): Agent | null {
    return this._agent;
  }
  get agentToken(): string | undefined {
    return this._agentToken;
  }
  get connected(): boolean {
    return this.state === 'ready';
  }

  /** Open the connection and register/subscribe; resolves once ready. */
  connect(): Promise<void> {
    if (this.state !== 'idle') return Promise.reject(new Error(`connect() called twice (state ${this.state})`));
    return new Promise<void>((resolve, reject) => {
      this.firstConnect = { resolve, reject };
      this.open();
    });
  }

  /** Call a method of the contract. Typed from protocol/: params and result cannot drift. */
  async call<M extends MethodName>(method: M, params: MethodParams<M>, opts: { timeoutMs?: number } = {}): Promise<MethodResult<M>> {
    const deadline = Date.now() + (opts.timeoutMs ?? this.opts.callTimeoutMs ?? 30_000);
    if (this.state !== 'ready') await this.waitReady(method, deadline);
    return this.request(method, params, deadline);
  }

  /** Send a message; see message/send. */
  send(to: string, body: string, extra: Omit<MessageSendParams, 'to' | 'body'> = {}): Promise<MethodResult<'message/send'>> {
    return this.call('message/send', { to, body, ...extra });
  }

  /** Every incoming message, in order, until the client closes. */
  messages(): AsyncIterableIterator<Message> {
    const queue: Message[] = [];
    let wake: (() => void) | null = null;
    let done = false;
    const onMessage = (m: Message) => {
      queue.push(m);
      wake?.();
    };
    const onClosed = () => {
      done = true;
      wake?.();
    };
    const stop = () => {
      done = true;
      this.off('message', onMessage);
      this.off('closed', onClosed);
    };
    this.on('message', onMessage);
    this.once('closed', onClosed);
    if (this.state === 'closed') done = true;
    const iterator: AsyncIterableIterator<Message> = {
      [Symbol.asyncIterator]: () => iterator,
      next: async () => {
        while (queue.length === 0 && !done) await new Promise<void>((resolve) => (wake = resolve));
        wake = null;
        if (queue.length > 0) return { value: queue.shift()!, done: false };
        stop();
        return { value: undefined, done: true };
      },
      return: async () => {
        stop();
        return { value: undefined, done: true };
      },
    };
    return iterator;
  }

  /**
   * Close for good. With `leave`, an agent first marks itself offline so its claimed work is
   * released now rather than after the stale TTL.
   */
  async close(opts: { leave?: boolean } = {}): Promise<void> {
    if (this.state === 'closed') return;
    if (opts.leave && this.state === 'ready' && this._agent) {
      await this.request('agent/update', { status: 'offline' }, Date.now() + 5000).catch(() => undefined);
    }
    this.finish(null);
  }

  // ---- connection lifecycle ----

  private open(): void {
    this.state = 'connecting';
    this.lastSocketError = '';
    const protocols = [WS_SUBPROTOCOL];
    let ws: WebSocketLike;
    try {
      ws = this.createSocket(this.url, protocols, this.opts.token);
    } catch (err) {
      this.finish(err as Error);
      return;
    }
    this.ws = ws;
    ws.onopen = () => void this.handshake(ws);
    ws.onmessage = (ev) => this.onFrame(typeof ev.data === 'string' ? ev.data : String(ev.data));
    ws.onerror = (ev) => {
      this.lastSocketError = ev.message ?? 'socket error';
    };
    ws.onclose = (ev) => this.onSocketClose(ws, ev.code, ev.reason);
  }

  private async handshake(ws: WebSocketLike): Promise<void> {
    if (ws !== this.ws) return;
    this.state = 'handshaking';
    this.rpc = new JSONRPCClient((request) => {
      if (ws.readyState !== SOCKET_OPEN) throw new RelayDisconnectedError('not connected');
      ws.send(JSON.stringify(request));
    });
    const deadline = Date.now() + (this.opts.callTimeoutMs ?? 30_000);
    try {
      if (this.opts.agent) {
        const r = await this.request(
          'agent/register',
          {
            ...this.opts.agent,
            ...(this._agent ? { id: this._agent.id } : {}),
            ...(this._agentToken ? { agentToken: this._agentToken } : {}),
            ...(this.everReady || this.opts.since !== undefined ? { since: this._cursor } : {}),
          },
          deadline,
        );
        this._agent = r.agent;
        this._agentToken = r.agentToken;
        this._cursor = Math.max(this._cursor, r.cursor);
      }
      if (this.opts.observe?.length) {
        const resume = this.everReady || this.opts.since !== undefined;
        const r = await this.request(
          'stream/subscribe',
          {
            topics: this.opts.observe,
            ...(resume ? { since: this._cursor } : {}),
            ...(this.everReady || this.opts.eventsSince !== undefined ? { eventsSince: this._eventCursor } : {}),
          },
          deadline,
        );
        this._cursor = Math.max(this._cursor, r.cursor);
        this._eventCursor = Math.max(this._eventCursor, r.eventCursor);
      }
    } catch (err) {
      if (ws !== this.ws) return;
      if (err instanceof RelayRpcError && !err.retryable) {
        // A refused identity or an expired cursor will not fix itself by reconnecting.
        this.finish(err);
        ws.close(1000, 'handshake refused');
        return;
      }
      ws.close(1011, 'handshake failed');
      return;
    }
    if (ws !== this.ws) return;
    const reconnected = this.everReady;
    this.state = 'ready';
    this.everReady = true;
    this.attempt = 0;
    this.startHeartbeat();
    for (const w of this.readyWaiters) w.resolve();
    this.readyWaiters.clear();
    this.firstConnect?.resolve();
    this.firstConnect = null;
    this.emit('ready', { agent: this._agent, cursor: this._cursor, reconnected });
  }

  private onSocketClose(ws: WebSocketLike, code: number, reason: string): void {
    if (ws !== this.ws) return;
    this.ws = null;
    this.stopHeartbeat();
    this.rpc?.rejectAllPendingRequests(`connection closed (${code})`);
    this.rpc = null;
    if (this.state === 'closed') return;
    const why = reason || this.lastSocketError || `code ${code}`;
    if (!shouldReconnect(code)) {
      this.emit('disconnected', { code, reason: why, willReconnect: false });
      this.finish(new RelayClosedError(`relay closed the connection for good: ${why}`, code));
      return;
    }
    if (!this.everReady && !this.opts.waitForRelay) {
      this.emit('disconnected', { code, reason: why, willReconnect: false });
      this.finish(new RelayDisconnectedError(`relay not reachable at ${this.url}: ${why}`));
      return;
    }
    if (this.opts.reconnect === false) {
      this.emit('disconnected', { code, reason: why, willReconnect: false });
      this.finish(new RelayDisconnectedError(`connection to ${this.url} lost (${why}) and reconnect is off`));
      return;
    }
    const delayMs = reconnectDelay(this.attempt++, this.backoff);
    this.state = 'waiting';
    this.emit('disconnected', { code, reason: why, willReconnect: true, delayMs });
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.state === 'waiting') this.open();
    }, delayMs);
  }

  /** Enter the closed state once: stop timers, fail waiters, end iterators. */
  private finish(reason: Error | null): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.closedReason = reason;
    this.stopHeartbeat();
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    const ws = this.ws;
    this.ws = null;
    this.rpc?.rejectAllPendingRequests('client closed');
    this.rpc = null;
    if (ws && (ws.readyState === 0 || ws.readyState === SOCKET_OPEN)) ws.close(1000, 'client closing');
    const err = reason ?? new RelayClosedError('client closed', 1000);
    for (const w of this.readyWaiters) w.reject(err);
    this.readyWaiters.clear();
    this.firstConnect?.reject(err);
    this.firstConnect = null;
    this.emit('closed', reason);
  }

  private waitReady(method: string, deadline: number): Promise<void> {
    if (this.state === 'closed') return Promise.reject(this.closedReason ?? new RelayClosedError('client closed', 1000));
    if (this.state === 'idle') return Promise.reject(new RelayDisconnectedError(`${method}: call connect() first`));
    if (this.opts.whenDisconnected === 'fail') return Promise.reject(new RelayDisconnectedError(`${method}: not connected to the relay at ${this.url}`));
    return new Promise<void>((resolve, reject) => {
      const waiter = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const timer = setTimeout(
        () => {
          this.readyWaiters.delete(waiter);
          reject(new RelayTimeoutError(`${method}: still not connected to the relay at ${this.url}`));
        },
        Math.max(0, deadline - Date.now()),
      );
      this.readyWaiters.add(waiter);
    });
  }

  private async request<M extends MethodName>(method: M, params: MethodParams<M>, deadline: number): Promise<MethodResult<M>> {
    const rpc = this.rpc;
    if (!rpc) throw new RelayDisconnectedError(`${method}: not connected to the relay at ${this.url}`);
    const timeoutMs = Math.max(1, deadline - Date.now());
    try {
      return (await rpc.timeout(timeoutMs, (id) => createJSONRPCErrorResponse(id, TIMEOUT_CODE, 'timeout')).request(method, params)) as MethodResult<M>;
    } catch (err) {
      if (err instanceof JSONRPCErrorException) {
        if (err.code === TIMEOUT_CODE) throw new RelayTimeoutError(`${method}: no answer within ${timeoutMs} ms`);
        if (err.code === 0) throw new RelayDisconnectedError(`${method}: ${err.message}; it may or may not have been applied`);
        throw new RelayRpcError(err.code, err.message, err.data as Record<string, unknown> | undefined, method);
      }
      if (err instanceof Error) throw err;
      throw new Error(String(err));
    }
  }

  // ---- incoming frames ----

  private onFrame(text: string): void {
    let frame: unknown;
    try {
      frame = JSON.parse(text);
    } catch {
      this.emit('error', new Error('unreadable frame from relay'));
      return;
    }
    for (const m of Array.isArray(frame) ? frame : [frame]) {
      if (!m || typeof m !== 'object') continue;
      const msg = m as { id?: unknown; method?: unknown; params?: unknown; error?: { message?: string } };
      if (typeof msg.method === 'string' && msg.id === undefined) this.onNotification(msg.method, msg.params as Record<string, unknown>);
      else if (msg.id === null && msg.error) this.emit('error', new Error(`relay: ${msg.error.message ?? 'error'}`));
      else if (msg.id !== undefined) this.rpc?.receive(msg as JSONRPCResponse);
    }
  }

  private onNotification(method: string, params: Record<string, unknown>): void {
    switch (method) {
      case 'message/new': {
        const message = params.message as Message;
        if (!this.seenMessages.add(message.id)) return;
        this._cursor = Math.max(this._cursor, message.id);
        this.emit('message', message);
        return;
      }
      case 'task/updated':
        this.emit('task', params as unknown as TaskUpdatedParams);
        return;
      case 'lease/updated':
        this.emit('lease', params as unknown as LeaseUpdatedParams);
        return;
      case 'agent/updated': {
        const agent = params.agent as AgentSummary;
        // Pushes leave meta out: keep the one this client registered with.
        if (this._agent && agent.id === this._agent.id) this._agent = { ...agent, meta: this._agent.meta };
        this.emit('agent', agent);
        return;
      }
      case 'event/new': {
        const event = params.event as RelayEvent;
        if (!this.seenEvents.add(event.id)) return;
        this._eventCursor = Math.max(this._eventCursor, event.id);
        this.emit('event', event);
        return;
      }
      default:
      // Unknown notifications are ignored: newer relays may add some.
    }
  }

  // ---- heartbeat ----

  private startHeartbeat(): void {
    const every = this.opts.heartbeatMs ?? 30_000;
    if (!this.opts.agent || every <= 0) return;
    this.stopHeartbeat();
    this.heartbeatTimer = setInterval(() => {
      if (this.state !== 'ready') return;
      this.request('agent/heartbeat', {}, Date.now() + every).then(
        (r) => {
          this._agent = r.agent;
        },
        (err: Error) => this.emit('error', err),
      );
    }, every);
    (this.heartbeatTimer as { unref?: () => void }).unref?.();
  }

  private stopHeartbeat(): void {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
  }
}
