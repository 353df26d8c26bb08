import type pg from 'pg';
import { RelayError } from '../../protocol/index.js';
import type { Change, ChangeFeed } from '../domain/store-port.js';
import type { Query } from './connection.js';
import { changeFromRaw } from './outcomes.js';

const READ = 'SELECT position, changes FROM relay_log WHERE position > $1 ORDER BY position LIMIT $2';
const HEAD = 'SELECT coalesce(max(position), 0) AS p FROM relay_log';
const PAGE = 256;
/** Read the log this often even with no notification: a NOTIFY lost with its connection is caught up within it. */
const POLL_MS = 1_000;
const RELISTEN_MS = 1_000;

interface Waiter {
  position: number;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * This node's reader of the change feed (0004_feed.sql): relay_log in position order, from where
 * it stood when the store opened. It reads when a NOTIFY relay_feed arrives on its LISTEN
 * connection, after every (re)LISTEN (what committed while it was not listening) and every
 * POLL_MS (a notification can be lost with its connection). Reads go through the read pool, so a
 * broken LISTEN connection delays the feed by at most POLL_MS and stops nothing.
 *
 * Each row's changes are published before the next row's, and a local batch's apply waits in
 * `passed` for its position: the node answers a write only after it has published it.
 */
export class PostgresFeed implements ChangeFeed {
  private publish: ((changes: readonly Change[]) => void) | null = null;
  private resync: (why: string) => void = () => {};
  private waiters: Waiter[] = [];
  private reading: Promise<void> | null = null;
  private again = false;
  private started = false;
  private closed = false;
  private listener: pg.PoolClient | null = null;
  private poll: NodeJS.Timeout | null = null;
  private relisten: NodeJS.Timeout | null = null;

  private constructor(
    private readonly listenPool: pg.Pool,
    private readonly q: Query,
    /** The newest position published (or, before the first read, the newest when the store opened). */
    private published: number,
    private readonly onError: (err: unknown) => void,
  ) {}

  /** The feed from the log's newest position now: what commits after this is what it publishes. */
  static async open(listenPool: pg.Pool, q: Query, onError: (err: unknown) => void): Promise<PostgresFeed> {
    const [head] = await q<{ p: number }>(HEAD);
    return new PostgresFeed(listenPool, q, head!.p, onError);
  }

  follow(publish: (changes: readonly Change[]) => void, resync: (why: string) => void): void {
    this.publish = publish;
    this.resync = resync;
    this.start();
  }

  through(): number {
    return this.published;
  }

  /** Resolves once this node has published every batch through `position` (one it committed, or another node's). */
  passed(position: number): Promise<void> {
    if (position <= this.published) return Promise.resolve();
    if (this.closed) {
      return this.readAll().then(() => {
        if (position > this.published) throw unpublished();
      });
    }
    this.start();
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({ position, resolve, reject });
      this.wake();
    });
  }

  /** Positions are taken in commit order under relay_head's lock, so the newest visible one covers every earlier commit. */
  async caughtUp(): Promise<void> {
    const [head] = await this.q<{ p: number }>(HEAD);
    await this.passed(head!.p);
  }

  /** Read what is left for the batches still waiting, then stop; a batch the feed could not reach rejects. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.poll) clearInterval(this.poll);
    if (this.relisten) clearTimeout(this.relisten);
    await this.reading;
    if (this.waiters.length > 0) await this.readAll();
    for (const w of this.waiters.splice(0)) w.reject(unpublished());
    const listener = this.listener;
    this.listener = null;
    listener?.release(true);
  }

  private start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    this.poll = setInterval(() => this.wake(), POLL_MS);
    this.poll.unref();
    void this.listen();
  }

  private async listen(): Promise<void> {
    let client: pg.PoolClient | null = null;
    try {
      client = await this.listenPool.connect();
      const own = client;
      own.on('notification', () => this.wake());
      own.on('error', (err) => this.listenerLost(own, err));
      await own.query('LISTEN relay_feed');
      if (this.closed) return own.release(true);
      this.listener = own;
      // Whatever committed before LISTEN took effect came with no notification.
      this.wake();
    } catch (err) {
      client?.release(true);
      this.onError(err);
      this.listenAgain();
    }
  }

  private listenerLost(client: pg.PoolClient, err: Error): void {
    if (this.listener !== client) return;
    this.listener = null;
    client.release(err);
    this.onError(err);
    this.listenAgain();
  }

  private listenAgain(): void {
    if (this.closed) return;
    this.relisten = setTimeout(() => void this.listen(), RELISTEN_MS);
    this.relisten.unref();
  }

  /** Read now, or once more after the read in progress (it may have started before what woke us). */
  private wake(): void {
    if (this.reading) {
      this.again = true;
      return;
    }
    if (this.closed) return;
    this.reading = this.readAll().finally(() => {
      this.reading = null;
      if (this.again) {
        this.again = false;
        this.wake();
      }
    });
  }

  private async readAll(): Promise<void> {
    try {
      for (;;) {
        const rows = await this.q<{ position: number; changes: Record<string, unknown>[] }>(READ, [this.published, PAGE]);
        for (const row of rows) this.take(row.position, row.changes);
        this.settle();
        if (rows.length < PAGE) return;
      }
    } catch (err) {
      // PostgreSQL unreachable: the next notification or poll reads again.
      this.onError(err);
    }
  }

  private take(position: number, changes: Record<string, unknown>[]): void {
    if (position !== this.published + 1) {
      this.resync(`the change feed went from position ${this.published} to ${position}: the rows between were pruned before this node read them`);
    }
    this.published = position;
    if (!this.publish) return;
    try {
      this.publish(changes.map(changeFromRaw));
    } catch (err) {
      this.onError(err);
    }
  }

  private settle(): void {
    if (this.waiters.length === 0) return;
    const still: Waiter[] = [];
    for (const w of this.waiters) {
      if (w.position <= this.published) w.resolve();
      else still.push(w);
    }
    this.waiters = still;
  }
}

function unpublished(): RelayError {
  return new RelayError('storageBusy', 'storage busy: the write committed, but the relay closed before it published it: it is in the store, read it back before retrying');
}
