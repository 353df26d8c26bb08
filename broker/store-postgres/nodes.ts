import { randomUUID } from 'node:crypto';
import type { NodeDirectory } from '../domain/store-port.js';
import type { Query } from './connection.js';

/** How often a node says it is alive, and reads who else is. */
export const HEARTBEAT_MS = 2_000;
/** Rows of nodes not heard from for this long are deleted (they are long gone). */
const FORGET_MS = 60 * 60_000;

const BEAT = `INSERT INTO relay_nodes (node_id, started_at, heartbeat_at) VALUES ($1, relay_now_ms(), relay_now_ms())
  ON CONFLICT (node_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at`;
const AGES = `SELECT node_id, relay_now_ms() - heartbeat_at AS age FROM relay_nodes`;
const FORGET = `DELETE FROM relay_nodes WHERE heartbeat_at < relay_now_ms() - $1`;

/**
 * The relay nodes sharing the database (relay_nodes, migration 0005_cluster): this node writes its heartbeat every
 * HEARTBEAT_MS and reads everyone's age by the database's clock, which it turns into "last heard"
 * on its own clock, so the nodes' clocks need not agree. Beats go through the read pool, not the
 * commit queue: they are not relay state anything is published from.
 */
export class NodeHeartbeats implements NodeDirectory {
  readonly self = `node-${randomUUID()}`;
  private heard = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  private beats = 0;

  constructor(
    private readonly q: Query,
    private readonly onError: (err: unknown) => void,
  ) {}

  /** The first beat (so this node is known before it serves), then one every HEARTBEAT_MS. */
  async start(): Promise<void> {
    await this.beat();
    this.timer = setInterval(() => void this.beat().catch(this.onError), HEARTBEAT_MS);
    this.timer.unref();
  }

  lastHeard(node: string): number | undefined {
    return this.heard.get(node);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private async beat(): Promise<void> {
    await this.q(BEAT, [this.self]);
    const now = Date.now();
    const rows = await this.q<{ node_id: string; age: number }>(AGES);
    this.heard = new Map(rows.map((r) => [r.node_id, now - r.age]));
    if (++this.beats % 100 === 0) await this.q(FORGET, [FORGET_MS]);
  }
}
