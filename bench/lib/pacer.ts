import { nowMs } from './clock.js';
import { makeBody } from './payload.js';

export interface PaceOptions {
  /** Offered messages per second. */
  rate: number;
  warmupMs: number;
  durationMs: number;
  /** Acknowledged systems: at most this many sends awaiting their ack (bounds the backlog of an overloaded system). */
  maxInflight: number;
  /** Send one body; a promise when the system acknowledges. */
  // biome-ignore lint/suspicious/noConfusingVoidType: a driver's send is synchronous or returns a promise
  send: (body: string) => Promise<unknown> | void;
  /** Wrap a burst of sends (e.g. cork a socket). */
  batch?: (fn: () => void) => void;
}

export interface PaceResult {
  offered: number;
  sent: number;
  measuredSent: number;
  acked: number;
  errors: number;
  /** Sends the in-flight cap held back past the end of the run (the system fell behind). */
  skipped: number;
  startMs: number;
  measureStartMs: number;
  endMs: number;
  firstError?: string;
}

/**
 * Open-loop pacing: message i is due at start + i/rate and is stamped with that due time, so a
 * sender held back (by the in-flight cap or a busy event loop) shows up as latency, not as a
 * flattering lower offered rate (no coordinated omission).
 */
export function pace(o: PaceOptions): Promise<PaceResult> {
  const start = nowMs();
  const total = Math.floor((o.rate * (o.warmupMs + o.durationMs)) / 1000);
  const measureStart = start + o.warmupMs;
  const interval = 1000 / o.rate;
  let i = 0;
  let inflight = 0;
  let measuredSent = 0;
  let acked = 0;
  let errors = 0;
  let firstError: string | undefined;
  const batch = o.batch ?? ((fn: () => void) => fn());
  return new Promise((resolve) => {
    const finish = (end: number) => {
      const waitAcks = () => {
        if (inflight > 0 && nowMs() - end < 10_000) return setTimeout(waitAcks, 5);
        resolve({ offered: total, sent: i, measuredSent, acked, errors, skipped: total - i, startMs: start, measureStartMs: measureStart, endMs: end, ...(firstError ? { firstError } : {}) });
      };
      waitAcks();
    };
    const tick = () => {
      const now = nowMs();
      const due = Math.min(total, Math.floor((now - start) / interval) + 1);
      if (i < due && inflight < o.maxInflight) {
        batch(() => {
          while (i < due && inflight < o.maxInflight) {
            const at = start + i * interval;
            const measured = at >= measureStart;
            const r = o.send(makeBody(measured ? 'T' : 'W', at));
            if (measured) measuredSent++;
            i++;
            if (r) {
              inflight++;
              r.then(
                () => {
                  inflight--;
                  acked++;
                },
                (err: unknown) => {
                  inflight--;
                  errors++;
                  firstError ??= String((err as Error)?.message ?? err);
                },
              );
            }
          }
        });
      }
      if (i >= total || now >= start + o.warmupMs + o.durationMs) return finish(now);
      setTimeout(tick, 1);
    };
    tick();
  });
}
