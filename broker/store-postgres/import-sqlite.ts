import type pg from 'pg';
import { DEFAULT_SETTINGS, describe, openPool, redactedUrl } from './connection.js';
import { COPIED_TABLES, type CopiedTable, TableInsert } from './import-tables.js';
import { migrate } from './migrate.js';
import { MigrateRefused } from './migrate-refused.js';
import { SoleNode } from './sole-node.js';
import { SqliteSource } from './sqlite-source.js';
import { isBug } from '../startup-error.js';

export interface ImportOptions {
  /** The stopped relay's SQLite file. */
  sqlitePath: string;
  /** An empty PostgreSQL database: postgres://user:password@host:port/database */
  postgresUrl: string;
  /** Rows per INSERT (default 1000); a batch also ends past BATCH_BYTES of values. */
  batchRows?: number;
}

export interface ImportSummary {
  source: string;
  /** The target URL without its password. */
  target: string;
  tables: Array<{ table: string; rows: number }>;
  /** relay_head as set: new ids continue after these. */
  head: { lastMessage: number; lastEvent: number; lastTask: number; lastLease: number; leaseToken: number; prunedThrough: number };
  ms: number;
}

// Message bodies may be up to a frame (1 MiB by default): a batch is bounded by size as well as rows.
const BATCH_BYTES = 8 * 1024 * 1024;

/**
 * Copy a stopped relay's SQLite database into an empty PostgreSQL database (`agent-relay
 * migrate`): the target gets the PostgreSQL store's own migrations, then every table with its ids
 * in ONE transaction (all or nothing), then relay_head's counters from the source, so new ids
 * continue after the old ones and a client resuming with `since: N` gets exactly what follows N.
 * The SQLite file is checked (and locked against a relay starting on it) before PostgreSQL is touched.
 */
export async function importSqlite(opts: ImportOptions): Promise<ImportSummary> {
  const started = performance.now();
  const target = redactedUrl(opts.postgresUrl);
  const source = SqliteSource.open(opts.sqlitePath);
  try {
    const unknown = source.tables().filter((name) => !COPIED_TABLES.some((t) => t.name === name));
    if (unknown.length > 0) throw new MigrateRefused(`${source.path} has tables this agent-relay does not know (${unknown.join(', ')}): upgrade agent-relay, then migrate`);
    const missing = COPIED_TABLES.filter((t) => !source.tables().includes(t.name)).map((t) => t.name);
    if (missing.length > 0) throw new MigrateRefused(`${source.path} is not a complete relay database (no ${missing.join(', ')}): pass --db PATH naming the relay's SQLite file`);
    // Two connections: the copy's, and the one holding the node lock (sole-node.ts) meanwhile.
    const settings = { ...DEFAULT_SETTINGS, url: opts.postgresUrl, statementTimeoutMs: 10 * 60_000, idleInTransactionTimeoutMs: 60_000 };
    const pool = openPool(settings, 'migrate', 2, () => {});
    try {
      const client = await pool.connect().catch((err: unknown) => {
        throw new MigrateRefused(`cannot connect to PostgreSQL ${target}: ${describe(err)}`);
      });
      try {
        await migrate(client);
        const node = await SoleNode.take(pool, opts.postgresUrl, () => {});
        try {
          const copied = await copyAll(client, source, target, opts.batchRows ?? 1000);
          return { source: source.path, target, ...copied, ms: performance.now() - started };
        } finally {
          await node.release();
        }
      } finally {
        client.release();
      }
    } finally {
      await pool.end();
    }
  } finally {
    source.close();
  }
}

async function copyAll(client: pg.PoolClient, source: SqliteSource, target: string, batchRows: number): Promise<Pick<ImportSummary, 'tables' | 'head'>> {
  await client.query('BEGIN');
  try {
    // The head row, locked to COMMIT: a relay started on the target meanwhile waits for the copy.
    await client.query('SELECT 1 FROM relay_head FOR UPDATE');
    await refuseIfHoldsData(client, target);
    const tables: ImportSummary['tables'] = [];
    for (const table of COPIED_TABLES) tables.push({ table: table.name, rows: await copyTable(client, source, table, batchRows) });
    const head = await setCounters(client, source);
    await client.query('COMMIT');
    return { tables, head };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    if (err instanceof MigrateRefused || isBug(err)) throw err;
    throw new MigrateRefused(`copying into ${target} failed, so nothing was copied (rolled back): ${describe(err)}`);
  }
}

