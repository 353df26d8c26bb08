import { RelayError } from '../../protocol/index.js';
import type { Logger } from '../logger.js';
import type { Change, OpName, OpOf, Outcome, RelayStore, WriteOp } from './store-port.js';

interface Pending {
  op: WriteOp;
  answer: (outcome: Outcome) => unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

export interface CommitQueueOptions {
  /**
   * Publishes what a commit changed (pushes, the agent directory), in commit order. Absent when
   * the store publishes through its change feed (RelayStore.feed), before it answers.
   */
  publish?: (changes: readonly Change[]) => void;
  /**
   * True while frames that arrived with the pending writes still wait their turn (the transport
   * spreads a burst over several event-loop turns). Meanwhile the commit is held open, at most
   * MAX_HOLD_MS and MAX_BATCH writes, so the burst still shares one group commit.
   */
  holdWhile?: () => boolean;
  /** Each commit's duration and the writes it answered, for metrics. */
  observeCommit?: CommitObserver;
}

/**
 * Told of each commit: how long it took and the writes it answers (deferred writes, which nobody
 * waits for, ride along uncounted).
 */
export type CommitObserver = (ms: number, writes: readonly WriteOp[]) => void;

const MAX_BATCH = 1000;
/**
 * Batches handed to the store before the first answers: while the store commits one (its fsync
 * off the event loop), the next is already on its way, so the store never waits for this thread.
 */
const MAX_IN_FLIGHT = 2;
/** Longest a commit is held open for frames still waiting their turn. */
const MAX_HOLD_MS = 10;

/**
 * Group commit. Ops submitted while earlier batches are being applied, or in the same
 * event-loop turn, go to the store as one batch: one transaction. At most MAX_IN_FLIGHT batches
 * are with the store at once; they settle in the order they were handed over. Nothing is resolved
 * (acknowledged) and nothing is published (pushed) until the store answered that the batch is
 * durable; then each op's changes are published and its `then` runs, in submission order, so
 * pushes follow commit order.
 */
export class CommitQueue {
  private pending: Pending[] = [];
  private deferred: WriteOp[] = [];
  private scheduled = false;
  private inFlight = 0;
  /** The settlement of the newest batch handed over: each batch settles after the one before it. */
  private settled: Promise<void> = Promise.resolve();
  private closed = false;
  private oldestPendingAt = 0;
  /** Ops submitted and not yet answered, by name. */
  private readonly unsettled = new Map<OpName, number>();
  private readonly publish: (changes: readonly Change[]) => void;
  private readonly holdWhile: () => boolean;
  private readonly observeCommit: CommitObserver;

  constructor(
    private readonly store: RelayStore,
    private readonly log: Logger,
    options: CommitQueueOptions,
  ) {
    this.publish = options.publish ?? (() => {});
    this.holdWhile = options.holdWhile ?? (() => false);
    this.observeCommit = options.observeCommit ?? (() => {});
  }

  /**
   * Apply one op; once its batch is durable, `then` turns its outcome into the caller's answer (a
   * refusal it throws rejects the call). Runs in commit order, right after the op's changes are published.
   */
  apply<N extends OpName, R>(op: OpOf<N>, then: (outcome: Outcome<N>) => R): Promise<R> {
    if (this.closed) return Promise.reject(new RelayError('storageBusy', 'relay is shutting down: nothing was written'));
    return new Promise<R>((resolve, reject) => {
      if (this.pending.length === 0) this.oldestPendingAt = performance.now();
      this.pending.push({ op, answer: then as (o: Outcome) => unknown, resolve: resolve as (v: unknown) => void, reject });
      this.count(op.op, 1);
      this.schedule();
    });
  }

  /** How many ops of this name were submitted and not yet answered (queued, or with the store). */
  onTheWay(name: OpName): number {
    return this.unsettled.get(name) ?? 0;
  }

  private count(name: OpName, by: number): void {
    this.unsettled.set(name, (this.unsettled.get(name) ?? 0) + by);
  }

  /** Bookkeeping (delivery states, last-seen, push spans) written with the next commit; nobody waits on it. */
  defer(op: WriteOp): void {
    if (this.closed) return;
    this.deferred.push(op);
    this.schedule();
  }

  /** True once closed: new work is refused. */
  get isClosed(): boolean {
    return this.closed;
  }

  /** Write everything still queued, then refuse new work. */
  async close(): Promise<void> {
    while (this.inFlight > 0 || this.pending.length > 0 || this.deferred.length > 0) {
      if (this.inFlight > 0) await this.settled;
      else await this.flush();
    }
    this.closed = true;
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight >= MAX_IN_FLIGHT) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      if (this.inFlight >= MAX_IN_FLIGHT) return;
      if (this.holding()) {
        this.schedule();
        return;
      }
      void this.flush();
    });
  }

  private holding(): boolean {
    return this.pending.length > 0 && this.pending.length < MAX_BATCH && performance.now() - this.oldestPendingAt < MAX_HOLD_MS && this.holdWhile();
  }

  private flush(): Promise<void> {
    const batch = this.pending.splice(0, MAX_BATCH);
    this.oldestPendingAt = performance.now();
    const deferred = this.deferred.splice(0);
    if (batch.length === 0 && deferred.length === 0) return Promise.resolve();
    const started = performance.now();
    const answered = batch.map((p) => p.op);
    const ops = deferred.length === 0 ? answered : [...answered, ...deferred];
    this.inFlight++;
    const applied = this.store.apply(ops);
    applied.catch(() => undefined); // handled below, once the batch before it has settled
    this.settled = this.settled
      .then(() => applied)
      .then(
        (outcomes) => {
          this.observeCommit(performance.now() - started, answered);
          this.settle(batch, outcomes, deferred);
        },
        (err: unknown) => {
          this.log.error({ err }, 'group commit failed: nothing in it was acknowledged');
          for (const p of batch) {
            this.count(p.op.op, -1);
            p.reject(err);
          }
        },
      )
      .finally(() => {
        this.inFlight--;
        if (this.pending.length > 0 || this.deferred.length > 0) this.schedule();
      });
    // The next batch may be handed over now; the store applies them in order.
    if (this.pending.length > 0 || this.deferred.length > 0) this.schedule();
    return this.settled;
  }

  private settle(batch: Pending[], outcomes: Outcome[], deferred: WriteOp[]): void {
    batch.forEach((p, i) => {
      const outcome = outcomes[i]!;
      this.publishSafely(outcome.changes);
      this.count(p.op.op, -1);
      if (!outcome.ok && outcome.refused === 'error') {
        this.log.error({ err: outcome.error, op: p.op.op }, 'a write failed');
        p.reject(outcome.error instanceof RelayError ? outcome.error : new RelayError('internal', 'internal error'));
        return;
      }
      try {
        p.resolve(p.answer(outcome));
      } catch (err) {
        p.reject(err);
      }
    });
    deferred.forEach((op, i) => {
      const outcome = outcomes[batch.length + i]!;
      this.publishSafely(outcome.changes);
      if (!outcome.ok && outcome.refused === 'error') this.log.warn({ err: outcome.error, op: op.op }, 'deferred write failed');
    });
  }

  private publishSafely(changes: readonly Change[]): void {
    if (changes.length === 0) return;
    try {
      this.publish(changes);
    } catch (err) {
      this.log.error({ err }, 'publishing a commit failed');
    }
  }
}
