import type { Domain } from './domain.js';
import { sweepExpiredLeases } from './lease-expiry.js';
import { LoopWatch } from './loop-watch.js';
import { sweepStaleAgents } from './presence.js';
import { prune } from './prune.js';

/** The relay's timers. Every one stops on stop(); a failed run is logged and tried next tick. */
export class Scheduler {
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly loop: LoopWatch;

  constructor(private readonly core: Domain) {
    this.loop = new LoopWatch(
      () => core.now(),
      (ms) => core.log.warn({ stoppedMs: Math.round(ms) }, 'the relay was not running (event loop stopped): agents get a full STALE_TTL_MS from now to be heard'),
    );
  }

  start(): void {
    const { presenceIntervalMs, pruneIntervalMs, leaseSweepIntervalMs } = this.core.config;
    this.loop.start();
    this.every(presenceIntervalMs, 'presence sweep', () => sweepStaleAgents(this.core, this.loop.check()));
    this.every(leaseSweepIntervalMs, 'lease expiry sweep', () => sweepExpiredLeases(this.core));
    this.every(pruneIntervalMs, 'prune', async () => {
      const r = await prune(this.core);
      if (r.messages || r.events || r.tasks || r.leases || r.agents.length) this.core.log.info({ prune: r }, 'pruned');
    });
  }

  stop(): void {
    this.loop.stop();
    for (const t of this.timers.splice(0)) clearInterval(t);
  }

  private every(ms: number, name: string, fn: () => Promise<unknown>): void {
    let running = false;
    const timer = setInterval(() => {
      if (running) return;
      running = true;
      fn()
        .catch((err: unknown) => this.core.log.warn({ err }, `${name} failed`))
        .finally(() => (running = false));
    }, ms);
    timer.unref();
    this.timers.push(timer);
  }
}
