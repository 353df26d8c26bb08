import type { AgentStatus } from '../../protocol/index.js';
import type { StoredAgent } from '../domain/store-port.js';
import type { Db } from './db.js';
import { parseList, parseObject, toJson } from './json.js';

interface AgentRow {
  id: string;
  label: string;
  tags: string;
  capabilities: string;
  channels: string;
  client: string | null;
  host: string | null;
  cwd: string | null;
  rig: string | null;
  status: string;
  ready: number;
  system: number;
  token_hash: string;
  registered_at: number;
  last_seen_at: number;
  offline_at: number | null;
  meta: string;
  inbox_floor: number;
}

const UPSERT = `
  INSERT INTO agents (id, label, tags, capabilities, channels, client, host, cwd, rig, status, ready, system,
                      token_hash, registered_at, last_seen_at, offline_at, meta, inbox_floor)
  VALUES (@id, @label, @tags, @capabilities, @channels, @client, @host, @cwd, @rig, @status, @ready, @system,
          @token_hash, @registered_at, @last_seen_at, @offline_at, @meta, @inbox_floor)
  ON CONFLICT (id) DO UPDATE SET
    label = excluded.label, tags = excluded.tags, capabilities = excluded.capabilities,
    channels = excluded.channels, client = excluded.client, host = excluded.host, cwd = excluded.cwd,
    rig = excluded.rig, status = excluded.status, ready = excluded.ready, system = excluded.system,
    token_hash = excluded.token_hash, last_seen_at = excluded.last_seen_at, offline_at = excluded.offline_at,
    meta = excluded.meta`;
const SELECT_ALL = `SELECT * FROM agents`;
const SELECT_ONE = `SELECT * FROM agents WHERE id = ?`;
const COUNT = `SELECT COUNT(*) AS n FROM agents`;
const SELECT_META = `SELECT meta FROM agents WHERE id = ?`;
const TOUCH = `UPDATE agents SET last_seen_at = ? WHERE id = ?`;
const DELETE_OFFLINE_BEFORE = `DELETE FROM agents WHERE status = 'offline' AND system = 0 AND offline_at < ? RETURNING id`;

function fromRow(r: AgentRow): StoredAgent {
  return {
    id: r.id,
    label: r.label,
    tags: parseList(r.tags),
    capabilities: parseList(r.capabilities),
    channels: parseList(r.channels),
    client: r.client,
    host: r.host,
    cwd: r.cwd,
    rig: r.rig,
    status: r.status as AgentStatus,
    ready: r.ready === 1,
    system: r.system === 1,
    tokenHash: r.token_hash,
    registeredAt: r.registered_at,
    lastSeenAt: r.last_seen_at,
    offlineAt: r.offline_at,
    meta: parseObject(r.meta),
    inboxFloor: r.inbox_floor,
  };
}

export class AgentTable {
  private readonly upsert;
  private readonly selectAll;
  private readonly selectOne;
  private readonly touch;
  private readonly countAll;
  private readonly selectMeta;
  private readonly deleteOfflineBefore;

  constructor(db: Db) {
    this.upsert = db.prepare(UPSERT);
    this.selectAll = db.prepare<[], AgentRow>(SELECT_ALL);
    this.selectOne = db.prepare<[string], AgentRow>(SELECT_ONE);
    this.touch = db.prepare(TOUCH);
    this.countAll = db.prepare<[], { n: number }>(COUNT);
    this.selectMeta = db.prepare<[string], { meta: string }>(SELECT_META);
    this.deleteOfflineBefore = db.prepare<[number], { id: string }>(DELETE_OFFLINE_BEFORE);
  }

  /** Insert or replace one agent (all fields). */
  save(a: StoredAgent): void {
    this.upsert.run({
      id: a.id,
      label: a.label,
      tags: toJson(a.tags),
      capabilities: toJson(a.capabilities),
      channels: toJson(a.channels),
      client: a.client,
      host: a.host,
      cwd: a.cwd,
      rig: a.rig,
      status: a.status,
      ready: a.ready ? 1 : 0,
      system: a.system ? 1 : 0,
      token_hash: a.tokenHash,
      registered_at: a.registeredAt,
      last_seen_at: a.lastSeenAt,
      offline_at: a.offlineAt,
      meta: toJson(a.meta),
      inbox_floor: a.inboxFloor,
    });
  }

  all(): StoredAgent[] {
    return this.selectAll.all().map(fromRow);
  }

  get(id: string): StoredAgent | undefined {
    const row = this.selectOne.get(id);
    return row ? fromRow(row) : undefined;
  }

  /** One agent's meta (the in-memory cache does not hold it). */
  metaOf(id: string): Record<string, unknown> {
    const row = this.selectMeta.get(id);
    return row ? parseObject(row.meta) : {};
  }

  count(): number {
    return this.countAll.get()!.n;
  }

  touchLastSeen(id: string, at: number): void {
    this.touch.run(at, id);
  }

  /** Remove non-system agents offline since before `cutoff`; returns their ids. */
  pruneOffline(cutoff: number): string[] {
    return this.deleteOfflineBefore.all(cutoff).map((r) => r.id);
  }
}
