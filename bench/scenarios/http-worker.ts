import { request, type Agent } from 'node:http';
import { signStandardWebhook } from '../../broker/domain/webhooks.js';
import { nowMs, sleep } from '../lib/clock.js';
import { FastWs, stampInBytes } from '../lib/fast-ws.js';
import { encodeHist, newHist, recordMs, type Hist } from '../lib/hist.js';
import { httpCall, keepAliveAgent } from '../lib/http-client.js';
import { stampAt } from '../lib/payload.js';
import { serveWorker } from '../lib/proc.js';

/** HTTP load: webhook ingress, long-polls, SSE streams, and the poll / long-poll / push comparison. */
interface ModeStats {
  hist: Hist;
  received: number;
  lastRecvMs: number;
}
const stats = new Map<string, ModeStats>();
function mode(name: string): ModeStats {
  let s = stats.get(name);
  if (!s) stats.set(name, (s = { hist: newHist(), received: 0, lastRecvMs: 0 }));
  return s;
}
function record(name: string, stampMs: number): void {
  const s = mode(name);
  const now = nowMs();
  s.received++;
  s.lastRecvMs = now;
  recordMs(s.hist, now - stampMs);
}

let stopping = false;
const aborts = new Set<AbortController>();
const closers: Array<() => void> = [];
let agent: Agent = keepAliveAgent();

interface Creds {
  id: string;
  token: string;
  cursor: number;
}

/** Messages of an inbox answer: record each measured stamp; returns the new cursor. */
function takeInbox(name: string, body: string, cursor: number): number {
  const j = JSON.parse(body) as { messages: Array<{ id: number; body: string }>; cursor: number };
  for (const m of j.messages) {
    const s = stampAt(m.body, 0);
    if (s?.measured) record(name, s.ms);
  }
  return j.messages.length ? j.cursor : cursor;
}

async function longPollLoop(base: string, c: Creds, name: string): Promise<void> {
  let cursor = c.cursor;
  while (!stopping) {
    const ac = new AbortController();
    aborts.add(ac);
    try {
      const r = await httpCall(agent, 'GET', `${base}/api/agents/${encodeURIComponent(c.id)}/inbox?since=${cursor}&wait=30`, { 'x-agent-token': c.token }, undefined, ac.signal);
      if (r.status === 200) cursor = takeInbox(name, r.body, cursor);
      else await sleep(100);
    } catch {
      if (!stopping) await sleep(100);
    } finally {
      aborts.delete(ac);
    }
  }
}

async function pollLoop(base: string, c: Creds, name: string, everyMs: number): Promise<void> {
  let cursor = c.cursor;
  // Start at a random phase, as independent pollers would.
  await sleep(Math.random() * everyMs);
  while (!stopping) {
    const t = nowMs();
    try {
      const r = await httpCall(agent, 'GET', `${base}/api/agents/${encodeURIComponent(c.id)}/inbox?since=${cursor}`, { 'x-agent-token': c.token });
      if (r.status === 200) cursor = takeInbox(name, r.body, cursor);
    } catch {
      /* retry next period */
    }
    await sleep(Math.max(0, everyMs - (nowMs() - t)));
  }
}

function sseStream(base: string, c: Creds, name: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const ac = new AbortController();
    aborts.add(ac);
    const req = request(`${base}/api/stream?agentId=${encodeURIComponent(c.id)}`, { agent, headers: { 'x-agent-token': c.token, accept: 'text/event-stream' }, signal: ac.signal }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`SSE HTTP ${res.statusCode}`));
      resolve();
      let rest = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        const text = rest + chunk;
        let from = 0;
        for (;;) {
          const end = text.indexOf('\n\n', from);
          if (end < 0) break;
          const i = text.indexOf('"body":"', from);
          if (i >= 0 && i < end) {
            const s = stampAt(text, i + 8);
            if (s?.measured) record(name, s.ms);
          }
          from = end + 2;
        }
        rest = text.slice(from);
      });
      res.on('error', () => {});
    });
    req.on('error', (err) => (stopping ? resolve() : reject(err)));
    req.end();
  });
}

