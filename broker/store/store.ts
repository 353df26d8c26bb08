import Database from 'better-sqlite3';
import { Worker } from 'node:worker_threads';
import { RelayError } from '../../protocol/index.js';
import type {
  AgentReads,
  DeliveryReads,
  EventReads,
  LeaseReads,
  MessageReads,
  Outcome,
  OutboxReads,
  ReceiptReads,
  RelayStore,
  SearchReads,
  SessionReads,
  StoreHealth,
  TaskReads,
  WriteOp,
} from '../domain/store-port.js';
import type { Db, OpenOptions } from './db.js';
import type { MessageTable } from './messages.js';
import { databaseOpenError } from './open-error.js';
import { promised } from './promised.js';
import { openTables } from './tables.js';
import { SearchThread } from './search-client.js';
import { workerEntry } from './writer-entry.js';
import { fromWire, outcomeFromWire, type Failure, type Reply, type Request, type Settings, type WriterData } from './writer-protocol.js';
import type { BatchTiming } from './writer.js';

export { storageError } from './writer.js';

const GET_META = `SELECT value FROM relay_meta WHERE key = ?`;

export interface StoreOptions extends OpenOptions {
  /** Sources whose task callbacks are signed with their integration's secret (`integration:NAME`); the rest with the relay's. */
  signedSources?: readonly string[];
  /** Keep the full-text index message/search reads (default true): search-index.ts. */
  searchIndex?: boolean;
  /** How long after a commit its messages wait to be indexed (default 50 ms; a search never waits for it). */
  searchIndexDelayMs?: number;
  /** Told once when the writer thread dies; every write is refused from then on (default: print it). */
  onFatal?: (err: Error) => void;
  /** Told, for every batch applied, how long the writer thread took for its writes and for its COMMIT (metrics). */
  observeBatch?: (timing: BatchTiming) => void;
}

type Waiter = { resolve: (r: Reply) => void; reject: (err: unknown) => void };

/**
 * The SQLite store: the store port on one embedded database, written by a writer thread.
 *
 * Writes: `apply` posts the batch to the writer thread (writer-thread.ts, StoreWriter in
 * writer.ts), which owns the only connection that writes (WAL, the configured synchronous) and
 * answers after COMMIT returned, so the event loop never waits for the commit's fsync, nor for a
 * checkpoint. The commit queue keeps one batch in flight. Reads run at once on this thread's own
 * read-only connection: under WAL a reader sees a commit only once it is published, and with
 * synchronous=FULL SQLite publishes it only after the WAL fsync (bench/DURABILITY.md, "What the
 * relay does").
 */
export class SqliteStore implements RelayStore {
  readonly agents: AgentReads;
  readonly messages: MessageReads;
  readonly deliveries: DeliveryReads;
  readonly tasks: TaskReads;
  readonly events: EventReads;
  readonly outbox: OutboxReads;
  readonly receipts: ReceiptReads;
  readonly leases: LeaseReads;
  readonly sessions: SessionReads;
  readonly search: SearchReads;
  private readonly searchThread: SearchThread;
  /** The read connection's message statements, whose in-memory inbox bounds follow every commit. */
  private readonly messageTable: MessageTable;
  readonly health: StoreHealth;
  private readonly getMeta;
  private readonly waiters = new Map<number, Waiter>();
  private seq = 0;
  private failure: Failure = null;
  private dead: Error | null = null;
  private closing: Promise<void> | null = null;
  private readonly observeBatch: (timing: BatchTiming) => void;

