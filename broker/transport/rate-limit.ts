/** A token bucket: `ratePerSec` refill, at most `burst` stored. */
export class TokenBucket {
  private tokens: number;
  private lastRefill = performance.now();

  constructor(
    private readonly ratePerSec: number,
    private readonly burst: number,
  ) {
    this.tokens = burst;
  }

  /** Take one token; false when the bucket is empty (the caller is over its rate). */
  take(): boolean {
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.lastRefill) / 1000) * this.ratePerSec);
    this.lastRefill = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Seconds until one token is back (for Retry-After). */
  secondsUntilNext(): number {
    return Math.max(1, Math.ceil((1 - this.tokens) / this.ratePerSec));
  }
}

const MAX_TRACKED_CLIENTS = 10_000;

/**
 * One bucket per HTTP client address. Past MAX_TRACKED_CLIENTS the table starts over: a flood of
 * distinct addresses costs memory bounded by the cap, never unbounded growth.
 */
export class ClientRateLimiter {
  private readonly buckets = new Map<string, TokenBucket>();

  constructor(
    private readonly ratePerSec: number,
    private readonly burst: number,
  ) {}

  /** Null when admitted, else the Retry-After seconds. */
  check(client: string): number | null {
    let bucket = this.buckets.get(client);
    if (!bucket) {
      if (this.buckets.size >= MAX_TRACKED_CLIENTS) this.buckets.clear();
      bucket = new TokenBucket(this.ratePerSec, this.burst);
      this.buckets.set(client, bucket);
    }
    return bucket.take() ? null : bucket.secondsUntilNext();
  }
}
