import type pg from 'pg';
import { StartupError } from '../startup-error.js';
import { describe, redactedUrl } from './connection.js';

/** The advisory lock key a relay node holds while it serves a database ('agent-relay node' as a number). */
const NODE_LOCK = 0x61_72_6e_64;
const RETRY_MS = 1_000;

/**
 * One relay node per database, until nodes share a change feed (issue 18's next step: a message
 * sent on one node is pushed only by that node, so a second node would silently miss it). The node
 * holds a session advisory lock on a connection of its own for as long as it runs; a second node
 * is refused at start-up with a message saying so. If the connection breaks (PostgreSQL
 * restarted), the lock is taken again as soon as it is back.
 */
export class SoleNode {
  private client: pg.PoolClient | null = null;
  private stopped = false;
  private timer: NodeJS.Timeout | null = null;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly url: string,
    private readonly onLost: (why: string) => void,
  ) {}

  static async take(pool: pg.Pool, url: string, onLost: (why: string) => void): Promise<SoleNode> {
    const node = new SoleNode(pool, url, onLost);
    const held = await node.lock();
    if (!held)
      throw new StartupError(`PostgreSQL store ${redactedUrl(url)}: another relay node is serving this database (one node per database for now: several nodes need the change feed, not built yet)`);
    return node;
  }

  async release(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    const client = this.client;
    this.client = null;
    if (client) {
      await client.query('SELECT pg_advisory_unlock($1)', [NODE_LOCK]).catch(() => undefined);
      client.release();
    }
  }

  /** True when this node holds the lock now. */
  private async lock(): Promise<boolean> {
    const client = await this.pool.connect();
    const held = (await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [NODE_LOCK])).rows[0]!.ok;
    if (!held) {
      client.release();
      return false;
    }
    client.on('error', (err) => this.lost(client, err));
    this.client = client;
    return true;
  }

  private lost(client: pg.PoolClient, err: Error): void {
    if (this.client !== client) return;
    this.client = null;
    client.release(err);
    this.onLost(`the connection holding this node's lock broke (${describe(err)}); taking it again`);
    this.retry();
  }

  private retry(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.lock().then(
        (held) => {
          if (!held) this.onLost(`PostgreSQL store ${redactedUrl(this.url)}: another relay node took this database while the connection was down`);
          else if (this.stopped) void this.release();
        },
        () => this.retry(),
      );
    }, RETRY_MS);
    this.timer.unref();
  }
}
