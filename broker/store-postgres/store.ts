import type pg from 'pg';
import type { Outcome, RelayStore, StoreHealth, WriteOp } from '../domain/store-port.js';
import { StartupError } from '../startup-error.js';
import { type ConnectionSettings, DEFAULT_SETTINGS, describe, openPool, type Query, readQuery, redactedUrl } from './connection.js';
import { migrate } from './migrate.js';
import { NodeHeartbeats } from './nodes.js';
import { PgAgentReads, PgLeaseReads, PgSessionReads } from './reads-agents.js';
import { PgDeliveryReads, PgMessageReads } from './reads-messages.js';
import { PgEventReads, PgOutboxReads, PgReceiptReads, PgTaskReads } from './reads-tasks.js';
import { PgSearch } from './search.js';
import { PostgresFeed } from './feed.js';
import { databaseAgrees } from './search-vector.js';
import { SoleNode } from './sole-node.js';
import { PostgresWriter } from './writer.js';

export interface PostgresStoreOptions extends Partial<Omit<ConnectionSettings, 'url'>> {
  /** postgres://user:password@host:port/database */
  url: string;
  /** Connections for reads (and for looking up lost replies). */
  readConnections?: number;
  /** Sources whose task callbacks are signed with their integration's secret (`integration:NAME`); the rest with the relay's. */
  signedSources?: readonly string[];
  /** Told when an idle pooled connection fails (the pool drops it and connects anew), and when the change feed cannot read or listen (it tries again). */
  onConnectionError?: (err: Error) => void;
  /**
   * Serve the database as its only relay node (sole-node.ts): a second node is refused at open.
   * A relay sets it; tests of the store itself open several stores on one database.
   */
  soleNode?: { onLost: (why: string) => void };
}

const PROBE_TIMEOUT_MS = 2_000;

/**
 * The store port on PostgreSQL (README "PostgreSQL (one node)").
 * Writes: one writer connection; each batch is one relay_apply call (writer.ts, 0002_apply.sql),
 * which takes the head row lock, so batches of every node commit one after another and ids are
 * assigned in commit order. Publishing: each batch's changes are logged for the change feed
 * (feed.ts, 0004_feed.sql), which this node reads like every other; a batch is answered once the
 * feed has published it. Reads: a small pool, each read one statement (a snapshot of what was
 * committed when it started). PostgreSQL down or restarting: writes and reads reject with -32008
 * and the pools connect again by themselves once it is back.
 */
export class PostgresStore implements RelayStore {
  readonly messages;
  readonly deliveries;
  readonly tasks;
  readonly events;
  readonly outbox;
  readonly agents;
  readonly receipts;
  readonly leases;
  readonly search;
  readonly sessions;
  readonly health: StoreHealth;
  readonly feed: PostgresFeed;
  private readonly q: Query;
  private closing: Promise<void> | null = null;

  private constructor(
    private readonly writerPool: pg.Pool,
    private readonly readPool: pg.Pool,
    private readonly writer: PostgresWriter,
    private readonly listenPool: pg.Pool,
    feed: PostgresFeed,
    readonly nodes: NodeHeartbeats,
    settings: { synchronous: string; journalMode: string },
    private readonly node: { lock: SoleNode; pool: pg.Pool } | null,
  ) {
    this.feed = feed;
    const q = (this.q = readQuery(readPool));
    this.messages = new PgMessageReads(q);
    this.deliveries = new PgDeliveryReads(q);
    this.tasks = new PgTaskReads(q);
    this.events = new PgEventReads(q);
    this.outbox = new PgOutboxReads(q);
    this.agents = new PgAgentReads(q);
    this.receipts = new PgReceiptReads(q);
    this.leases = new PgLeaseReads(q);
    this.search = new PgSearch(q);
    this.sessions = new PgSessionReads(q);
    this.health = {
      get lastFailure() {
        return writer.lastFailure;
      },
      isWritable: () => this.isWritable(),
      settings: () => settings,
    };
  }

