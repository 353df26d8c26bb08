import WebSocket from 'ws';
import type { Test } from 'tap';
import { waitFor } from './wait.js';

export interface RpcErrorBody {
  code: number;
  message: string;
  data?: Record<string, unknown>;
}

export class RpcError extends Error {
  constructor(readonly error: RpcErrorBody) {
    super(`${error.code} ${error.message}`);
  }
  get code(): number {
    return this.error.code;
  }
}

/** Past any long-poll a test asks for (message/wait and the like take at most 50 s), short of tap's 120 s per file. */
const CALL_TIMEOUT_MS = 60_000;

interface Notification {
  method: string;
  params: Record<string, any>;
}

/**
 * A raw JSON-RPC client over `ws` for protocol-level assertions: it records every notification
 * and lets tests wait for them. Not the product client library: it hides nothing.
 */
export class WsRpc {
  readonly notifications: Notification[] = [];
  readonly raw: unknown[] = [];
  private nextId = 1;
  private readonly pending = new Map<number | string, { resolve: (v: any) => void; reject: (e: unknown) => void }>();
  private waiters: Array<() => void> = [];
  closeCode: number | null = null;
  closeReason = '';
  readonly closed: Promise<number>;

  private constructor(readonly ws: WebSocket) {
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeCode = code;
        this.closeReason = reason.toString();
        for (const p of this.pending.values()) p.reject(new Error(`socket closed ${code}`));
        this.pending.clear();
        this.wake();
        resolve(code);
      });
    });
    ws.on('message', (data) => {
      const msg = JSON.parse(data.toString()) as any;
      this.raw.push(msg);
      const entries = Array.isArray(msg) ? msg : [msg];
      for (const m of entries) {
        if (m.method && m.id === undefined) {
          this.notifications.push({ method: m.method, params: m.params });
        } else if (m.id !== undefined && m.id !== null && this.pending.has(m.id)) {
          const p = this.pending.get(m.id)!;
          this.pending.delete(m.id);
          if (m.error) p.reject(new RpcError(m.error));
          else p.resolve(m.result);
        }
      }
      this.wake();
    });
  }

  static connect(t: Test, url: string, options: WebSocket.ClientOptions & { protocols?: string[] } = {}): Promise<WsRpc> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, options.protocols ?? [], options);
      const client = new WsRpc(ws);
      t.teardown(() => client.close());
      ws.once('open', () => resolve(client));
      ws.once('unexpected-response', (_req, res) => reject(Object.assign(new Error(`upgrade refused: ${res.statusCode}`), { status: res.statusCode })));
      ws.once('error', reject);
    });
  }

  /**
   * One request. Fails at once on a socket that is not open (ws drops such a send silently, so the
   * answer would never come), and after `timeoutMs` with no answer, naming the method: a test that
   * waits on an unanswered request says which one instead of running into the file's timeout.
   */
  call<T = any>(method: string, params?: unknown, timeoutMs = CALL_TIMEOUT_MS): Promise<T> {
    const id = this.nextId++;
    if (this.ws.readyState !== WebSocket.OPEN) return Promise.reject(new Error(`${method}: the socket is not open (readyState ${this.ws.readyState}, close code ${this.closeCode})`));
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${method} (request ${id}): no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (value: T) => {
          clearTimeout(timer);
          resolve(value);
        },
        reject: (error: unknown) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) }));
    });
  }

  /** Send raw text and wait for the next frame that is not a notification. */
  async sendRaw(text: string | Buffer, opts: { binary?: boolean } = {}): Promise<any> {
    const before = this.raw.length;
    this.ws.send(text, { binary: Boolean(opts.binary) });
    await this.until(() => this.raw.slice(before).some((m: any) => Array.isArray(m) || m.method === undefined), 5000, 'raw reply');
    return this.raw.slice(before).find((m: any) => Array.isArray(m) || m.method === undefined);
  }

  /** Notifications of a method (default message/new). */
  messages(): Array<Record<string, any>> {
    return this.notifications.filter((n) => n.method === 'message/new').map((n) => n.params.message);
  }

  of(method: string): Array<Record<string, any>> {
    return this.notifications.filter((n) => n.method === method).map((n) => n.params);
  }

  async until(cond: () => boolean, timeoutMs = 3000, what = 'condition'): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!cond()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  close(): Promise<number> {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close();
    return this.closed;
  }

  /** Drop the TCP connection without a close handshake (a network blip). */
  terminate(): void {
    this.ws.terminate();
  }
}

/** Register a fresh agent on a new connection. */
export async function connectAgent(t: Test, url: string, params: Record<string, unknown> = {}): Promise<{ rpc: WsRpc; id: string; token: string; cursor: number }> {
  const rpc = await WsRpc.connect(t, url);
  const r = await rpc.call('agent/register', params);
  return { rpc, id: r.agent.id, token: r.agentToken, cursor: r.cursor };
}

/** The RpcError a call fails with; throws (failing the test) if the call succeeds. */
export async function rpcErrorOf(p: Promise<unknown>): Promise<RpcError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof RpcError) return err;
    throw err;
  }
  throw new Error('expected the call to fail with a JSON-RPC error, but it succeeded');
}

/** Wait until the relay reports the agent's socket gone (agent/list `connected: false`). */
export async function untilDisconnected(t: Test, wsUrl: string, id: string): Promise<void> {
  const probe = await WsRpc.connect(t, wsUrl);
  await waitFor(async () => {
    const { agents } = await probe.call('agent/list', {});
    return agents.find((a: { id: string }) => a.id === id)?.connected === false;
  }, `the relay to drop ${id}'s socket`);
  await probe.close();
}
