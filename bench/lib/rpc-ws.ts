import WebSocket from 'ws';
import { WS_SUBPROTOCOL } from '../../protocol/websocket.js';
import { RelayRpcError as RpcError } from '../../clients/errors.js';

const NOTE_PREFIX = '{"jsonrpc":"2.0","method"';

/** The client library's error for a JSON-RPC error answer. */
export { RelayRpcError as RpcError } from '../../clients/errors.js';

/**
 * A lean JSON-RPC client over one WebSocket, for load generation: notifications are handed over
 * as raw text (no JSON parse), responses resolve their calls. Sends can be corked into one write.
 */
export class RpcWs {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: any) => void; reject: (e: unknown) => void }>();
  onNote: (text: string) => void = () => {};
  onClose: (code: number) => void = () => {};

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      const text = data.toString();
      if (text.startsWith(NOTE_PREFIX)) return this.onNote(text);
      const msg = JSON.parse(text) as any;
      for (const r of Array.isArray(msg) ? msg : [msg]) {
        const p = this.pending.get(r.id);
        if (!p) continue;
        this.pending.delete(r.id);
        if (r.error) p.reject(new RpcError(r.error.code, r.error.message, r.error.data));
        else p.resolve(r.result);
      }
    });
    ws.on('close', (code) => {
      for (const p of this.pending.values()) p.reject(new Error(`socket closed (${code})`));
      this.pending.clear();
      this.onClose(code);
    });
    ws.on('error', () => {});
  }

  static connect(url: string, timeoutMs = 30_000): Promise<RpcWs> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, [WS_SUBPROTOCOL], { perMessageDeflate: false, handshakeTimeout: timeoutMs });
      ws.once('open', () => resolve(new RpcWs(ws)));
      ws.once('error', reject);
    });
  }

  get inflight(): number {
    return this.pending.size;
  }

  call<T = any>(method: string, params?: unknown): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
    });
  }

  /** Several calls in one frame (a JSON-RPC batch); resolves each. */
  batch<T = any>(calls: Array<{ method: string; params?: unknown }>): Promise<Array<{ ok: true; result: T } | { ok: false; error: RpcError }>> {
    const entries = calls.map((c) => ({ jsonrpc: '2.0', id: this.nextId++, method: c.method, params: c.params }));
    const out = entries.map(
      (e) =>
        new Promise<{ ok: true; result: T } | { ok: false; error: RpcError }>((resolve) => {
          this.pending.set(e.id, { resolve: (result) => resolve({ ok: true, result }), reject: (error) => resolve({ ok: false, error: error as RpcError }) });
        }),
    );
    this.ws.send(JSON.stringify(entries));
    return Promise.all(out);
  }

  /** Run `fn` with the socket corked: its sends leave in one write. */
  cork(fn: () => void): void {
    const sock = (this.ws as unknown as { _socket?: { cork(): void; uncork(): void } })._socket;
    if (!sock) return fn();
    sock.cork();
    try {
      fn();
    } finally {
      process.nextTick(() => sock.uncork());
    }
  }

  close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.ws.terminate();
        resolve();
      }, 2000);
      this.ws.once('close', () => {
        clearTimeout(t);
        resolve();
      });
      this.ws.close(1000);
    });
  }
}

/** Open `n` things with at most `concurrency` at a time (connection storms make their own latency). */
export async function inParallel<T>(n: number, concurrency: number, open: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, concurrency) }, async () => {
      while (next < n) {
        const i = next++;
        out[i] = await open(i);
      }
    }),
  );
  return out;
}
