import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { sleep } from './clock.js';

/**
 * Talk to a process started with `--inspect=127.0.0.1:0` (the relay in the connections scenario):
 * force a full garbage collection and read the heap, so memory per connection is live memory, not
 * the garbage that registering thousands of agents left behind.
 */
export class Inspector {
  private nextId = 1;
  private readonly pending = new Map<number, (r: any) => void>();

  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (d: Buffer) => {
      const m = JSON.parse(d.toString()) as { id?: number; result?: unknown };
      if (m.id !== undefined) this.pending.get(m.id)?.(m.result);
    });
  }

  /** Find the inspector URL the process printed to its log, and connect. */
  static async attach(logPath: string, timeoutMs = 10_000): Promise<Inspector> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = /Debugger listening on (ws:\/\/\S+)/.exec(readFileSync(logPath, 'utf8'));
      if (m) {
        const ws = new WebSocket(m[1]!);
        await new Promise((resolve, reject) => {
          ws.once('open', resolve);
          ws.once('error', reject);
        });
        return new Inspector(ws);
      }
      if (Date.now() > deadline) throw new Error(`no inspector URL in ${logPath}`);
      await sleep(50);
    }
  }

  call<T = any>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }

  async collectGarbage(): Promise<void> {
    await this.call('HeapProfiler.collectGarbage');
  }

  async heapUsed(): Promise<number> {
    return (await this.call<{ usedSize: number }>('Runtime.getHeapUsage')).usedSize;
  }

  close(): void {
    this.ws.close();
  }
}
