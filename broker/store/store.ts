import type Database from 'better-sqlite3';
import { AgentTable } from './agents.js';
import { openDatabase, type Db, type OpenOptions } from './db.js';
import { DeliveryTable } from './deliveries.js';
import { EventTable } from './events.js';
import { MessageTable } from './messages.js';
import { migrate } from './migrate.js';
import { databaseOpenError } from './open-error.js';
import { OutboxTable } from './outbox.js';
import { ReceiptTable } from './receipts.js';
import { TaskTable } from './tasks.js';

const GET_META = `SELECT value FROM relay_meta WHERE key = ?`;
const SET_META = `INSERT INTO relay_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`;

/**
 * The SQLite store. The domain calls these verbs and never writes SQL, so another store
 * (PostgreSQL) can stand beside this one. Writes happen only inside `writeTransaction`.
 */
export class SqliteStore {
  readonly agents: AgentTable;
  readonly messages: MessageTable;
  readonly deliveries: DeliveryTable;
  readonly tasks: TaskTable;
  readonly events: EventTable;
  readonly outbox: OutboxTable;
  readonly receipts: ReceiptTable;
  /**
   * One transaction function for every write: called inside an open transaction, better-sqlite3
   * makes it a savepoint. Built once (building one per write was 6% of the claims benchmark).
   */
  private readonly run: Database.Transaction<(fn: () => unknown) => unknown>;
  private readonly getMeta;
  private readonly setMeta;
  private closed = false;

  private constructor(private readonly db: Db) {
    this.agents = new AgentTable(db);
    this.messages = new MessageTable(db);
    this.deliveries = new DeliveryTable(db, () => this.messages.maxId());
    this.tasks = new TaskTable(db);
    this.events = new EventTable(db);
    this.outbox = new OutboxTable(db);
    this.receipts = new ReceiptTable(db);
    this.run = db.transaction((fn: () => unknown) => fn());
    this.getMeta = db.prepare<[string], { value: string }>(GET_META);
    this.setMeta = db.prepare(SET_META);
  }

  /** Open and migrate; a file that cannot be used throws a DatabaseOpenError saying why. */
  static open(opts: OpenOptions): SqliteStore {
    let db: Db | undefined;
    try {
      db = openDatabase(opts);
      migrate(db);
      return new SqliteStore(db);
    } catch (err) {
      db?.close();
      throw databaseOpenError(opts.path, err) ?? err;
    }
  }

  /** Run `fn` in one BEGIN IMMEDIATE transaction; it commits when `fn` returns. */
  writeTransaction<T>(fn: () => T): T {
    return this.run.immediate(fn) as T;
  }

  /**
   * Run `fn` inside the current transaction as a savepoint: if it throws, only its own writes are
   * undone and the surrounding group commit goes on.
   */
  savepoint<T>(fn: () => T): T {
    return this.run(fn) as T;
  }

  /** False once SQLite rolled an open transaction back by itself (e.g. on SQLITE_FULL). */
  get inTransaction(): boolean {
    return this.db.inTransaction;
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
}
