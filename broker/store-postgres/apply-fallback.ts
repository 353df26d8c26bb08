import type pg from 'pg';
import { classify } from './connection.js';
import type { RawBatch } from './outcomes.js';

/*
 * The batch again, op by op, after relay_apply raised: an op threw (a bug, or a constraint its
 * plan missed). In one transaction holding the head lock, each op runs in its own savepoint, so
 * only the op that throws answers {refused: 'error'} and the rest commit as planned. Savepoints
 * are kept out of the normal path (a subtransaction each; past 64 every session slows): this is
 * the rare path, several round trips long. The batch id is recorded as on the normal path, so a
 * lost COMMIT reply is settled the same way, and its changes are logged for the feed as relay_apply logs them. Errors other than an op's own (a broken connection,
 * a timeout) are thrown for the caller to handle like the normal path's.
 */
export async function applyOpByOp(client: pg.PoolClient, batchId: string, ops: readonly object[], signed: readonly string[]): Promise<RawBatch> {
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
    const json = JSON.stringify(outcomes);
    const position = (await client.query<{ p: number | null }>('SELECT relay_log_batch($1::jsonb) AS p', [json])).rows[0]!.p;
    await client.query('INSERT INTO relay_batches (id, outcomes, position) VALUES ($1, $2::jsonb, $3)', [batchId, json, position]);
    await client.query('COMMIT');
    return { outcomes, position };
  } catch (err) {
    // A statement error left the transaction aborted; a broken connection needs no rollback.
    if (classify(err) !== 'lost') await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}