async function pushAgent(wsUrl: string, c: Creds, name: string): Promise<void> {
  const ws = await FastWs.connect(wsUrl);
  closers.push(() => ws.destroy());
  await new Promise<void>((resolve, reject) => {
    ws.onText = (buf, start, end) => {
      const s = stampInBytes(buf, start, end);
      if (s) {
        if (s.measured) record(name, s.ms);
        return;
      }
      const j = JSON.parse(buf.toString('utf8', start, end)) as { id?: number; error?: { message: string } };
      if (j.id === 1) j.error ? reject(new Error(j.error.message)) : resolve();
    };
    ws.sendText(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'agent/register', params: { id: c.id, agentToken: c.token } }));
  });
}

serveWorker({
  /** Signed webhook deliveries (Standard Webhooks), `replayEvery`-th one a replay, keys cycling for dedupe. */
  async ingress(a: { url: string; name: string; secret: string; from: number; count: number; concurrency: number; distinctKeys: number; replayEvery: number; tag: string }) {
    const hist = newHist();
    const status: Record<string, number> = {};
    let next = 0;
    const start = nowMs();
    const http = keepAliveAgent(a.concurrency);
    const lane = async () => {
      while (next < a.count) {
        const i = next++;
        const n = a.from + i;
        const replay = a.replayEvery > 0 && i % a.replayEvery === a.replayEvery - 1;
        const id = replay ? `evt-${a.tag}-${n - 1}` : `evt-${a.tag}-${n}`;
        const body = JSON.stringify({ title: `alert ${n % a.distinctKeys}`, dedupeKey: `key-${n % a.distinctKeys}`, body: 'x'.repeat(150) });
        const ts = Math.floor(Date.now() / 1000);
        const t = nowMs();
        try {
          const r = await httpCall(
            http,
            'POST',
            `${a.url}/api/integrations/${a.name}/events`,
            { 'webhook-id': id, 'webhook-timestamp': String(ts), 'webhook-signature': signStandardWebhook(a.secret, id, ts, body) },
            body,
          );
          const kind = r.status === 201 ? 'created' : r.status === 200 ? (r.body.includes('"duplicate":true') ? 'replay' : 'deduped') : `http${r.status}`;
          status[kind] = (status[kind] ?? 0) + 1;
        } catch {
          status.error = (status.error ?? 0) + 1;
        }
        recordMs(hist, nowMs() - t);
      }
    };
    await Promise.all(Array.from({ length: a.concurrency }, lane));
    http.destroy();
    return { status, startMs: start, endMs: nowMs(), hist: encodeHist(hist) };
  },
  async longPolls(a: { url: string; agents: Creds[] }) {
    stopping = false;
    for (const c of a.agents) void longPollLoop(a.url, c, 'longpoll');
  },
  async sse(a: { url: string; agents: Creds[] }) {
    stopping = false;
    for (let i = 0; i < a.agents.length; i += 50) await Promise.all(a.agents.slice(i, i + 50).map((c) => sseStream(a.url, c, 'sse')));
  },
  async compare(a: { url: string; wsUrl: string; poll: Creds; long: Creds; push: Creds; pollEveryMs: number }) {
    stopping = false;
    void pollLoop(a.url, a.poll, 'poll', a.pollEveryMs);
    void longPollLoop(a.url, a.long, 'long');
    await pushAgent(a.wsUrl, a.push, 'push');
  },
  reset(a: { mode: string }) {
    stats.delete(a.mode);
  },
  stats(a: { mode: string }) {
    const s = mode(a.mode);
    return { received: s.received, lastRecvMs: s.lastRecvMs };
  },
  collect(a: { mode: string }) {
    const s = mode(a.mode);
    return { received: s.received, lastRecvMs: s.lastRecvMs, hist: encodeHist(s.hist) };
  },
  async stopAll() {
    stopping = true;
    for (const ac of aborts) ac.abort();
    aborts.clear();
    for (const c of closers.splice(0)) c();
    agent.destroy();
    agent = keepAliveAgent();
  },
});
