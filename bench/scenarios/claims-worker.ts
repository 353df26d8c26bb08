import { nowMs, sleep } from '../lib/clock.js';
import { ERRORS } from '../../protocol/errors.js';
import { encodeHist, newHist, recordMs } from '../lib/hist.js';
import { serveWorker } from '../lib/proc.js';
import { inParallel, RpcWs, type RpcError } from '../lib/rpc-ws.js';

/** Claimers: agents that race for tasks with `task/claim`, a few claims in flight each. */
let claimers: Array<{ index: number; rpc: RpcWs }> = [];

function shuffle<T>(xs: T[], seed: number): T[] {
  let s = seed >>> 0 || 1;
  for (let i = xs.length - 1; i > 0; i--) {
    s = (s * 1664525 + 1013904223) >>> 0;
    const j = s % (i + 1);
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
  return xs;
}

serveWorker({
  async open(a: { url: string; indices: number[] }) {
    claimers = await inParallel(a.indices.length, 25, async (k) => {
      const rpc = await RpcWs.connect(a.url);
      const index = a.indices[k]!;
      await rpc.call('agent/register', { id: `claimer-${index}`, capabilities: ['bench-claims'] });
      return { index, rpc };
    });
  },
  /**
   * Every task is raced by `contention` of the `claimers` (each takes the tasks whose position mod
   * claimers falls within `contention` of its own index), each claimer in its own random order.
   */
  async run(a: { taskIds: number[]; claimers: number; contention: number; window: number; startAt: number }) {
    const hist = newHist();
    const wins: number[] = [];
    let attempts = 0;
    let conflicts = 0;
    let errors = 0;
    let firstError: string | undefined;
    while (nowMs() < a.startAt) await sleep(1);
    const start = nowMs();
    await Promise.all(
      claimers.map(async ({ index, rpc }) => {
        const mine = a.taskIds.filter((_, pos) => ((pos % a.claimers) - index + a.claimers) % a.claimers < a.contention);
        shuffle(mine, index * 7919 + 17);
        let next = 0;
        const lane = async () => {
          while (next < mine.length) {
            const id = mine[next++]!;
            const t = nowMs();
            attempts++;
            try {
              await rpc.call('task/claim', { id });
              wins.push(id);
            } catch (err) {
              if ((err as RpcError).code === ERRORS.conflict.code) conflicts++;
              else {
                errors++;
                firstError ??= String((err as Error).message);
              }
            }
            recordMs(hist, nowMs() - t);
          }
        };
        await Promise.all(Array.from({ length: a.window }, lane));
      }),
    );
    return { wins, attempts, conflicts, errors, firstError, startMs: start, endMs: nowMs(), hist: encodeHist(hist) };
  },
  async close() {
    await Promise.all(claimers.map((c) => c.rpc.close()));
    claimers = [];
  },
});
