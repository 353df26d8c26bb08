/** A token bucket: `ratePerSec` refill, at most `burst` stored; full at the start unless told. */
export class TokenBucket {
  private tokens: number;
  private lastRefill = performance.now();

  constructor(
    private readonly ratePerSec: number,
    private readonly burst: number,
    initialTokens = burst,
  ) {
    this.tokens = initialTokens;
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

  /** Milliseconds until one token is back (a WebSocket refusal's data.retryAfterMs). */
  msUntilNext(): number {
    return Math.max(1, Math.ceil(((1 - this.tokens) / this.ratePerSec) * 1000));
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

/** How long an address closed for flooding gets no burst on its new connections. */
export const FLOOD_COOLDOWN_MS = 30_000;
/** What such a connection starts with instead of the burst. */
export const FLOOD_RECONNECT_TOKENS = 10;
/** Refusals (-32005) a connection gets before it is closed with 4003 (a refusal is paid down by an admitted frame). */
export const REFUSALS_BEFORE_CLOSE = 100;
/** The same for a connection from an address closed for flooding within FLOOD_COOLDOWN_MS. */
export const REPEAT_REFUSALS_BEFORE_CLOSE = 10;

/** A new connection's rate limit: its bucket, and how many refusals it gets before it is closed. */
export interface ConnectionLimit {
  bucket: TokenBucket;
  refusalsBeforeClose: number;
}

/**
 * WebSocket buckets are per connection (on a loopback relay every agent shares one address, so a
 * per-address bucket would throttle them all together). A client closed for flooding could still
 * reconnect for a fresh burst each time: at a 200/s rate and burst, a 4,000 frames/s flood was
 * served about 1,500 frames/s that way (the reliability suite's rate-limit test). So a connection
 * from an address that flooded within FLOOD_COOLDOWN_MS starts with FLOOD_RECONNECT_TOKENS
 * instead of the burst (enough to register and make a few calls at once; the rate applies as
 * always), and is closed after REPEAT_REFUSALS_BEFORE_CLOSE refusals rather than
 * REFUSALS_BEFORE_CLOSE: each flooding reconnection costs the relay a few dozen frames, not a
 * hundred and more, which the other connections' latency felt. Connections already open are
 * untouched.
 */
export class ConnectionBuckets {
  /** Address → when its last flooding connection was closed. */
  private readonly flooded = new Map<string, number>();

  constructor(
    private readonly ratePerSec: number,
    private readonly burst: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** The limit for a new connection from `address`. */
  forConnection(address: string): ConnectionLimit {
    const at = this.flooded.get(address);
    const cooling = at !== undefined && this.now() - at < FLOOD_COOLDOWN_MS;
    if (at !== undefined && !cooling) this.flooded.delete(address);
    if (!cooling) return { bucket: new TokenBucket(this.ratePerSec, this.burst), refusalsBeforeClose: REFUSALS_BEFORE_CLOSE };
    return { bucket: new TokenBucket(this.ratePerSec, this.burst, Math.min(FLOOD_RECONNECT_TOKENS, this.burst)), refusalsBeforeClose: REPEAT_REFUSALS_BEFORE_CLOSE };
  }

  /** A connection from `address` was closed for flooding. */
  closedForFlooding(address: string): void {
    if (this.flooded.size >= MAX_TRACKED_CLIENTS) this.flooded.clear();
    this.flooded.set(address, this.now());
  }
}
