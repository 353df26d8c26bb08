import type { Lease, LeaseEnd, LeaseMode } from '../../protocol/index.js';
import type { Db } from './db.js';

interface LeaseRow {
  id: number;
  agent_id: string;
  mode: string;
  resources: string;
  reason: string | null;
  token: number;
  ttl_ms: number;
  acquired_at: number;
  renewed_at: number;
  expires_at: number;
  released_at: number | null;
  ended_by: string | null;
}

export interface NewLease {
  agentId: string;
  mode: LeaseMode;
  resources: string[];
  reason: string | null;
  ttlMs: number;
  at: number;
}

// One counter for every lease's fencing tokens: it only rises, across renewals and restarts.
const NEXT_TOKEN = `UPDATE relay_meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'lease_token' RETURNING CAST(value AS INTEGER) AS token`;
const INSERT = `
  INSERT INTO leases (agent_id, mode, resources, reason, token, ttl_ms, acquired_at, renewed_at, expires_at)
  VALUES (@agent_id, @mode, @resources, @reason, @token, @ttl_ms, @at, @at, @expires_at)
  RETURNING *`;
const GET = `SELECT * FROM leases WHERE id = ?`;
const RENEW = `UPDATE leases SET token = @token, ttl_ms = @ttl_ms, renewed_at = @at, expires_at = @expires_at WHERE id = @id RETURNING *`;
const END = `UPDATE leases SET released_at = @at, ended_by = @ended_by WHERE id = @id AND released_at IS NULL RETURNING *`;
const IN_FORCE = `SELECT * FROM leases WHERE released_at IS NULL AND expires_at > ? ORDER BY id`;
const EXPIRED = `SELECT * FROM leases WHERE released_at IS NULL AND expires_at <= ? ORDER BY id`;
const HELD_BY = `SELECT * FROM leases WHERE released_at IS NULL AND agent_id = ? ORDER BY id`;
const LIST = `
  SELECT * FROM leases
  WHERE released_at IS NULL AND expires_at > @now AND id > @since AND (@holder IS NULL OR agent_id = @holder)
  ORDER BY id`;
const PRUNE = `DELETE FROM leases WHERE released_at IS NOT NULL AND released_at < ?`;

function fromRow(r: LeaseRow): Lease {
  return {
    id: r.id,
    agentId: r.agent_id,
    mode: r.mode as LeaseMode,
    resources: JSON.parse(r.resources) as string[],
    reason: r.reason,
    token: r.token,
    ttlMs: r.ttl_ms,
    acquiredAt: r.acquired_at,
    renewedAt: r.renewed_at,
    expiresAt: r.expires_at,
    releasedAt: r.released_at,
    endedBy: r.ended_by as LeaseEnd | null,
  };
}

export class LeaseTable {
  private readonly s;

  constructor(db: Db) {
    this.s = {
      nextToken: db.prepare<[], { token: number }>(NEXT_TOKEN),
      insert: db.prepare<[Record<string, unknown>], LeaseRow>(INSERT),
      get: db.prepare<[number], LeaseRow>(GET),
      renew: db.prepare<[Record<string, unknown>], LeaseRow>(RENEW),
      end: db.prepare<[Record<string, unknown>], LeaseRow>(END),
      inForce: db.prepare<[number], LeaseRow>(IN_FORCE),
      expired: db.prepare<[number], LeaseRow>(EXPIRED),
      heldBy: db.prepare<[string], LeaseRow>(HELD_BY),
      list: db.prepare<[Record<string, unknown>], LeaseRow>(LIST),
      prune: db.prepare(PRUNE),
    };
  }

  insert(l: NewLease): Lease {
    const token = this.s.nextToken.get()!.token;
    return fromRow(this.s.insert.get({ agent_id: l.agentId, mode: l.mode, resources: JSON.stringify(l.resources), reason: l.reason, token, ttl_ms: l.ttlMs, at: l.at, expires_at: l.at + l.ttlMs })!);
  }

  get(id: number): Lease | undefined {
    const row = this.s.get.get(id);
    return row ? fromRow(row) : undefined;
  }

  /** A new token and expiry from `at`. */
  renew(id: number, ttlMs: number, at: number): Lease {
    const token = this.s.nextToken.get()!.token;
    return fromRow(this.s.renew.get({ id, token, ttl_ms: ttlMs, at, expires_at: at + ttlMs })!);
  }

  /** End a lease not ended yet; undefined when it had ended already. */
  end(id: number, endedBy: LeaseEnd, at: number): Lease | undefined {
    const row = this.s.end.get({ id, ended_by: endedBy, at });
    return row ? fromRow(row) : undefined;
  }

  /** Leases in force at `now`: not released, TTL not passed. */
  inForce(now: number): Lease[] {
    return this.s.inForce.all(now).map(fromRow);
  }

  /** Leases whose TTL passed by `now` and whose end is not recorded yet. */
  expired(now: number): Lease[] {
    return this.s.expired.all(now).map(fromRow);
  }

  /** The agent's leases not released yet (expired ones included). */
  heldBy(agentId: string): Lease[] {
    return this.s.heldBy.all(agentId).map(fromRow);
  }

  list(f: { now: number; since: number; holder: string | null }): Lease[] {
    return this.s.list.all({ now: f.now, since: f.since, holder: f.holder }).map(fromRow);
  }

  pruneEndedBefore(cutoff: number): number {
    return this.s.prune.run(cutoff).changes;
  }
}
