import { nowMs, sleep } from '../lib/clock.js';
import { loadDriver, type Endpoint, type Publisher } from '../lib/drivers.js';
import { encodeHist, newHist, recordMs } from '../lib/hist.js';
import { makeBody } from '../lib/payload.js';
import { serveWorker } from '../lib/proc.js';
import { inParallel } from '../lib/rpc-ws.js';

/** Closed-loop acknowledged publishers: each keeps `window` publishes in flight until the deadline. */
let pubs: Publisher[] = [];

serveWorker({
  async open(a: { endpoint: Endpoint; count: number }) {
    const driver = await loadDriver(a.endpoint.system);
    pubs = await inParallel(a.count, 20, (i) => driver.publisher(a.endpoint, i));
  },
  async run(a: { window: number; durationMs: number; startAt: number }) {
    const hist = newHist();
    let acked = 0;
    let errors = 0;
    let firstError: string | undefined;
    while (nowMs() < a.startAt) await sleep(1);
    const deadline = a.startAt + a.durationMs;
    await Promise.all(
      pubs.map(async (p) => {
        const lane = async () => {
          while (nowMs() < deadline) {
            const t = nowMs();
            try {
              await p.send(makeBody('T', t));
              acked++;
              recordMs(hist, nowMs() - t);
            } catch (err) {
              errors++;
              firstError ??= String((err as Error)?.message ?? err);
              if (errors > 1000) return;
            }
          }
        };
        await Promise.all(Array.from({ length: a.window }, lane));
      }),
    );
    return { acked, errors, firstError, hist: encodeHist(hist), endMs: nowMs() };
  },
  async close() {
    await Promise.all(pubs.map((p) => p.close().catch(() => {})));
    pubs = [];
  },
});
