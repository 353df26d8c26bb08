import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import type { Domain } from './domain.js';
import { guardedLookup, isPrivateAddress } from './ssrf.js';
import type { OutboxEntry } from './store-port.js';
import { signStandardWebhook } from './webhooks.js';

export interface CallbackPolicy {
  maxAttempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  timeoutMs: number;
  /** In [0, 1): the jitter source (tests pass a fixed one). */
  random: () => number;
}

export const DEFAULT_CALLBACK_POLICY: CallbackPolicy = {
  maxAttempts: 8,
  baseDelayMs: 1000,
  maxDelayMs: 5 * 60_000,
  timeoutMs: 10_000,
  random: Math.random,
};

/** How long after a failed pass (the store refused a read or a write) the dispatcher looks again. */
const RETRY_PASS_MS = 2_000;

/** Exponential backoff with full jitter: uniform in [0, min(max, base·2^attempt)). */
export function backoffDelay(attempt: number, p: Pick<CallbackPolicy, 'baseDelayMs' | 'maxDelayMs' | 'random'>): number {
  const cap = Math.min(p.maxDelayMs, p.baseDelayMs * 2 ** attempt);
  return Math.floor(p.random() * cap);
}

/** Retry-After as seconds or an HTTP date, in ms from now; null when absent or unreadable. */
export function parseRetryAfter(value: string | undefined, now: number): number | null {
  if (!value) return null;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}

interface AttemptResult {
  status: number | null;
  error: string | null;
  retryAfter: string | undefined;
  /** Retrying cannot help (a refused address, a bad URL, no secret): dead-letter now. */
  permanent?: boolean;
}

/**
 * Delivers the callback outbox: signed Standard Webhooks POSTs, only 2xx counts, no redirects
 * followed, backoff with full jitter (Retry-After honoured), dead-letter after maxAttempts.
 * State lives in the outbox table, so a restart resumes where it stopped. Entries are leased
 * before they are sent (callback.lease), so dispatchers of several relay nodes on one store send
 * each callback once at a time; an entry whose dispatcher died is due again when its lease ends.
 */
export class CallbackDispatcher {
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private stopped = false;
  private readonly inFlight = new Set<number>();
  /** Past the longest attempt (its timeout), so a lease ends only when its dispatcher is gone. */
  private readonly leaseMs: number;

  constructor(
    private readonly core: Domain,
    private readonly secretFor: (signer: string) => string | undefined,
    private readonly policy: CallbackPolicy = DEFAULT_CALLBACK_POLICY,
  ) {
    this.leaseMs = 3 * policy.timeoutMs;
  }

