import { WS_SUBPROTOCOL } from '../../protocol/websocket.js';
import { RelayRpcError as RpcError } from '../../clients/errors.js';
import { FastWs } from './fast-ws.js';

const NOTE_PREFIX = '{"jsonrpc":"2.0","method"';

/** The client library's error for a JSON-RPC error answer. */
export { RelayRpcError as RpcError } from '../../clients/errors.js';

/** An error answer as the client library's error, without a stack: capturing one was 7% of a claimer's CPU, and it would only show this socket's read path. */
function answerError(e: { code: number; message: string; data?: Record<string, unknown> }): RpcError {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return new RpcError(e.code, e.message, e.data);
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/**
 * A lean JSON-RPC client over one WebSocket, for load generation: notifications are handed over
 * as raw text (no JSON parse), responses resolve their calls. Calls made in one tick leave in one write.
 * It runs on FastWs, not the `ws` package: with `ws` the claimers cost as much CPU per claim as the
 * relay did, on the cores they share with it.
 */
export class RpcWs {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: any) => void; reject: (e: unknown) => void }>();
  private closedWith: number | null = null;
  onNote: (text: string) => void = () => {};
  onClose: (code: number) => void = () => {};

  private constructor(readonly ws: FastWs) {
    ws.onText = (buf, start, end) => {
      const text = buf.toString('utf8', start, end);
      if (text.startsWith(NOTE_PREFIX)) return this.onNote(text);
      const msg = JSON.parse(text) as any;
      for (const r of Array.isArray(msg) ? msg : [msg]) {
        const p = this.pending.get(r.id);
        if (!p) continue;
        this.pending.delete(r.id);
        if (r.error) p.reject(answerError(r.error));
        else p.resolve(r.result);
      }
    };
    ws.onClose = (code) => {
      this.closedWith = code;
      for (const p of this.pending.values()) p.reject(new Error(`socket closed (${code})`));
      this.pending.clear();
      this.onClose(code);
    };
  }

  static async connect(url: string, timeoutMs = 30_000): Promise<RpcWs> {
    return new RpcWs(await FastWs.connect(url, WS_SUBPROTOCOL, timeoutMs));
  }

  get inflight(): number {
    return this.pending.size;
  }

  call<T = any>(method: string, params?: unknown): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      if (this.closedWith !== null) return reject(new Error(`socket closed (${this.closedWith})`));
      this.pending.set(id, { resolve, reject });
      this.ws.sendText(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
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
    this.ws.sendText(JSON.stringify(entries));
    return Promise.all(out);
  }

  close(): Promise<void> {
    return this.ws.close(1000);
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
