import { closeSync, existsSync, fsyncSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import type Database from 'better-sqlite3';
import { RelayError } from '../../protocol/index.js';
import { callbackSigner, type Outcome, type WriteOp } from '../domain/store-port.js';
import { OpApplier } from './apply.js';
import { openDatabase, type Db, type OpenOptions } from './db.js';
import { setSearchIndex } from './search-index.js';
import { SearchIndexer } from './search-indexer.js';
import { migrate } from './migrate.js';
import { openTables } from './tables.js';

const GET_META = `SELECT value FROM relay_meta WHERE key = ?`;
const SET_META = `INSERT INTO relay_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`;
export const SYNC_NAMES: Record<number, string> = { 0: 'OFF', 1: 'NORMAL', 2: 'FULL', 3: 'EXTRA' };

export interface WriterOptions extends OpenOptions {
  /** Sources whose task callbacks are signed with their integration's secret (`integration:NAME`); the rest with the relay's. */
  signedSources: readonly string[];
  /** Keep the full-text index of messages (AGENT_RELAY_SEARCH_INDEX): off empties it, on again rebuilds it. */
  searchIndex: boolean;
  /** How long after a commit with new messages the writer indexes them (writer-thread.ts; default 50 ms). */
  searchIndexDelayMs?: number;
}

/** One batch in the writer: its writes (BEGIN IMMEDIATE to before COMMIT), then its COMMIT (with the WAL's sync at FULL). */
export type BatchTiming = { applyMs: number; commitMs: number };

/**
 * The write side of the SQLite store: the one connection that writes, owned by the writer thread
 * (writer-thread.ts). A batch of ops is one BEGIN IMMEDIATE transaction; ops check their
 * preconditions before writing, so the batch needs no savepoints. Only when an op throws (a bug,
 * or a constraint its plan missed) is the batch run again with a savepoint per op, so that op
 * alone fails. `apply` returns once COMMIT returned: with synchronous=FULL the WAL was fsynced
 * before the commit was published to any reader (bench/DURABILITY.md, "What the relay does").
 */
export class StoreWriter {
  /** The newest storage fault a commit met, cleared by the next commit that wrote without one. */
  lastFailure: { at: number; error: string } | null = null;
  private readonly applier: OpApplier;
  private readonly indexer: SearchIndexer;
  private readonly batch: Database.Transaction<(ops: readonly WriteOp[], isolate: boolean) => Outcome[]>;
  private readonly savepoint: Database.Transaction<(op: WriteOp) => Outcome>;
  private opsDoneAt = 0;
  /** How long the last applied batch took in SQLite. */
  timing: BatchTiming = { applyMs: 0, commitMs: 0 };
  private readonly getMeta;
  private readonly setMeta;

  private constructor(
    private readonly db: Db,
    signedSources: readonly string[],
  ) {
    this.getMeta = db.prepare<[string], { value: string }>(GET_META);
    this.setMeta = db.prepare(SET_META);
    const tables = { ...openTables(db), prunedThrough: () => this.prunedThrough(), setPrunedThrough: (id: number) => this.setPrunedThrough(id) };
    this.applier = new OpApplier(tables, callbackSigner(new Set(signedSources)));
    this.indexer = new SearchIndexer(db);
    // Built once: building a transaction function per write was 6% of the claims benchmark.
    this.savepoint = db.transaction((op: WriteOp) => this.applier.apply(op));
    this.batch = db.transaction((ops: readonly WriteOp[], isolate: boolean) => {
      const outcomes = isolate ? ops.map((op) => this.isolated(op)) : ops.map((op) => this.applier.apply(op));
      this.opsDoneAt = performance.now();
      return outcomes;
    });
  }

  /**
   * Open (WAL, the configured synchronous, checked), migrate, and fsync the -wal once before any
   * work: WAL recovery after a kill publishes the frames it finds without syncing them.
   */
  static open(opts: WriterOptions): StoreWriter {
    const db = openDatabase(opts);
    try {
      migrate(db);
      setSearchIndex(db, opts.searchIndex);
      syncWal(opts.path);
      return new StoreWriter(db, opts.signedSources);
    } catch (err) {
      db.close();
      throw err;
    }
  }

  /**
   * The batch in one transaction; throws (a RelayError for busy/full) when nothing of it was
   * written. `timing` is then the batch's: its writes, and its COMMIT (with the WAL's sync at FULL).
   */
  apply(ops: readonly WriteOp[]): Outcome[] {
    const started = performance.now();
    const outcomes = this.storing(() => {
      try {
        return this.batch.immediate(ops, false);
      } catch (err) {
        if (isStorageFault(err) || isBusy(err)) throw err;
        // An op threw: run the batch again with each op in its own savepoint, so only it fails.
        return this.batch.immediate(ops, true);
      }
    });
    if (outcomes.some((o) => o.ok)) this.lastFailure = null;
    this.timing = { applyMs: this.opsDoneAt - started, commitMs: performance.now() - this.opsDoneAt };
    return outcomes;
  }

  /** Index up to INDEX_CHUNK new messages for search, in a transaction of their own; how many. Throws as `apply` does. */
  indexSome(): number {
    return this.storing(() => this.indexer.indexSome());
  }

  /** Index every message committed so far (a search is about to read the index). */
  indexAll(): void {
    this.storing(() => this.indexer.catchUp());
  }

  /** Run a write; a storage fault is remembered for /healthz, and busy/full become the contract's -32008. */
  private storing<T>(write: () => T): T {
    try {
      return write();
    } catch (err) {
      if (isStorageFault(err)) this.noteFailure(err);
      throw storageError(err);
    }
  }

  private isolated(op: WriteOp): Outcome {
    try {
      return this.savepoint(op);
    } catch (err) {
      // A storage fault (or SQLite having rolled back the whole transaction) fails the batch.
      if (isStorageFault(err) || isBusy(err) || !this.db.inTransaction) throw err;
      return { ok: false, refused: 'error', error: err, changes: [] };
    }
  }

  prunedThrough(): number {
    return Number(this.getMeta.get('pruned_through')?.value ?? 0);
  }

  setPrunedThrough(id: number): void {
    this.setMeta.run('pruned_through', String(id));
  }

  /** True when a write lock can be taken now; waits at most the busy timeout (on this thread). */
  isWritable(): boolean {
    try {
      this.db.exec('BEGIN IMMEDIATE');
      this.db.exec('ROLLBACK');
      return true;
    } catch {
      return false;
    }
  }

  /** False once SQLite rolled an open transaction back by itself (e.g. on SQLITE_FULL). */
  get inTransaction(): boolean {
    return this.db.inTransaction;
  }

  pragma(text: string): unknown {
    return this.db.pragma(text, { simple: true });
  }

  settings(): { synchronous: string; journalMode: string } {
    return { synchronous: SYNC_NAMES[Number(this.pragma('synchronous'))] ?? 'unknown', journalMode: String(this.pragma('journal_mode')) };
  }

  close(): void {
    this.db.close();
  }

  private noteFailure(err: unknown): void {
    const code = (err as { code?: unknown } | null)?.code;
    this.lastFailure = { at: Date.now(), error: typeof code === 'string' ? `${code}: ${(err as Error).message}` : String((err as Error)?.message ?? err) };
  }
}

/** fsync the -wal (and its folder, for a WAL created but never synced before a kill), if there is one. */
function syncWal(path: string): void {
  if (path === ':memory:') return;
  const wal = `${path}-wal`;
  if (!existsSync(wal)) return;
  for (const [p, flags] of [
    [wal, 'r+'],
    [dirname(wal), 'r'],
  ] as const) {
    const fd = openSync(p, flags);
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}

function sqliteCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('SQLITE_') ? code : undefined;
}

/**
 * A failure of the database itself (full, I/O, read-only, corrupt), not a refusal by the relay's own
 * rules. A held lock (BUSY, LOCKED) is left out: /healthz probes for it live, and it passes.
 */
function isStorageFault(err: unknown): boolean {
  const code = sqliteCode(err);
  return code !== undefined && !/^SQLITE_(CONSTRAINT|BUSY|LOCKED)/.test(code);
}

function isBusy(err: unknown): boolean {
  return /^SQLITE_(BUSY|LOCKED)/.test(sqliteCode(err) ?? '');
}

/** Map a database failure to the contract: busy/locked/full are -32008 (nothing written); the rest internal. */
export function storageError(err: unknown): unknown {
  const code = sqliteCode(err);
  if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED' || code === 'SQLITE_BUSY_SNAPSHOT') {
    return new RelayError('storageBusy', 'storage busy: the database is locked by another process; nothing was written, retry');
  }
  if (code === 'SQLITE_FULL') {
    return new RelayError('storageBusy', 'storage full: the disk or database size limit is reached; nothing was written');
  }
  return err;
}
