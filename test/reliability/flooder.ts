/**
 * A flooding client, run as its own process by rate-limit.serial.ts so that producing the flood
 * does not slow the test's own latency probes. `node --import tsx flooder.ts MODE URL SECONDS
 * PER_SEC`; MODE `ws` floods frames on one connection (reconnecting 100 ms after a close, as a
 * client would), `http` floods POST /rpc from 127.0.0.1. Lines `on` and `off` on stdin switch the
 * flood (it starts off), so the test can alternate quiet and flooded windows. Prints one JSON
 * summary line at the end (`quit` ends it early).
 */
import { Agent, request } from 'node:http';
import WebSocket from 'ws';

const [mode, url, seconds, perSec] = process.argv.slice(2) as [string, string, string, string];
let until = Date.now() + Number(seconds) * 1000;
const rate = Number(perSec);
const TICK_MS = 10;
const perTick = Math.max(1, Math.round((rate * TICK_MS) / 1000));
const FRAME = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'agent/list' });

let flooding = false;
process.stdin.setEncoding('utf8').on('data', (s: string) => {
  for (const line of s.split('\n')) {
    if (line === 'on' || line === 'off') flooding = line === 'on';
    if (line === 'quit') until = Date.now();
  }
});

const stats = { sent: 0, answered: 0, limited: 0, closes: {} as Record<string, number>, connections: 0, http: {} as Record<string, number>, errors: 0 };

async function floodWs(): Promise<void> {
  while (Date.now() < until) {
    await new Promise<void>((resolve) => {
      const ws = new WebSocket(`${url.replace('http', 'ws')}/rpc`);
      let timer: NodeJS.Timeout | undefined;
      ws.on('open', () => {
        stats.connections++;
        timer = setInterval(() => {
          if (Date.now() >= until) return ws.close();
          if (!flooding) return;
          for (let i = 0; i < perTick && ws.readyState === WebSocket.OPEN; i++) {
            ws.send(FRAME);
            stats.sent++;
          }
        }, TICK_MS);
      });
      ws.on('message', (data) => {
        const m = JSON.parse(data.toString()) as { result?: unknown; error?: { code: number } };
        if (m.result !== undefined) stats.answered++;
        else if (m.error?.code === -32005) stats.limited++;
      });
      ws.on('error', () => stats.errors++);
      ws.on('close', (code) => {
        clearInterval(timer);
        stats.closes[code] = (stats.closes[code] ?? 0) + 1;
        setTimeout(resolve, 100);
      });
    });
  }
}

async function floodHttp(): Promise<void> {
  const u = new URL(url);
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  const one = () =>
    new Promise<void>((resolve) => {
      const req = request({ host: u.hostname, port: u.port, path: '/rpc', method: 'POST', agent, localAddress: '127.0.0.1', headers: { 'content-type': 'application/json' } }, (res) => {
        res.resume();
        res.on('end', () => {
          stats.http[res.statusCode ?? 0] = (stats.http[res.statusCode ?? 0] ?? 0) + 1;
          resolve();
        });
      });
      req.on('error', () => {
        stats.errors++;
        resolve();
      });
      req.end(FRAME);
      stats.sent++;
    });
  while (Date.now() < until) {
    const started = Date.now();
    if (!flooding) {
      await new Promise((r) => setTimeout(r, TICK_MS));
      continue;
    }
    await Promise.all(Array.from({ length: perTick }, one));
    const left = TICK_MS - (Date.now() - started);
    if (left > 0) await new Promise((r) => setTimeout(r, left));
  }
  agent.destroy();
}

(mode === 'ws' ? floodWs() : floodHttp()).then(
  () => {
    process.stdout.write(`${JSON.stringify(stats)}\n`);
    process.exit(0);
  },
  (err: unknown) => {
    process.stderr.write(`${String(err)}\n`);
    process.exit(1);
  },
);
