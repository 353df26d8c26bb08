import pg from 'pg';
import type { HistoryRows } from '../reliability/history.js';

/** The rows the queue-history checks read (../reliability/history.ts), from a PostgreSQL relay database. */
export async function postgresHistoryRows(url: string, clients: readonly string[]): Promise<HistoryRows> {
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  try {
    // One snapshot for every read, as SQLite's single connection gives.
    await db.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const messages = await db.query<HistoryRows['messages'][number]>(`SELECT id::float8 AS id, from_id AS "fromId", body, task_id::float8 AS "taskId" FROM messages ORDER BY id`);
    const tasks = await db.query<HistoryRows['tasks'][number]>(`SELECT id::float8 AS id, title, source, status, claimed_by AS "claimedBy", attempts FROM tasks ORDER BY id`);
    const claimEvents = await db.query<HistoryRows['claimEvents'][number]>(
      `SELECT task_id::float8 AS "taskId", kind, agent_id AS "agentId", data FROM events WHERE kind IN ('task.claimed', 'task.released') ORDER BY id`,
    );
    const inbox = new Map<string, number[]>();
    for (const c of clients) {
      const r = await db.query<{ id: number }>(`SELECT id::float8 AS id FROM messages WHERE $1 = ANY (recipients) ORDER BY id`, [c]);
      inbox.set(
        c,
        r.rows.map((x) => x.id),
      );
    }
    await db.query('COMMIT');
    return { integrity: null, messages: messages.rows, tasks: tasks.rows, claimEvents: claimEvents.rows, inbox };
  } finally {
    await db.end();
  }
}
