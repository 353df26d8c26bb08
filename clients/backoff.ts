export interface BackoffPolicy {
  /** First delay's ceiling, in ms. */
  initialMs: number;
  /** No delay exceeds this. */
  maxMs: number;
  /** In [0, 1): the jitter source. */
  random: () => number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { initialMs: 500, maxMs: 15_000, random: Math.random };

/**
 * Delay before reconnect attempt `attempt` (0-based): exponential with "equal jitter", uniform in
 * [cap/2, cap) where cap = min(maxMs, initialMs·2^attempt). Half the cap is kept so a crowd of
 * clients spreads out without any of them hammering a relay that is restarting.
 */
export function reconnectDelay(attempt: number, policy: BackoffPolicy = DEFAULT_BACKOFF): number {
  const cap = Math.min(policy.maxMs, policy.initialMs * 2 ** Math.min(attempt, 30));
  return Math.floor(cap / 2 + policy.random() * (cap / 2));
}
