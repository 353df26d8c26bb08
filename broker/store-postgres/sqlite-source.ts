import Database from 'better-sqlite3';
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { MigrateRefused } from './migrate-refused.js';

/**
 * The schema (PRAGMA user_version, broker/store/migrations) the copy is written for: the SQLite
 * store after its migration 0009, whose tables the PostgreSQL migrations mirror (0009 changed only
 * the full-text index's triggers and a relay_meta key, neither copied). A newer SQLite schema needs
 * this copy (and the PostgreSQL schema) brought along first: such a file is refused, not half-copied.
 */
export const SQLITE_SCHEMA_VERSION = 9;

/** The SQLite tables that are not copied row for row. */
const NOT_COPIED = new Set([
  // Their counters go to relay_head (see counters()).
  'relay_meta',
  'sqlite_sequence',
  // The full-text index and its shadow tables: PostgreSQL's `search` column is generated from the rows.
  'messages_fts',
  'messages_fts_data',
  'messages_fts_idx',
  'messages_fts_docsize',
  'messages_fts_config',
]);

/** What the source's AUTOINCREMENT and relay_meta say: the highest ids and tokens ever handed out. */
export interface SourceCounters {
  /** Per table, the highest id ever assigned (pruned rows included): max(sqlite_sequence, max(id)). */
  lastId: (table: 'messages' | 'events' | 'tasks' | 'leases' | 'outbox' | 'delivery_spans') => number;
  leaseToken: number;
  prunedThrough: number;
}

/**
 * A stopped relay's SQLite database, held for the copy. It is opened read-write only to take
 * SQLite's EXCLUSIVE lock, which fails while any other connection has the file open (a running
 * relay keeps its connections open for its whole life, even idle, and under WAL each holds a shared
 * lock on the file); `query_only` then makes the connection refuse any write, and the lock keeps a
 * relay from starting on the file while it is read. Every read runs in that one transaction.
 * Closing it folds the WAL a stopped relay leaves behind into the file (SQLite does so whenever its
 * last connection closes): the bytes move, the rows do not.
 */
export class SqliteSource {
  private constructor(
    readonly path: string,
    private readonly db: Database.Database,
  ) {}

  static open(path: string): SqliteSource {
    const full = resolve(path);
    const stat = statOf(full);
    if (!stat) throw new MigrateRefused(`${full} does not exist: pass --db PATH naming the relay's SQLite file (default $AGENT_RELAY_HOME/relay.db)`);
    if (!stat.isFile()) throw new MigrateRefused(`${full} is not a file: pass --db PATH naming the relay's SQLite file`);
    let db: Database.Database;
    try {
      db = new Database(full, { fileMustExist: true, timeout: 0 });
    } catch (err) {
      throw new MigrateRefused(`cannot open ${full}: ${sqliteReason(err)}`);
    }
    try {
      db.pragma('locking_mode = EXCLUSIVE');
      db.exec('BEGIN EXCLUSIVE');
      db.pragma('query_only = ON');
      const source = new SqliteSource(full, db);
      source.checkSchema();
      return source;
    } catch (err) {
      db.close();
      if (err instanceof MigrateRefused) throw err;
      if (sqliteCode(err) === 'SQLITE_BUSY') throw new MigrateRefused(`${full} is in use: a running relay (or another program) has it open; stop the relay, then run agent-relay migrate again`);
      throw new MigrateRefused(`cannot read ${full}: ${sqliteReason(err)}`);
    }
  }

  /** The tables the file holds that are copied row for row (the rest are NOT_COPIED). */
  tables(): string[] {
    return this.db
      .prepare<[], { name: string }>(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name`)
      .all()
      .map((r) => r.name)
      .filter((name) => !NOT_COPIED.has(name));
  }

  columns(table: string): string[] {
    return this.db
      .prepare<[], { name: string }>(`SELECT name FROM pragma_table_info('${table}')`)
      .all()
      .map((c) => c.name);
  }

  /** The rows as arrays of `columns`, in `order` (a primary key: the file's own order, no sort). */
  rows(table: string, columns: readonly string[], order: string): IterableIterator<unknown[]> {
    return this.db
      .prepare(`SELECT ${columns.map(quoted).join(', ')} FROM ${quoted(table)} ORDER BY ${order}`)
      .raw()
      .iterate() as IterableIterator<unknown[]>;
  }

  counters(): SourceCounters {
    const seq = new Map(
      this.db
        .prepare<[], { name: string; seq: number }>('SELECT name, seq FROM sqlite_sequence')
        .all()
        .map((r) => [r.name, r.seq]),
    );
    const meta = new Map(
      this.db
        .prepare<[], { key: string; value: string }>('SELECT key, value FROM relay_meta')
        .all()
        .map((r) => [r.key, r.value]),
    );
    const maxOf = (table: string, column: string) => this.db.prepare<[], { n: number }>(`SELECT coalesce(max(${column}), 0) AS n FROM ${table}`).get()!.n;
    return {
      lastId: (table) => Math.max(seq.get(table) ?? 0, maxOf(table, 'id')),
      // Tokens are never reused: past the counter and past every token a kept lease carries.
      leaseToken: Math.max(Number(meta.get('lease_token') ?? 0), maxOf('leases', 'token')),
      prunedThrough: Number(meta.get('pruned_through') ?? 0),
    };
  }

  /** End the read transaction (it wrote nothing) and let go of the file. */
  close(): void {
    if (this.db.inTransaction) this.db.exec('ROLLBACK');
    this.db.close();
  }

  private checkSchema(): void {
    const version = this.db.pragma('user_version', { simple: true }) as number;
    const hasMessages = this.db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'messages'`).get() !== undefined;
    if (version === 0 || !hasMessages) throw new MigrateRefused(`${this.path} is not a relay database (it has no relay tables): pass --db PATH naming the relay's SQLite file`);
    if (version < SQLITE_SCHEMA_VERSION)
      throw new MigrateRefused(
        `${this.path} has schema version ${version}, older than ${SQLITE_SCHEMA_VERSION}: start this relay on it once (agent-relay serve --db ${this.path}) so it upgrades the file, stop it, then migrate`,
      );
    if (version > SQLITE_SCHEMA_VERSION)
      throw new MigrateRefused(`${this.path} has schema version ${version}, newer than this agent-relay knows (${SQLITE_SCHEMA_VERSION}): upgrade agent-relay, then migrate`);
  }
}

function statOf(path: string): ReturnType<typeof statSync> | null {
  try {
    return statSync(path);
  } catch {
    return null;
  }
}

function quoted(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

function sqliteCode(err: unknown): string | undefined {
  return (err as { code?: string } | null)?.code;
}

function sqliteReason(err: unknown): string {
  const code = sqliteCode(err);
  if (code === 'SQLITE_NOTADB') return 'it is not an SQLite database (so not a relay database): pass --db PATH naming the relay file';
  const message = err instanceof Error ? err.message : String(err);
  return code ? `${message} (${code})` : message;
}
