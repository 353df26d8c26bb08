import type { Domain } from './domain.js';
import type { PruneCounts } from './store-port.js';

export type PruneResult = PruneCounts;

const DAY_MS = 86_400_000;

/**
 * Retention: messages and events older than RETENTION_DAYS, closed tasks closed that long ago,
 * finished callback deliveries and webhook receipts that old, agents offline longer than OFFLINE_PRUNE_MS. Never system agents, never unfinished tasks.
 * The highest pruned message id becomes the cursor floor (-32007 below it).
 */
export function prune(d: Domain): Promise<PruneResult> {
  const now = d.now();
  const op = { op: 'prune' as const, at: now, cutoff: now - d.config.retentionDays * DAY_MS, offlineCutoff: now - d.config.offlinePruneMs };
  return d.queue.apply(op, (o) => {
    if (!o.ok) throw new Error(`prune refused: ${o.refused}`);
    return o.value;
  });
}
