import { RelayError } from '../../protocol/index.js';
import type { Logger } from '../logger.js';
import type { SqliteStore } from './store.js';

/** Registers work to run right after the surrounding group commit succeeds (pushes, cache updates). */
export type OnCommit = (fn: () => void) => void;
export type Work<T> = (onCommit: OnCommit) => T;

interface Pending {
  work: Work<unknown>;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

const MAX_BATCH = 1000;

/**
 * Group commit. Writes submitted in the same event-loop turn share one BEGIN IMMEDIATE transaction;
 * each runs in its own savepoint so one refused write does not undo its neighbours. Nothing is
 * resolved (acknowledged) and no onCommit hook runs (nothing is pushed) until COMMIT returned.
 * Hooks run in submission order, so pushes follow commit order.
 */
export class WriteQueue {
  private pending: Pending[] = [];
  private deferred: Array<() => void> = [];
  private scheduled = false;
  private closed = false;
  /** Commit durations in ms, for metrics and benchmarks. */
  readonly commitObserver: { observe: (ms: number, ops: number) => void } = { observe: () => {} };

  constructor(
    private readonly store: SqliteStore,
    private readonly log: Logger,
    /** Called after a whole batch failed, so caches can be rebuilt from the store. */
    private readonly onBatchFailure: () => void = () => {},
  ) {}

  submit<T>(work: Work<T>): Promise<T> {
    if (this.closed) return Promise.reject(new RelayError('storageBusy', 'relay is shutting down: nothing was written'));
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ work, resolve: resolve as (v: unknown) => void, reject });
      this.schedule();
    });
  }

  /** Best-effort bookkeeping (delivery states, last-seen) written with the next commit; nobody waits on it. */
  defer(fn: () => void): void {
    if (this.closed) return;
    this.deferred.push(fn);
    this.schedule();
  }

  /** Write everything still queued, then refuse new work. */
  close(): void {
    while (this.pending.length > 0 || this.deferred.length > 0) this.flush();
    this.closed = true;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
      if (this.pending.length > 0 || this.deferred.length > 0) this.schedule();
    });
  }

  private flush(): void {
    const batch = this.pending.splice(0, MAX_BATCH);
    const deferred = this.deferred.splice(0);
    if (batch.length === 0 && deferred.length === 0) return;
    const outcomes: Array<{ ok: boolean; value: unknown; hooks: Array<() => void> }> = [];
    const started = performance.now();
    try {
      this.store.writeTransaction(() => {
        for (const op of batch) {
          const hooks: Array<() => void> = [];
          try {
            const value = this.store.savepoint(() => op.work((fn) => hooks.push(fn)));
            outcomes.push({ ok: true, value, hooks });
          } catch (err) {
            outcomes.push({ ok: false, value: err, hooks: [] });
          }
        }
        for (const fn of deferred) {
          try {
            this.store.savepoint(fn);
          } catch (err) {
            this.log.warn({ err }, 'deferred write failed');
          }
        }
      });
    } catch (err) {
      const refusal = storageError(err);
      this.log.error({ err }, 'group commit failed: nothing in it was acknowledged');
      for (const op of batch) op.reject(refusal);
      this.onBatchFailure();
      return;
    }
    this.commitObserver.observe(performance.now() - started, batch.length);
    for (const o of outcomes) {
      for (const hook of o.hooks) {
        try {
          hook();
        } catch (err) {
          this.log.error({ err }, 'post-commit hook failed');
        }
      }
    }
    batch.forEach((op, i) => {
      const o = outcomes[i]!;
      if (o.ok) op.resolve(o.value);
      else op.reject(o.value instanceof RelayError ? o.value : storageError(o.value));
    });
  }
}

/** Map a database failure to the contract: busy/locked/full are -32008 (nothing written); the rest internal. */
export function storageError(err: unknown): unknown {
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED' || code === 'SQLITE_BUSY_SNAPSHOT') {
    return new RelayError('storageBusy', 'storage busy: the database is locked by another process; nothing was written, retry');
  }
  if (code === 'SQLITE_FULL') {
    return new RelayError('storageBusy', 'storage full: the disk or database size limit is reached; nothing was written');
  }
  return err;
}
