import { EventEmitter } from 'eventemitter3';
import WebSocket from 'ws';

/** An error the app-server answered with. */
export class AppServerError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly method: string,
  ) {
    super(message);
    this.name = 'AppServerError';
  }
}

export interface ServerRequest {
  id: number | string;
  method: string;
  params: Record<string, any>;
}

export interface AppServerEvents {
  notification: [method: string, params: Record<string, any>];
  /** A request from the server: answer it with respond() or respondError(), always. */
  request: [request: ServerRequest];
  close: [reason: string];
}

const REQUEST_TIMEOUT_MS = 30_000;

/**
 * One WebSocket to `codex app-server`. Frames are told apart by their members, not by a
 * `jsonrpc` field (the server never sends one): {id, method} is a server request that must be
 * answered, {method} a notification, {id, result|error} a response.
 */
export class AppServerConnection extends EventEmitter<AppServerEvents> {
  private nextId = 1;
  private readonly pending = new Map<number, { method: string; resolve: (v: any) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private closed = false;

  private constructor(private readonly ws: WebSocket) {
    super();
    ws.on('message', (data) => this.onFrame(data.toString()));
    ws.on('close', (code, reason) => this.onClose(`app-server connection closed (${code}${reason.length ? ` ${reason.toString()}` : ''})`));
    ws.on('error', () => undefined); // 'close' follows and carries the news
  }

  /** Connect (no Origin header: the app-server refuses any request carrying one). */
  static connect(url: string, timeoutMs = 10_000): Promise<AppServerConnection> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { handshakeTimeout: timeoutMs });
      ws.once('open', () => resolve(new AppServerConnection(ws)));
      ws.once('error', (err) => reject(new Error(`cannot reach the Codex app-server at ${url}: ${err.message}`)));
      ws.once('unexpected-response', (_req, res) => reject(new Error(`the Codex app-server at ${url} refused the connection: HTTP ${res.statusCode}`)));
    });
  }

  get isOpen(): boolean {
    return !this.closed && this.ws.readyState === WebSocket.OPEN;
  }

  /** `initialize` then the `initialized` notification: required on every new socket. */
  async handshake(version: string): Promise<{ userAgent?: string }> {
    const result = await this.request<{ userAgent?: string }>('initialize', {
      clientInfo: { name: 'agent_relay_codex', title: 'Agent Relay Codex adapter', version },
      capabilities: { experimentalApi: false },
    });
    this.notify('initialized');
    return result;
  }

  request<T = any>(method: string, params?: Record<string, unknown>, timeoutMs = REQUEST_TIMEOUT_MS): Promise<T> {
    if (!this.isOpen) return Promise.reject(new Error(`${method}: app-server connection is closed`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${method}: no answer from the app-server within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { method, resolve, reject, timer });
      this.ws.send(JSON.stringify({ id, method, ...(params ? { params } : {}) }));
    });
  }

  notify(method: string, params?: Record<string, unknown>): void {
    if (this.isOpen) this.ws.send(JSON.stringify({ method, ...(params ? { params } : {}) }));
  }

  respond(id: number | string, result: unknown): void {
    if (this.isOpen) this.ws.send(JSON.stringify({ id, result }));
  }

  respondError(id: number | string, code: number, message: string): void {
    if (this.isOpen) this.ws.send(JSON.stringify({ id, error: { code, message } }));
  }

  close(): void {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(1000);
    this.onClose('closed by the adapter');
  }

  private onFrame(text: string): void {
    let msg: any;
    try {
      msg = JSON.parse(text);
    } catch {
      return; // the server drops unparseable frames too
    }
    if (!msg || typeof msg !== 'object') return;
    const hasId = msg.id !== undefined && msg.id !== null;
    if (hasId && typeof msg.method === 'string') {
      this.emit('request', { id: msg.id, method: msg.method, params: msg.params ?? {} });
    } else if (typeof msg.method === 'string') {
      this.emit('notification', msg.method, msg.params ?? {});
    } else if (hasId) {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      clearTimeout(p.timer);
      if (msg.error) p.reject(new AppServerError(msg.error.code ?? 0, String(msg.error.message ?? 'error'), p.method));
      else p.resolve(msg.result);
    }
  }

  private onClose(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new Error(`${p.method}: ${reason}`));
    }
    this.pending.clear();
    this.emit('close', reason);
  }
}