  private constructor(
    private readonly reader: Db,
    private readonly worker: Worker,
    private readonly exited: Promise<void>,
    settings: Settings,
    private readonly onFatal: (err: Error) => void,
    opts: StoreOptions,
  ) {
    this.observeBatch = opts.observeBatch ?? (() => {});
    const thread = new SearchThread({ path: opts.path, busyTimeoutMs: opts.busyTimeoutMs });
    this.searchThread = thread;
    this.search = {
      // The index follows the commits a little behind: the writer catches it up first, so a search
      // finds every message acknowledged before it was asked.
      rank: async (filter) => {
        await this.request((id) => ({ type: 'index', id }));
        return thread.rank(filter);
      },
      hits: (terms, ids) => thread.hits(terms, ids),
    };
    // The read side: every table's statements on the read-only connection.
    const t = openTables(reader);
    this.messageTable = t.messages;
    this.agents = promised(t.agents, ['all', 'get', 'metaOf']);
    this.messages = promised(t.messages, ['get', 'maxId', 'inbox', 'all', 'thread']);
    this.deliveries = promised(t.deliveries, ['forMessage', 'get', 'readThrough', 'latestSpan']);
    this.tasks = promised(t.tasks, ['get', 'list', 'liveClaimedBy', 'countByStatus']);
    this.events = promised(t.events, ['list', 'ofTask', 'maxId']);
    this.outbox = promised(t.outbox, ['due', 'nextDueAt', 'ofTask', 'depthByState']);
    this.receipts = promised(t.receipts, ['seen']);
    this.leases = promised(t.leases, ['get', 'list', 'expired']);
    this.sessions = promised(t.sessions, ['all']);
    this.getMeta = reader.prepare<[string], { value: string }>(GET_META);
    const store = this;
    this.health = {
      get lastFailure() {
        return store.failure;
      },
      isWritable: () => this.isWritable(),
      settings: () => settings,
    };
    worker.on('message', (r: Reply) => this.received(r));
    worker.on('error', (err) => this.die(err));
    void exited.then(() => {
      if (!this.closing) this.die(new Error('the writer thread exited'));
    });
    worker.unref();
  }

  /**
   * Start the writer thread (it opens, migrates and fsyncs the -wal), then open the read
   * connection. A file that cannot be used rejects with a DatabaseOpenError saying why.
   */
  static async open(opts: StoreOptions): Promise<SqliteStore> {
    const data: WriterData = {
      path: opts.path,
      synchronous: opts.synchronous,
      busyTimeoutMs: opts.busyTimeoutMs,
      signedSources: opts.signedSources ?? [],
      searchIndex: opts.searchIndex ?? true,
      ...(opts.searchIndexDelayMs !== undefined ? { searchIndexDelayMs: opts.searchIndexDelayMs } : {}),
    };
    const entry = await workerEntry('writer');
    const worker = new Worker(entry.url, { workerData: data, execArgv: entry.execArgv, name: 'agent-relay store writer' });
    let exitCode = -1;
    const exited = new Promise<void>((resolve) => worker.once('exit', (code) => resolve(void (exitCode = code))));
    const settings = await new Promise<Settings>((resolve, reject) => {
      const onError = (err: unknown) => reject(err);
      worker.once('error', onError);
      worker.once('message', (r: Reply) => {
        worker.off('error', onError);
        if (r.type === 'ready') resolve(r.settings);
        else reject(r.type === 'openFailed' ? fromWire(r.error) : new Error(`writer thread: unexpected first message ${r.type}`));
      });
      void exited.then(() => reject(new Error(`the store's writer thread exited (code ${exitCode}) before it was ready`)));
    }).catch(async (err: unknown) => {
      await worker.terminate();
      throw err;
    });
    let reader: Db;
    try {
      reader = new Database(opts.path, { readonly: true, fileMustExist: true, timeout: opts.busyTimeoutMs });
      reader.pragma(`busy_timeout = ${opts.busyTimeoutMs}`);
      reader.pragma('temp_store = MEMORY');
    } catch (err) {
      worker.postMessage({ type: 'close' } satisfies Request);
      await exited;
      throw databaseOpenError(opts.path, err) ?? err;
    }
    const onFatal = opts.onFatal ?? ((err: Error) => console.error("agent-relay: the store's writer thread died; every write is refused from now on", err));
    return new SqliteStore(reader, worker, exited, settings, onFatal, opts);
  }

