import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { RelayError } from '../../protocol/index.js';
import { describe } from './connection.js';
import type { RawBatch } from './outcomes.js';

/*
 * A batch whose connection broke while its call was out may have committed (the reply, not the
 * commit, may be what was lost). Its id was written in its own transaction (relay_batches), so a
 * fresh connection settles it:
 *
 * 1. INSERT the id with no outcomes, ON CONFLICT DO NOTHING. If the batch's transaction is still
 *    running and has written its row, this waits for it to end; if it has not written its row yet,
 *    ours wins, and the batch fails on the primary key when it gets there: it can never commit
 *    after this answer.
 * 2. Our row went in: the batch did not commit, and now never will. Answer -32008 (nothing written).
 * 3. Its row was there: SELECT its outcomes and feed position (a new statement, so a new snapshot that sees the
 *    commit we waited for) and answer them, as if the reply had arrived.
 *
 * So nothing acknowledged is missing and nothing refused is present. While PostgreSQL cannot be
 * reached the lookup is retried (it cannot be answered any other way without risking one of the
 * two); it ends when the store closes, with -32008 saying the outcome is unknown.
 */

const RETRY_MS = 250;

const FENCE = `INSERT INTO relay_batches (id, outcomes) VALUES ($1, NULL) ON CONFLICT (id) DO NOTHING RETURNING id`;
const OUTCOMES = `SELECT outcomes, position FROM relay_batches WHERE id = $1`;

export async function resolveLostBatch(pool: pg.Pool, batchId: string, cause: unknown, closing: () => boolean): Promise<RawBatch> {
  let last: unknown = cause;
  for (;;) {
    if (closing()) {
      throw new RelayError(
        'storageBusy',
        `storage busy: the connection to PostgreSQL broke while a batch was out (${describe(cause)}), and the relay closed before its outcome could be looked up (last: ${describe(last)})`,
      );
    }
    try {
      const fenced = await pool.query(FENCE, [batchId]);
      if (fenced.rowCount === 1) throw notWritten(cause);
      const row = (await pool.query<{ outcomes: unknown[] | null; position: number | null }>(OUTCOMES, [batchId])).rows[0];
      // A row without outcomes is an earlier lookup's fence (this one's first try got through).
      if (!row || row.outcomes === null) throw notWritten(cause);
      return { outcomes: row.outcomes, position: row.position };
    } catch (err) {
      if (err instanceof RelayError) throw err;
      last = err;
      await sleep(RETRY_MS);
    }
  }
}

function notWritten(cause: unknown): RelayError {
  return new RelayError('storageBusy', `storage busy: the connection to PostgreSQL broke while the batch was out (${describe(cause)}); it did not commit: nothing was written, retry`);
}