async function refuseIfHoldsData(client: pg.PoolClient, target: string): Promise<void> {
  const row = (
    await client.query<Record<string, number>>(
      `SELECT (SELECT count(*) FROM agents) AS agents, (SELECT count(*) FROM messages) AS messages, (SELECT count(*) FROM tasks) AS tasks,
              (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM leases) AS leases, last_message, last_event, last_task
       FROM relay_head`,
    )
  ).rows[0]!;
  const held = ['agents', 'messages', 'tasks', 'events', 'leases'].filter((k) => row[k]! > 0).map((k) => `${row[k]} ${k}`);
  // Rows pruned away still leave their ids behind: a database that served a relay is not empty.
  if (held.length === 0 && row.last_message! + row.last_event! + row.last_task! > 0) held.push(`ids handed out up to message ${row.last_message}`);
  if (held.length > 0)
    throw new MigrateRefused(`PostgreSQL database ${target} already holds relay data (${held.join(', ')}): migrate only into an empty database (createdb a new one); nothing was copied`);
}

async function copyTable(client: pg.PoolClient, source: SqliteSource, table: CopiedTable, batchRows: number): Promise<number> {
  const insert = await TableInsert.plan(client, table, source.columns(table.name));
  let batch: unknown[][] = [];
  let bytes = 0;
  let rows = 0;
  const flush = async () => {
    await insert.insert(client, batch);
    rows += batch.length;
    batch = [];
    bytes = 0;
  };
  for (const row of source.rows(table.name, insert.columns, table.order)) {
    batch.push(row);
    for (const v of row) bytes += typeof v === 'string' ? v.length : 8;
    if (batch.length >= batchRows || bytes >= BATCH_BYTES) await flush();
  }
  if (batch.length > 0) await flush();
  return rows;
}

/** relay_head's counters by name (a later migration may add columns of its own), and the identity sequences past the copied ids. */
async function setCounters(client: pg.PoolClient, source: SqliteSource): Promise<ImportSummary['head']> {
  const c = source.counters();
  const head = {
    lastMessage: c.lastId('messages'),
    lastEvent: c.lastId('events'),
    lastTask: c.lastId('tasks'),
    lastLease: c.lastId('leases'),
    leaseToken: c.leaseToken,
    prunedThrough: c.prunedThrough,
  };
  await client.query('UPDATE relay_head SET last_message = $1, last_event = $2, last_task = $3, last_lease = $4, lease_token = $5, pruned_through = $6', [
    head.lastMessage,
    head.lastEvent,
    head.lastTask,
    head.lastLease,
    head.leaseToken,
    head.prunedThrough,
  ]);
  for (const table of ['delivery_spans', 'outbox'] as const) {
    const last = c.lastId(table);
    if (last > 0) await client.query(`SELECT setval(pg_get_serial_sequence($1, 'id'), $2)`, [table, last]);
  }
  return head;
}

/** The summary `agent-relay migrate` prints. */
export function describeImport(s: ImportSummary): string[] {
  const total = s.tables.reduce((n, t) => n + t.rows, 0);
  const seconds = s.ms / 1000;
  const width = Math.max(...s.tables.map((t) => t.table.length));
  return [
    `copied ${s.source} to ${s.target} in ${seconds.toFixed(2)} s (one transaction):`,
    ...s.tables.map((t) => `  ${t.table.padEnd(width)}  ${t.rows}`),
    `  ${'total'.padEnd(width)}  ${total} rows (${Math.round(total / Math.max(seconds, 0.001))} rows/s)`,
    `message ids continue after ${s.head.lastMessage} (events after ${s.head.lastEvent}, tasks after ${s.head.lastTask}, leases after ${s.head.lastLease}, lease tokens after ${s.head.leaseToken}); cursors clients hold stay valid`,
    `next: start the relay with AGENT_RELAY_STORE set to that URL (the SQLite file is left as it was)`,
  ];
}
