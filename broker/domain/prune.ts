import type { RelayCore } from './core.js';

export interface PruneResult {
  messages: number;
  prunedThrough: number;
  events: number;
  tasks: number;
  callbacks: number;
  receipts: number;
  agents: string[];
}

const DAY_MS = 86_400_000;

/**
 * Retention: messages and events older than RETENTION_DAYS, closed tasks closed that long ago,
 * finished callback deliveries and webhook receipts that old, agents offline longer than OFFLINE_PRUNE_MS. Never system agents, never unfinished tasks.
 * The highest pruned message id becomes the cursor floor (-32007 below it).
 */
export function prune(core: RelayCore): Promise<PruneResult> {
  return core.queue.submit((onCommit) => {
    const now = core.now();
    const cutoff = now - core.config.retentionDays * DAY_MS;
    const before = core.store.prunedThrough();
    const maxPruned = core.store.messages.pruneBefore(cutoff);
    const prunedThrough = Math.max(before, maxPruned);
    if (prunedThrough > before) core.store.setPrunedThrough(prunedThrough);
    if (maxPruned > 0) core.store.deliveries.pruneThrough(maxPruned);
    const events = core.store.events.pruneBefore(cutoff);
    const tasks = core.store.tasks.pruneClosedBefore(cutoff);
    // Finished callback deliveries and webhook receipts age out with the rest; pending ones stay.
    const callbacks = core.store.outbox.pruneFinishedBefore(cutoff);
    const receipts = core.store.receipts.pruneBefore(cutoff);
    const agents = core.store.agents.pruneOffline(now - core.config.offlinePruneMs);
    onCommit(() => {
      for (const id of agents) {
        core.agents.delete(id);
        core.store.messages.forgetInbox(id);
      }
    });
    return { messages: maxPruned > 0 ? maxPruned - before : 0, prunedThrough, events, tasks, callbacks, receipts, agents };
  });
}
