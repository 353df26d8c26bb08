import { nowMs } from '../lib/clock.js';
import { loadDriver, type Endpoint, type Publisher, type SubHandle } from '../lib/drivers.js';
import { encodeHist, newHist, recordMs } from '../lib/hist.js';
import { pace, type PaceOptions } from '../lib/pacer.js';
import type { Stamp } from '../lib/payload.js';
import { serveWorker } from '../lib/proc.js';
import { inParallel } from '../lib/rpc-ws.js';

/** A fan-out load generator: subscribers (any number, any system) and/or one paced publisher. */
let subs: SubHandle[] = [];
let pub: Publisher | null = null;
let hist = newHist();
let received = 0;
let warm = 0;
let lastRecvMs = 0;

const onStamp = (s: Stamp) => {
  const now = nowMs();
  if (!s.measured) {
    warm++;
    return;
  }
  received++;
  lastRecvMs = now;
  recordMs(hist, now - s.ms);
};

serveWorker({
  async subs(a: { endpoint: Endpoint; from: number; count: number }) {
    const driver = await loadDriver(a.endpoint.system);
    const opened = await inParallel(a.count, 50, (i) => driver.subscribe(a.endpoint, a.from + i, onStamp));
    subs.push(...opened);
    return { opened: opened.length };
  },
  reset() {
    hist = newHist();
    received = 0;
    warm = 0;
    lastRecvMs = 0;
  },
  stats() {
    return { received, warm, lastRecvMs, reconnects: subs.reduce((n, s) => n + s.reconnects(), 0) };
  },
  collect() {
    return { received, warm, lastRecvMs, hist: encodeHist(hist), reconnects: subs.reduce((n, s) => n + s.reconnects(), 0) };
  },
  async pubOpen(a: { endpoint: Endpoint }) {
    const driver = await loadDriver(a.endpoint.system);
    pub = await driver.publisher(a.endpoint, 0);
  },
  pubRun(a: Omit<PaceOptions, 'send' | 'batch'>) {
    const p = pub!;
    return pace({ ...a, send: (b) => p.send(b), ...(p.batch ? { batch: (fn: () => void) => p.batch!(fn) } : {}) });
  },
  async close() {
    const all = subs;
    subs = [];
    await Promise.all(all.map((s) => s.close().catch(() => {})));
    await pub?.close().catch(() => {});
    pub = null;
  },
});
