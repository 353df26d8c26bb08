/**
 * Wall-clock milliseconds with sub-millisecond resolution, comparable across processes on the same
 * machine: every process derives it from its own time origin plus the monotonic clock.
 */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
