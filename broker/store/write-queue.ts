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
/** Longest a commit is held open for frames still waiting their turn (see holdWhile). */
const MAX_HOLD_MS = 10;

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
  /**
   * Set by the transport: true while frames that arrived with the pending writes still wait their
   * turn (a burst is spread over several event-loop turns so it cannot hold up other connections).
   * Meanwhile the commit is held open, at most MAX_HOLD_MS and MAX_BATCH writes, so the burst still
   * shares one group commit instead of paying one commit per turn.
   */
  holdWhile: () => boolean = () => false;
  private oldestPendingAt = 0;
  /**
   * The newest storage fault a commit met (SQLITE_FULL, an I/O error...), cleared by the next commit
   * that writes without one. /healthz reads it: a full disk still lets BEGIN IMMEDIATE succeed.
   */
  lastFailure: { at: number; error: string } | null = null;

  constructor(
    private readonly store: SqliteStore,
    private readonly log: Logger,
    /** Called after a whole batch failed, so caches can be rebuilt from the store. */
    private readonly onBatchFailure: () => void = () => {},
  ) {}

  submit<T>(work: Work<T>): Promise<T> {
    if (this.closed) return Promise.reject(new RelayError('storageBusy', 'relay is shutting down: nothing was written'));
    return new Promise<T>((resolve, reject) => {
      if (this.pending.length === 0) this.oldestPendingAt = performance.now();
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
      if (this.holding()) {
        this.schedule();
        return;
      }
      this.flush();
      if (this.pending.length > 0 || this.deferred.length > 0) this.schedule();
    });
  }

  private holding(): boolean {
    return this.pending.length > 0 && this.pending.length < MAX_BATCH && performance.now() - this.oldestPendingAt < MAX_HOLD_MS && this.holdWhile();
  }

  private flush(): void {
    const batch = this.pending.splice(0, MAX_BATCH);
    this.oldestPendingAt = performance.now();
    const deferred = this.deferred.splice(0);
    if (batch.length === 0 && deferred.length === 0) return;
    const outcomes: Array<{ ok: boolean; value: unknown; hooks: Array<() => void> }> = [];
    let fault: unknown = null;
    let wrote = false;
    const started = performance.now();
    try {
      this.store.writeTransaction(() => {
        for (const op of batch) {
          const hooks: Array<() => void> = [];
          try {
            const value = this.store.savepoint(() => op.work((fn) => hooks.push(fn)));
            outcomes.push({ ok: true, value, hooks });
            wrote = true; // an acknowledged write landed; deferred bookkeeping alone does not say so
          } catch (err) {
            outcomes.push({ ok: false, value: err, hooks: [] });
            if (isStorageFault(err)) fault = err;
            // On SQLITE_FULL (and IOERR, BUSY, NOMEM) SQLite may roll back the whole transaction,
            // not just the statement: then nothing of this batch is written, and the writes after
            // this one would each run and commit on their own, outside the group (written, yet
            // answered -32603). Found by the reliability suite's full-disk test.
            if (!this.store.inTransaction) throw new BatchRolledBack(err);
          }
        }
        for (const fn of deferred) {
          try {
            this.store.savepoint(fn);
          } catch (err) {
            this.log.warn({ err }, 'deferred write failed');
            if (isStorageFault(err)) fault = err;
            if (!this.store.inTransaction) throw new BatchRolledBack(err);
          }
        }
      });
    } catch (err) {
      const cause = err instanceof BatchRolledBack ? err.cause : err;
      const refusal = storageError(cause);
      if (isStorageFault(cause)) this.noteFailure(cause);
      this.log.error({ err }, 'group commit failed: nothing in it was acknowledged');
      for (const op of batch) op.reject(refusal);
      this.onBatchFailure();
      return;
    }
    if (fault !== null) this.noteFailure(fault);
    else if (wrote) this.lastFailure = null;
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

  private noteFailure(err: unknown): void {
    const code = (err as { code?: unknown } | null)?.code;
    this.lastFailure = { at: Date.now(), error: typeof code === 'string' ? `${code}: ${(err as Error).message}` : String((err as Error)?.message ?? err) };
  }
}

/**
 * A failure of the database itself (full, I/O, read-only, corrupt), not a refusal by the relay's own
 * rules. A held lock (BUSY, LOCKED) is left out: /healthz probes for it live, and it passes.
 */
function isStorageFault(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (err instanceof RelayError || typeof code !== 'string' || !code.startsWith('SQLITE_')) return false;
  return !/^SQLITE_(CONSTRAINT|BUSY|LOCKED)/.test(code);
}

/** SQLite rolled the whole group-commit transaction back while one of its writes ran. */
class BatchRolledBack extends Error {
  constructor(override readonly cause: unknown) {
    super('the transaction was rolled back by SQLite');
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
