import pg from 'pg';
import { RelayError } from '../../protocol/index.js';

/** Connection settings of the PostgreSQL store; every connection it opens has them. */
export interface ConnectionSettings {
  url: string;
  /** A statement running longer is cancelled (-32008): a batch never holds the head lock past it. */
  statementTimeoutMs: number;
  /** Waiting longer for a lock (the head row another node holds) fails the batch with -32008. */
  lockTimeoutMs: number;
  /**
   * A session idle inside a transaction that long is ended by the server, which frees its locks: a
   * frozen node stops the others for this long, not for its whole freeze (SCALE-OUT.md measured
   * 3,043 ms without it, 1,022 ms with 1 s). The batch path is one statement, never idle in a
   * transaction; the op-by-op fallback is a few statements in a row.
   */
  idleInTransactionTimeoutMs: number;
  /** Connecting longer fails the batch or read with -32008. */
  connectTimeoutMs: number;
  /** TCP keepalive probes start after this idle time: a dead peer is noticed without traffic. */
  keepAliveInitialDelayMs: number;
}

export const DEFAULT_SETTINGS: Omit<ConnectionSettings, 'url'> = {
  statementTimeoutMs: 10_000,
  lockTimeoutMs: 5_000,
  idleInTransactionTimeoutMs: 2_000,
  connectTimeoutMs: 5_000,
  keepAliveInitialDelayMs: 10_000,
};

// bigint columns (ids, epoch-ms times, counts) as numbers, as SQLite gives them; every value the
// relay stores is below 2^53. Per pool, not pg's global parser table.
const INT8_OID = 20;
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID && format !== 'binary' ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

/** A pool whose connections carry the settings; idle connections that die are dropped, not thrown. */
export function openPool(s: ConnectionSettings, role: string, max: number, onIdleError: (err: Error) => void): pg.Pool {
  const pool = new pg.Pool({
    connectionString: s.url,
    max,
    application_name: `agent-relay ${role}`,
    statement_timeout: s.statementTimeoutMs,
    lock_timeout: s.lockTimeoutMs,
    idle_in_transaction_session_timeout: s.idleInTransactionTimeoutMs,
    // A client-side bound past the server's own: a server that stops answering (a black hole, no
    // RST) is given up on, and the batch's outcome is then looked up (lost-reply.ts).
    query_timeout: s.statementTimeoutMs + s.connectTimeoutMs,
    connectionTimeoutMillis: s.connectTimeoutMs,
    keepAlive: true,
    keepAliveInitialDelayMillis: s.keepAliveInitialDelayMs,
    // An acknowledgement means "committed and flushed" (synchronous replication too, where set up).
    options: '-c synchronous_commit=on',
    idleTimeoutMillis: 30_000,
    types,
  });
  pool.on('error', onIdleError);
  return pool;
}

/** The URL without its password, for messages. */
export function redactedUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparsable PostgreSQL URL)';
  }
}

/**
 * What a failed call means for the batch it carried:
 * - `busy`: the server refused the statement (lock or statement timeout, a standby, out of disk
 *   or memory, a serialization failure): it rolled back, nothing was written.
 * - `statement`: the statement raised (an op threw: a bug, or a constraint its plan missed); it
 *   rolled back, the connection is fine.
 * - `lost`: the connection broke while the call was out (a reset, a terminated backend, a server
 *   shutting down, a client-side timeout): the batch may have committed; look it up.
 */
export type CallFailure = 'busy' | 'statement' | 'lost';

const BUSY_CODES = /^(55P03|57014|40001|40P01|53...|25006|57P0[1-4]|08...)$/;

export function classify(err: unknown): CallFailure {
  const e = err as { severity?: string; code?: string } | null;
  if (!e || typeof e.severity !== 'string') return 'lost';
  // A FATAL ends the session, possibly after the commit went through (it can arrive between the
  // commit and the reply).
  if (e.severity === 'FATAL' || e.severity === 'PANIC') return 'lost';
  if (typeof e.code === 'string' && BUSY_CODES.test(e.code)) return 'busy';
  return 'statement';
}

/** Words for a failure, with its SQLSTATE when the server named one. */
export function describe(err: unknown): string {
  const e = err as { message?: string; code?: string } | null;
  const message = e?.message || String(err);
  return typeof e?.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) ? `${message} (SQLSTATE ${e.code})` : message;
}

/** The -32008 for a failure that wrote nothing, saying what happened. */
export function storageBusy(what: string, err: unknown, after = 'nothing was written, retry'): RelayError {
  const e = err as { code?: string } | null;
  const why =
    e?.code === '55P03'
      ? 'a lock was held past lock_timeout (another node holds the head of the log)'
      : e?.code === '57014'
        ? 'the statement ran past statement_timeout'
        : e?.code === '25006'
          ? 'the server is read-only (a standby)'
          : describe(err);
  return new RelayError('storageBusy', `storage busy: ${what}: ${why}; ${after}`);
}

export type Query = <R extends pg.QueryResultRow = Record<string, unknown>>(sql: string, params?: unknown[]) => Promise<R[]>;

/** Reads on the pool: the rows, or -32008 when PostgreSQL cannot answer (an error of the SQL itself is thrown as it is). */
export function readQuery(pool: pg.Pool): Query {
  return async <R extends pg.QueryResultRow>(sql: string, params: unknown[] = []) => {
    try {
      return (await pool.query<R>(sql, params)).rows;
    } catch (err) {
      if (classify(err) === 'statement') throw err;
      throw storageBusy('a read failed', err, 'retry');
    }
  };
}
