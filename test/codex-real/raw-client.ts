import WebSocket from 'ws';

/** A bare JSON-RPC client of the app-server (no adapter): what the real server says, frame by frame. */
export class Client {
  private next = 1;
  readonly inbox: any[] = [];
  private readonly waiting = new Map<number, (m: any) => void>();
  private constructor(readonly ws: WebSocket) {
    ws.on('message', (d) => {
      const m = JSON.parse(d.toString());
      if (m.id !== undefined && m.method === undefined && this.waiting.has(m.id)) {
        this.waiting.get(m.id)!(m);
        this.waiting.delete(m.id);
      } else this.inbox.push(m);
    });
  }
  static async open(url: string, headers: Record<string, string> = {}): Promise<Client> {
    const ws = new WebSocket(url, { headers });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
      ws.once('error', reject);
    });
    return new Client(ws);
  }
  /** The whole response (result or error). */
  call(method: string, params: unknown): Promise<any> {
    const id = this.next++;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
    });
  }
  notify(method: string): void {
    this.ws.send(JSON.stringify({ jsonrpc: '2.0', method }));
  }
  async until(pred: (m: any) => boolean, ms = 15_000): Promise<any> {
    const deadline = Date.now() + ms;
    for (;;) {
      const m = this.inbox.find(pred);
      if (m) return m;
      if (Date.now() > deadline) throw new Error(`no matching notification within ${ms} ms; got ${this.inbox.map((x) => x.method).join(', ')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** A client past the handshake (initialize + initialized). */
export async function initialized(url: string, name = 'probe'): Promise<Client> {
  const c = await Client.open(url);
  const init = await c.call('initialize', { clientInfo: { name, title: name, version: '0' }, capabilities: { experimentalApi: false } });
  if (init.error) throw new Error(`initialize: ${JSON.stringify(init.error)}`);
  c.notify('initialized');
  return c;
}
