import type { Domain } from './domain.js';

/**
 * Record the end of every lease whose TTL passed (one `lease.released` event each, reason
 * `expired`). An expired lease is free to others before this runs: acquire judges expiry by the
 * relay clock inside its transaction. Writes only when some lease is due.
 */
export async function sweepExpiredLeases(d: Domain): Promise<number> {
  const now = d.now();
  if ((await d.store.leases.expired(now)).length === 0) return 0;
  return d.queue.apply({ op: 'lease.expire', at: now }, (o) => (o.ok ? o.value.leases.length : 0));
}
