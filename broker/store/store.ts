import type Database from 'better-sqlite3';
import { RelayError } from '../../protocol/index.js';
import type { Outcome, RelayStore, StoreHealth, WriteOp } from '../domain/store-port.js';
import { AgentTable } from './agents.js';
import { OpApplier } from './apply.js';
import { openDatabase, type Db, type OpenOptions } from './db.js';
import { DeliveryTable } from './deliveries.js';
import { EventTable } from './events.js';
import { MessageTable } from './messages.js';
import { migrate } from './migrate.js';
import { databaseOpenError } from './open-error.js';
import { OutboxTable } from './outbox.js';
import { ReceiptTable } from './receipts.js';
import type { Tables } from './tables.js';
import { TaskTable } from './tasks.js';

const GET_META = `SELECT value FROM relay_meta WHERE key = ?`;
const SET_META = `INSERT INTO relay_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`;
const SYNC_NAMES: Record<number, string> = { 0: 'OFF', 1: 'NORMAL', 2: 'FULL', 3: 'EXTRA' };

export interface StoreOptions extends OpenOptions {
  /** Which secret signs a task's callbacks, by the task's source (default: the relay's). */
  callbackSigner?: (source: string) => string;
}

/**
 * The SQLite store: the store port on one embedded database. A batch of ops is one BEGIN
 * IMMEDIATE transaction; ops check their preconditions before writing, so the batch needs no
 * savepoints. Only when an op throws (a bug, or a constraint its plan missed) is the batch run
 * again with a savepoint per op, so that op alone fails.
 */
export class SqliteStore implements RelayStore, Tables {
  readonly agents: AgentTable;
  readonly messages: MessageTable;
  readonly deliveries: DeliveryTable;
  readonly tasks: TaskTable;
  readonly events: EventTable;
  readonly outbox: OutboxTable;
  readonly receipts: ReceiptTable;
  readonly health: StoreHealth;
  private readonly applier: OpApplier;
  private readonly batch: Database.Transaction<(ops: readonly WriteOp[], isolate: boolean) => Outcome[]>;
  private readonly savepoint: Database.Transaction<(op: WriteOp) => Outcome>;
  private readonly getMeta;
  private readonly setMeta;
  private lastFailure: { at: number; error: string } | null = null;
  private closed = false;

  private constructor(
    private readonly db: Db,
    callbackSigner: (source: string) => string,
  ) {
    this.agents = new AgentTable(db);
    this.messages = new MessageTable(db);
    this.deliveries = new DeliveryTable(db, () => this.messages.maxId());
    this.tasks = new TaskTable(db);
    this.events = new EventTable(db);
    this.outbox = new OutboxTable(db);
    this.receipts = new ReceiptTable(db);
    this.getMeta = db.prepare<[string], { value: string }>(GET_META);
    this.setMeta = db.prepare(SET_META);
    this.applier = new OpApplier(this, callbackSigner);
    // Built once: building a transaction function per write was 6% of the claims benchmark.
    this.savepoint = db.transaction((op: WriteOp) => this.applier.apply(op));
    this.batch = db.transaction((ops: readonly WriteOp[], isolate: boolean) => (isolate ? ops.map((op) => this.isolated(op)) : ops.map((op) => this.applier.apply(op))));
    const store = this;
    this.health = {
      get lastFailure() {
        return store.lastFailure;
      },
      isWritable: () => this.isWritable(),
      settings: () => ({ synchronous: SYNC_NAMES[Number(this.pragma('synchronous'))] ?? 'unknown', journalMode: String(this.pragma('journal_mode')) }),
    };
  }

  /** Open and migrate; a file that cannot be used throws a DatabaseOpenError saying why. */
  static open(opts: StoreOptions): SqliteStore {
    let db: Db | undefined;
    try {
      db = openDatabase(opts);
      migrate(db);
      return new SqliteStore(db, opts.callbackSigner ?? (() => 'relay'));
    } catch (err) {
      db?.close();
      throw databaseOpenError(opts.path, err) ?? err;
    }
  }

  apply(ops: readonly WriteOp[]): Promise<Outcome[]> {
    try {
      return Promise.resolve(this.applySync(ops));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** The batch in one transaction; throws a RelayError when nothing of it was written. */
  private applySync(ops: readonly WriteOp[]): Outcome[] {
    if (this.closed) throw new RelayError('storageBusy', 'relay is shutting down: nothing was written');
    let outcomes: Outcome[];
    try {
      try {
        outcomes = this.batch.immediate(ops, false);
      } catch (err) {
        if (isStorageFault(err) || isBusy(err)) throw err;
        // An op threw: run the batch again with each op in its own savepoint, so only it fails.
        outcomes = this.batch.immediate(ops, true);
      }
    } catch (err) {
      if (isStorageFault(err)) this.noteFailure(err);
      throw storageError(err);
    }
    const wrote = outcomes.some((o) => o.ok);
    if (wrote) this.lastFailure = null;
    for (const o of outcomes) for (const c of o.changes) if (c.kind === 'agentRemoved') this.messages.forgetInbox(c.id);
    return outcomes;
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

  /** Messages with ids up to this were pruned: a cursor below it cannot be resumed. */
  prunedThrough(): number {
    return Number(this.getMeta.get('pruned_through')?.value ?? 0);
  }

  setPrunedThrough(id: number): void {
    this.setMeta.run('pruned_through', String(id));
  }

  /** True when a write lock can be taken now (health check); never waits past the busy timeout. */
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

  pragma(name: string): unknown {
    return this.db.pragma(name, { simple: true });
  }

  integrityCheck(): string {
    return String(this.db.pragma('integrity_check', { simple: true }));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }

  private noteFailure(err: unknown): void {
    const code = (err as { code?: unknown } | null)?.code;
    this.lastFailure = { at: Date.now(), error: typeof code === 'string' ? `${code}: ${(err as Error).message}` : String((err as Error)?.message ?? err) };
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