  /** Connect, migrate (one node at a time), check the durability setting. Refusals name the server and why. */
  static async open(opts: PostgresStoreOptions): Promise<PostgresStore> {
    const settings: ConnectionSettings = { ...DEFAULT_SETTINGS, ...definedOnly(opts), url: opts.url };
    const onError = opts.onConnectionError ?? (() => {});
    const writerPool = openPool(settings, 'writer', 1, onError);
    const readPool = openPool(settings, 'reader', opts.readConnections ?? 4, onError);
    // The LISTEN connection of the change feed: held for as long as the store is open.
    const listenPool = openPool(settings, 'feed', 1, onError);
    try {
      const client = await writerPool.connect().catch((err: unknown) => {
        throw new StartupError(`cannot open PostgreSQL store ${redactedUrl(opts.url)}: ${describe(err)}`);
      });
      let reported: { synchronous: string; journalMode: string };
      try {
        await migrate(client);
        const sync = (await client.query<{ s: string }>("SELECT current_setting('synchronous_commit') AS s")).rows[0]!.s;
        const version = (await client.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]!.v;
        if (sync !== 'on') throw new StartupError(`PostgreSQL store ${redactedUrl(opts.url)}: synchronous_commit is ${sync}, expected on`);
        reported = { synchronous: `synchronous_commit=${sync}`, journalMode: `postgresql ${version} (WAL)` };
      } finally {
        client.release();
      }
      const vectors = await databaseAgrees(readQuery(readPool));
      // Taken before anything else reads the store: what commits from here on, the feed publishes.
      const feed = await PostgresFeed.open(listenPool, readQuery(readPool), (err) => onError(err instanceof Error ? err : new Error(String(err))));
      const nodes = new NodeHeartbeats(readQuery(readPool), (err) => onError(err instanceof Error ? err : new Error(String(err))));
      await nodes.start();
      let node: { lock: SoleNode; pool: pg.Pool } | null = null;
      if (opts.soleNode) {
        const pool = openPool(settings, 'node lock', 1, onError);
        const lock = await SoleNode.take(pool, opts.url, opts.soleNode.onLost).catch(async (err: unknown) => {
          await pool.end();
          throw err;
        });
        node = { lock, pool };
      }
      return new PostgresStore(writerPool, readPool, new PostgresWriter(writerPool, readPool, opts.signedSources ?? [], vectors), listenPool, feed, nodes, reported, node);
    } catch (err) {
      await Promise.allSettled([writerPool.end(), readPool.end(), listenPool.end()]);
      throw err;
    }
  }

  /** Answered once committed and published by this node's feed (the commit queue publishes nothing itself). */
  async apply(ops: readonly WriteOp[]): Promise<Outcome[]> {
    const batch = await this.writer.apply(ops);
    if (batch.position !== null) await this.feed.passed(batch.position);
    return batch.outcomes;
  }

  /** Messages with ids up to this were pruned: a cursor below it cannot be resumed. */
  async prunedThrough(): Promise<number> {
    return (await this.q<{ n: number }>('SELECT pruned_through AS n FROM relay_head'))[0]!.n;
  }

  /** Whether a write could be taken now: a primary, not read-only, answering within the probe's bound. */
  async isWritable(): Promise<boolean> {
    const probe = this.q<{ w: boolean }>(`SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off' AS w`).then(
      (rows) => rows[0]?.w === true,
      () => false,
    );
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), PROBE_TIMEOUT_MS);
    });
    try {
      return await Promise.race([probe, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Finish the batch in hand, then end the pools. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.nodes.stop();
      await this.writer.close();
      await this.feed.close();
      if (this.node) {
        await this.node.lock.release();
        await this.node.pool.end();
      }
      await Promise.allSettled([this.writerPool.end(), this.readPool.end(), this.listenPool.end()]);
    })();
    return this.closing;
  }
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
