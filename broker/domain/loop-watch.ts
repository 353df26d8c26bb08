/** A pause of the loop longer than this is the relay not running, not ordinary event-loop lag. */
const STOP_MS = 1000;
const TICK_MS = 250;

/**
 * Notices when the relay's own event loop stopped (SIGSTOP, a suspended VM or laptop, a long
 * synchronous block). On resume libuv may run due timers before it reads the input that waited in
 * the kernel (epoll_wait returns EINTR after SIGCONT), so a presence sweep would judge agents by
 * heartbeats it has not read yet. `resumedAt` (relay clock) is when the latest stop was noticed.
 */
export class LoopWatch {
  resumedAt = -Infinity;
  private lastTick = performance.now();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly now: () => number,
    private readonly onStop: (stoppedMs: number) => void = () => {},
  ) {}

  start(): void {
    this.lastTick = performance.now();
    this.timer ??= setInterval(() => this.check(), TICK_MS).unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Look now too: a sweep whose timer fired first after the stop must still see it. */
  check(): number {
    const tick = performance.now();
    const gap = tick - this.lastTick;
    this.lastTick = tick;
    if (gap > STOP_MS) {
      this.resumedAt = this.now();
      this.onStop(gap);
    }
    return this.resumedAt;
  }
}