  /** Look for due entries soon (after an enqueue commits, or on start). */
  kick(delayMs = 0): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.pass(), delayMs);
    this.timer.unref();
  }

  /**
   * A timed pass: a store that fails a read or a write (PostgreSQL restarting, SQLite busy) costs
   * this pass, not the process (a rejection nobody awaits ends a Node process). The outbox keeps
   * every entry, so the next pass, a few seconds on, sends what this one could not.
   */
  private async pass(): Promise<void> {
    try {
      await this.run();
    } catch (err) {
      if (this.stopped) return;
      this.core.log.warn({ err }, `a callback dispatcher pass failed; trying again in ${RETRY_PASS_MS} ms`);
      this.kick(RETRY_PASS_MS);
    }
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  /** One pass: deliver every due entry (in order per task), then sleep until the next one is due. */
  async run(): Promise<void> {
    if (this.running || this.stopped) return;
    this.running = true;
    try {
      for (;;) {
        // A read first: a pass with nothing due writes nothing.
        if ((await this.core.store.outbox.due(this.core.now(), 1)).length === 0) break;
        const leased = await this.core.queue.apply({ op: 'callback.lease', at: this.core.now(), limit: 32, leaseMs: this.leaseMs }, (o) => (o.ok ? o.value.entries : []));
        const mine = leased.filter((e) => !this.inFlight.has(e.id));
        if (mine.length === 0) break;
        await Promise.all(mine.map((e) => this.attempt(e)));
        if (this.stopped) return;
      }
    } finally {
      this.running = false;
    }
    const next = await this.core.store.outbox.nextDueAt();
    if (next !== null && !this.stopped) this.kick(Math.max(0, next - this.core.now()));
  }

  private async attempt(entry: OutboxEntry): Promise<void> {
    this.inFlight.add(entry.id);
    try {
      const result = await this.post(entry);
      const now = this.core.now();
      const ok = result.status !== null && result.status >= 200 && result.status < 300;
      const attempts = entry.attempts + 1;
      let state: OutboxEntry['state'] = ok ? 'delivered' : 'pending';
      let nextAt = now;
      if (!ok) {
        if (attempts >= this.policy.maxAttempts || result.permanent) state = 'dead';
        else {
          const retryAfter = parseRetryAfter(result.retryAfter, now);
          nextAt = now + Math.min(this.policy.maxDelayMs, retryAfter ?? backoffDelay(attempts - 1, this.policy));
        }
      }
      const recorded = await this.core.queue.apply({ op: 'callback.attempt', at: now, id: entry.id, epoch: entry.leaseEpoch, state, nextAt, status: result.status, error: result.error }, (o) => o.ok);
      // Its lease ran out while the attempt was out, and another dispatcher leased it since: that one records it.
      if (!recorded) this.core.log.warn({ outbox: entry.id, taskId: entry.taskId, status: result.status }, 'a callback attempt outlasted its lease: not recorded');
      else if (state === 'dead') this.core.log.warn({ outbox: entry.id, taskId: entry.taskId, status: result.status, error: result.error }, 'callback dead-lettered');
    } catch (err) {
      this.core.log.warn({ err, outbox: entry.id }, 'recording a callback attempt failed');
    } finally {
      this.inFlight.delete(entry.id);
    }
  }

  private post(entry: OutboxEntry): Promise<AttemptResult> {
    const secret = this.secretFor(entry.signer);
    if (!secret) return Promise.resolve({ status: null, error: `no secret for ${entry.signer}`, retryAfter: undefined, permanent: true });
    let url: URL;
    try {
      url = new URL(entry.url);
    } catch {
      return Promise.resolve({ status: null, error: 'invalid callback URL', retryAfter: undefined, permanent: true });
    }
    const allowPrivate = this.core.config.allowPrivateCallbacks;
    const host = url.hostname.replace(/^\[|\]$/g, '');
    // IP literals skip DNS lookup inside http.request, so they are checked here.
    if (isIP(host) && !allowPrivate && isPrivateAddress(host)) {
      return Promise.resolve({ status: null, error: `callback address ${host} is private, loopback or link-local`, retryAfter: undefined, permanent: true });
    }
    const timestamp = Math.floor(this.core.now() / 1000);
    const body = Buffer.from(entry.payload);
    const headers = {
      'content-type': 'application/json',
      'content-length': String(body.length),
      'user-agent': 'agent-relay-callbacks/1',
      'webhook-id': entry.webhookId,
      'webhook-timestamp': String(timestamp),
      'webhook-signature': signStandardWebhook(secret, entry.webhookId, timestamp, body),
    };
    const client = url.protocol === 'https:' ? https : http;
    return new Promise((resolve) => {
      const req = client.request(url, { method: 'POST', headers, timeout: this.policy.timeoutMs, lookup: guardedLookup(allowPrivate), agent: false }, (res) => {
        res.resume();
        const retryAfter = res.headers['retry-after'];
        const status = res.statusCode ?? null;
        res.on('end', () => resolve({ status, error: status !== null && status >= 300 && status < 400 ? 'redirect not followed' : null, retryAfter }));
        res.on('error', () => resolve({ status, error: 'response aborted', retryAfter }));
      });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${this.policy.timeoutMs} ms`)));
      // A name that resolves to a refused address stays refused: no point retrying it.
      req.on('error', (err) => resolve({ status: null, error: err.message, retryAfter: undefined, permanent: (err as NodeJS.ErrnoException).code === 'EBLOCKED' }));
      req.end(body);
    });
  }
}
