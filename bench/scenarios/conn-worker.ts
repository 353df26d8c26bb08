import { nowMs, sleep } from '../lib/clock.js';
import { FastWs, stampInBytes } from '../lib/fast-ws.js';
import { encodeHist, newHist, recordMs } from '../lib/hist.js';
import { serveWorker } from '../lib/proc.js';
import { inParallel } from '../lib/rpc-ws.js';

/**
 * Many agents on FastWs connections: idle ones that register and heartbeat (connections scenario),
 * and resuming ones that count a backlog pushed on register with `since` (recovery scenario).
 */
interface Conn {
  ws: FastWs;
  id: string;
  nextCall: number;
  pending: Map<number, (ok: boolean) => void>;
  got: number;
}
const NOTE = '{"jsonrpc":"2.0","method":';
let conns: Conn[] = [];
let hbTimer: NodeJS.Timeout | null = null;
let hbHist = newHist();
let heartbeats = 0;
let hbErrors = 0;
let closedByRelay = 0;

function call(c: Conn, method: string, params: unknown): Promise<boolean> {
  const id = c.nextCall++;
  return new Promise((resolve) => {
    c.pending.set(id, resolve);
    c.ws.sendText(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
  });
}

async function open(url: string, id: string, params: Record<string, unknown>, onMessage?: (c: Conn) => void): Promise<Conn> {
  const ws = await FastWs.connect(url);
  const c: Conn = { ws, id, nextCall: 1, pending: new Map(), got: 0 };
  ws.onText = (buf, start, end) => {
    if (buf.toString('latin1', start, start + NOTE.length) === NOTE) {
      if (stampInBytes(buf, start, end) || onMessage) {
        c.got++;
        onMessage?.(c);
      }
      return;
    }
    const j = JSON.parse(buf.toString('utf8', start, end)) as { id: number; error?: unknown };
    const p = c.pending.get(j.id);
    if (p) {
      c.pending.delete(j.id);
      p(!j.error);
    }
  };
  ws.onClose = (code) => {
    if (code >= 4000) closedByRelay++;
    for (const p of c.pending.values()) p(false);
    c.pending.clear();
  };
  const ok = await call(c, 'agent/register', { id, ...params });
  if (!ok) throw new Error(`register ${id} refused`);
  return c;
}

serveWorker({
  async idle(a: { url: string; prefix: string; count: number; concurrency: number }) {
    const t0 = nowMs();
    conns.push(...(await inParallel(a.count, a.concurrency, (i) => open(a.url, `${a.prefix}-${i}`, { tags: ['idle'] }))));
    return { opened: a.count, ms: nowMs() - t0 };
  },
  /** Every connection heartbeats once per `everyMs`, spread evenly over the period. */
  heartbeat(a: { everyMs: number }) {
    hbHist = newHist();
    heartbeats = 0;
    hbErrors = 0;
    const perTick = conns.length / (a.everyMs / 10);
    let k = 0;
    let acc = 0;
    hbTimer = setInterval(() => {
      acc += perTick;
      while (acc >= 1) {
        acc--;
        const c = conns[k++ % conns.length]!;
        const t = nowMs();
        void call(c, 'agent/heartbeat', {}).then((ok) => {
          if (ok) {
            heartbeats++;
            recordMs(hbHist, nowMs() - t);
          } else hbErrors++;
        });
      }
    }, 10);
  },
  stopHeartbeat() {
    if (hbTimer) clearInterval(hbTimer);
    hbTimer = null;
    return { heartbeats, errors: hbErrors, hist: encodeHist(hbHist), closedByRelay };
  },
  /** Resume `agents` at once with since = cursor; resolves when each has `expect` messages (or the deadline). */
  async resume(a: { url: string; agents: Array<{ id: string; token: string; since: number }>; expect: number; timeoutMs: number }) {
    const t0 = nowMs();
    let done = 0;
    let finish: () => void = () => {};
    const all = new Promise<void>((r) => (finish = r));
    const onMessage = (c: Conn) => {
      if (c.got === a.expect && ++done === a.agents.length) finish();
    };
    const opened = await Promise.all(a.agents.map((ag) => open(a.url, ag.id, { agentToken: ag.token, since: ag.since }, onMessage)));
    conns.push(...opened);
    await Promise.race([all, sleep(a.timeoutMs)]);
    const ms = nowMs() - t0;
    return { ms, done, messages: opened.reduce((n, c) => n + c.got, 0) };
  },
  async close() {
    if (hbTimer) clearInterval(hbTimer);
    const all = conns;
    conns = [];
    for (const c of all) c.ws.destroy();
    await sleep(100);
  },
});
