import type pg from 'pg';
import type { WriteOp } from '../domain/store-port.js';
import { classify } from './connection.js';

/*
 * The batch again, op by op, after relay_apply raised: an op threw (a bug, or a constraint its
 * plan missed). In one transaction holding the head lock, each op runs in its own savepoint, so
 * only the op that throws answers {refused: 'error'} and the rest commit as planned. Savepoints
 * are kept out of the normal path (a subtransaction each; past 64 every session slows): this is
 * the rare path, several round trips long. The batch id is recorded as on the normal path, so a
 * lost COMMIT reply is settled the same way. Errors other than an op's own (a broken connection,
 * a timeout) are thrown for the caller to handle like the normal path's.
 */
export async function applyOpByOp(client: pg.PoolClient, batchId: string, ops: readonly WriteOp[], signed: readonly string[]): Promise<unknown[]> {
  await client.query('BEGIN');
  try {
    await client.query('SELECT 1 FROM relay_head FOR UPDATE');
    const outcomes: unknown[] = [];
    for (const op of ops) {
      await client.query('SAVEPOINT relay_op');
      try {
        const r = await client.query<{ r: unknown[] }>('SELECT relay_apply_ops($1::json, $2::text[]) AS r', [JSON.stringify([op]), signed]);
        outcomes.push(r.rows[0]!.r[0]);
        await client.query('RELEASE SAVEPOINT relay_op');
      } catch (err) {
        if (classify(err) !== 'statement') throw err;
        await client.query('ROLLBACK TO SAVEPOINT relay_op');
        const e = err as { message?: string; code?: string };
        outcomes.push({ ok: false, refused: 'error', error: { message: e.message ?? String(err), code: e.code }, changes: [] });
      }
    }
    await client.query('INSERT INTO relay_batches (id, outcomes) VALUES ($1, $2::jsonb)', [batchId, JSON.stringify(outcomes)]);
    await client.query('COMMIT');
    return outcomes;
  } catch (err) {
    // A statement error left the transaction aborted; a broken connection needs no rollback.
    if (classify(err) !== 'lost') await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}
