import t from 'tap';
import WebSocket from 'ws';
import { startFakeModel, startRealAppServer } from './harness.js';

class Client {
  private next = 1;
  readonly inbox: any[] = [];
  private readonly waiting = new Map<number, (m: any) => void>();
  constructor(readonly ws: WebSocket) {
    ws.on('message', (d) => {
      const m = JSON.parse(d.toString());
      if (m.id !== undefined && m.method === undefined && this.waiting.has(m.id)) { this.waiting.get(m.id)!(m); this.waiting.delete(m.id); } else this.inbox.push(m);
    });
  }
  call(method: string, params: unknown): Promise<any> {
    const id = this.next++;
    return new Promise((resolve) => { this.waiting.set(id, resolve); this.ws.send(JSON.stringify({ id, method, params })); });
  }
}
const show = (label: string, v: any) => console.log(label, JSON.stringify(v).slice(0, 1500));
t.test('probe', async (t) => {
  const model = await startFakeModel(t);
  const app = await startRealAppServer(t, model);
  const ws = new WebSocket(app.directUrl); await new Promise((r) => ws.once('open', r));
  const c = new Client(ws); t.teardown(() => ws.terminate());
  show('init', await c.call('initialize', { clientInfo: { name: 'probe', title: 'p', version: '0' }, capabilities: { experimentalApi: false } }));
  ws.send(JSON.stringify({ method: 'initialized' }));
  const st = await c.call('thread/start', { cwd: app.codexHome });
  show('start', st);
  const threadId = st.result.thread.id;


  model.next({ text: 'held', gate: new Promise(() => undefined) });
  const tr = await c.call('turn/start', { threadId, input: [{ type: 'text', text: 'hold', text_elements: [] }] });
  while (!c.inbox.some((m) => m.method === 'turn/started')) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 300));
  show('interrupt', await c.call('turn/interrupt', { threadId, turnId: tr.result.turn.id }));
  while (!c.inbox.some((m) => m.method === 'turn/completed')) await new Promise((r) => setTimeout(r, 20));
  show('completed', c.inbox.find((m) => m.method === 'turn/completed'));
  show('list', await c.call('thread/turns/list', { threadId }));
  show('methods', c.inbox.map((m) => m.method + (m.params?.status ? `(${m.params.status.type})` : '')));
  t.pass();
});
