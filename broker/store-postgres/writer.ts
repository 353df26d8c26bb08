import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { RelayError } from '../../protocol/index.js';
import type { Outcome, WriteOp } from '../domain/store-port.js';
import { applyOpByOp } from './apply-fallback.js';
import { classify, describe, storageBusy } from './connection.js';
import { resolveLostBatch } from './lost-reply.js';
import { wireOps } from './wire.js';
import { outcomesFromRaw, type RawBatch } from './outcomes.js';

const APPLY = 'SELECT relay_apply($1::json) AS r';

/** A committed batch's outcomes, and its position in the change feed (null: it changed nothing anyone publishes). */
export interface AppliedBatch {
  outcomes: Outcome[];
  position: number | null;
}

/** A batch whose reply was lost: the lookup that settles its outcome (lost-reply.ts). */
interface LostReply {
  lookup: Promise<AppliedBatch>;
}

// A checked-out client whose connection breaks also emits 'error' (pg), which would be thrown
// without a listener; the query's rejection is what this module acts on.
const listening = new WeakSet<pg.PoolClient>();
async function connect(pool: pg.Pool): Promise<pg.PoolClient> {
  const client = await pool.connect();
  if (!listening.has(client)) {
    listening.add(client);
    client.on('error', () => {});
  }
  return client;
}

/**
 * The write side: each batch is one call of relay_apply (0002_apply.sql) on the writer pool's
 * connection: one round trip, committed when it returns (autocommit, synchronous_commit=on).
 * Batches go one at a time, in the order given. A batch that fails as a whole rejects with -32008
 * and wrote nothing; one whose connection broke while it was out is looked up (lost-reply.ts).
 */
export class PostgresWriter {
  lastFailure: { at: number; error: string } | null = null;
  private tail: Promise<unknown> = Promise.resolve();
  private closing = false;
  /** Lookups of lost replies still running (they do not hold up the batches after them). */
  private readonly lookups = new Set<Promise<unknown>>();

  constructor(
    private readonly writerPool: pg.Pool,
    /** For lookups of lost replies: a fresh connection, never the one that broke. */
    private readonly lookupPool: pg.Pool,
    private readonly signed: readonly string[],
    /** Whether sends carry their search vector (the database agreed on open: search-vector.ts). */
    private readonly vectors: boolean,
  ) {}

  apply(ops: readonly WriteOp[]): Promise<AppliedBatch> {
    if (this.closing) return Promise.reject(new RelayError('storageBusy', 'relay is shutting down: nothing was written'));
    const run = this.tail.then(() => this.applyNow(ops));
    this.tail = run.then(
      () => {},
      () => {},
    );
    return run.then((r) => ('lookup' in r ? r.lookup : r));
  }

  /**
   * The batch's outcomes; or, when its reply was lost, the lookup of its outcome, which the next
   * batch does not wait for (PostgreSQL may be down for a while; the next batch then fails at once
   * with -32008 instead of queueing behind the lookup).
   */
  private async applyNow(ops: readonly WriteOp[]): Promise<AppliedBatch | LostReply> {
    const batchId = randomUUID();
    const client = await this.checkout();
    let raw: RawBatch;
    try {
      raw = (await client.query<{ r: RawBatch }>(APPLY, [JSON.stringify({ id: batchId, signed: this.signed, ops: wireOps(ops, { vectors: this.vectors, runs: true }) })])).rows[0]!.r;
      client.release();
    } catch (err) {
      const kind = classify(err);
      client.release(kind === 'lost' ? (err as Error) : undefined);
      if (kind === 'busy') {
        this.noteFailure(err);
        throw storageBusy('the batch was refused', err);
      }
      if (kind === 'lost') return this.lookUp(ops, batchId, err);
      const fallback = await this.opByOp(ops, batchId);
      if ('lookup' in fallback) return fallback;
      raw = fallback;
    }
    return this.answered(ops, raw);
  }

  /** A writer connection, or -32008 when PostgreSQL cannot be reached. */
  private async checkout(): Promise<pg.PoolClient> {
    try {
      return await connect(this.writerPool);
    } catch (err) {
      this.noteFailure(err);
      throw storageBusy('PostgreSQL cannot be reached', err);
    }
  }

  /** relay_apply raised: an op threw. The batch op by op, so only that op fails (apply-fallback.ts). */
  private async opByOp(ops: readonly WriteOp[], batchId: string): Promise<RawBatch | LostReply> {
    const client = await this.checkout();
    try {
      const raw = await applyOpByOp(client, batchId, wireOps(ops, { vectors: this.vectors, runs: false }), this.signed);
      client.release();
      return raw;
    } catch (err) {
      const kind = classify(err);
      client.release(kind === 'lost' ? (err as Error) : undefined);
      if (kind === 'lost') return this.lookUp(ops, batchId, err);
      this.noteFailure(err);
      throw storageBusy('the batch was refused', err);
    }
  }

  private lookUp(ops: readonly WriteOp[], batchId: string, cause: unknown): LostReply {
    this.noteFailure(cause);
    const lookup = resolveLostBatch(this.lookupPool, batchId, cause, () => this.closing).then((raw) => this.answered(ops, raw));
    this.lookups.add(lookup);
    const forget = () => this.lookups.delete(lookup);
    lookup.then(forget, forget);
    return { lookup };
  }

  private answered(ops: readonly WriteOp[], raw: RawBatch): AppliedBatch {
    const outcomes = outcomesFromRaw(ops, raw.outcomes);
    if (outcomes.some((o) => o.ok)) this.lastFailure = null;
    return { outcomes, position: raw.position };
  }

  private noteFailure(err: unknown): void {
    this.lastFailure = { at: Date.now(), error: describe(err) };
  }

  /** Refuse new batches, finish the one in hand (and end the lookups), then return. */
  async close(): Promise<void> {
    this.closing = true;
    await this.tail;
    await Promise.allSettled([...this.lookups]);
  }
}