  async apply(ops: readonly WriteOp[]): Promise<Outcome[]> {
    const reply = await this.request((id) => ({ type: 'apply', id, ops }));
    if (reply.type !== 'applied') throw new Error(`writer thread: unexpected reply ${reply.type}`);
    this.observeBatch(reply.timing);
    const outcomes = reply.outcomes.map(outcomeFromWire);
    // This connection's in-memory inbox bounds follow the commits the writer made (before anyone is answered).
    for (const o of outcomes) {
      for (const c of o.changes) {
        if (c.kind === 'message') this.messageTable.noteAddressed(c.recipients, c.message.id);
        else if (c.kind === 'agentRemoved') this.messageTable.forgetInbox(c.id);
      }
    }
    return outcomes;
  }

  /** Messages with ids up to this were pruned: a cursor below it cannot be resumed. */
  async prunedThrough(): Promise<number> {
    return Number(this.getMeta.get('pruned_through')?.value ?? 0);
  }

  /** True when a write lock can be taken now (health check): asked of the writer, which waits at most the busy timeout. */
  async isWritable(): Promise<boolean> {
    try {
      const r = await this.request((id) => ({ type: 'probe', id }));
      return r.type === 'value' && r.value === true;
    } catch {
      return false;
    }
  }

  /** False once SQLite rolled the writer's open transaction back by itself (e.g. on SQLITE_FULL). */
  async inTransaction(): Promise<boolean> {
    const r = await this.request((id) => ({ type: 'inTransaction', id }));
    return r.type === 'value' && r.value === true;
  }

  /** Run a PRAGMA on the writer's connection (PRAGMAs are per connection: max_page_count, synchronous...). */
  async pragma(text: string): Promise<unknown> {
    const r = await this.request((id) => ({ type: 'pragma', id, text }));
    return r.type === 'value' ? r.value : undefined;
  }

  /** A PRAGMA on this thread's read connection. */
  readerPragma(text: string): unknown {
    return this.reader.pragma(text, { simple: true });
  }

  integrityCheck(): string {
    return String(this.reader.pragma('integrity_check', { simple: true }));
  }

  /** Refuse new work, let the writer finish what it was given, close its connection, wait for the thread to end. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.searchThread.close();
      if (!this.dead) {
        this.worker.ref();
        this.worker.postMessage({ type: 'close' } satisfies Request);
        await this.exited;
      } else {
        await this.worker.terminate();
      }
      this.reader.close();
    })();
    return this.closing;
  }

  private request(make: (id: number) => Request): Promise<Reply> {
    if (this.closing) return Promise.reject(new RelayError('storageBusy', 'relay is shutting down: nothing was written'));
    if (this.dead) return Promise.reject(new RelayError('storageBusy', `storage failed: the writer thread died (${this.dead.message}); nothing was written, the relay must be restarted`));
    const id = ++this.seq;
    return new Promise<Reply>((resolve, reject) => {
      this.waiters.set(id, { resolve, reject });
      // Keep the process alive while the writer has work of ours (not when idle).
      if (this.waiters.size === 1) this.worker.ref();
      this.worker.postMessage(make(id));
    });
  }

  private received(r: Reply): void {
    if (r.type === 'ready' || r.type === 'openFailed' || r.type === 'closed') return;
    const w = this.waiters.get(r.id);
    if (!w) return;
    this.waiters.delete(r.id);
    if (this.waiters.size === 0 && !this.closing) this.worker.unref();
    if (r.type === 'applied' || r.type === 'failed') this.failure = r.lastFailure;
    if (r.type === 'failed') w.reject(fromWire(r.error));
    else w.resolve(r);
  }

  /** The writer thread failed: what it was given is unknown (nothing was acknowledged), and every later write is refused. */
  private die(err: Error): void {
    if (this.dead) return;
    this.dead = err;
    this.failure = { at: Date.now(), error: `writer thread died: ${err.message}` };
    const waiting = [...this.waiters.values()];
    this.waiters.clear();
    for (const w of waiting) w.reject(new RelayError('storageBusy', 'storage failed: the writer thread died; nothing in this batch was acknowledged'));
    this.onFatal(err);
  }
}
