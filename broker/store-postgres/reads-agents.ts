import type { Lease } from '../../protocol/index.js';
import type { AgentReads, LeaseReads, SessionReads, StoredAgent, StoredSession } from '../domain/store-port.js';
import type { Query } from './connection.js';
import { agentFromRow, leaseFromRow, sessionFromRow } from './rows.js';

// SQLite lists agents in the order they were first stored (rowid); registration time is that order.
const ALL = `SELECT * FROM agents ORDER BY registered_at, id`;
const ONE = `SELECT * FROM agents WHERE id = $1`;
const META = `SELECT meta FROM agents WHERE id = $1`;

export class PgAgentReads implements AgentReads {
  constructor(private readonly q: Query) {}

  async all(): Promise<StoredAgent[]> {
    return (await this.q(ALL)).map(agentFromRow);
  }

  async get(id: string): Promise<StoredAgent | undefined> {
    const [row] = await this.q(ONE, [id]);
    return row ? agentFromRow(row) : undefined;
  }

  /** One agent's meta (the in-memory cache does not hold it). */
  async metaOf(id: string): Promise<Record<string, unknown>> {
    const [row] = await this.q<{ meta: string }>(META, [id]);
    return row ? (JSON.parse(row.meta) as Record<string, unknown>) : {};
  }
}

const LEASE = `SELECT * FROM leases WHERE id = $1`;
const EXPIRED = `SELECT * FROM leases WHERE released_at IS NULL AND expires_at <= $1 ORDER BY id`;
const IN_FORCE = `SELECT * FROM leases WHERE released_at IS NULL AND expires_at > $1 AND id > $2 AND ($3::text IS NULL OR agent_id = $3) ORDER BY id`;

export class PgLeaseReads implements LeaseReads {
  constructor(private readonly q: Query) {}

  async get(id: number): Promise<Lease | undefined> {
    const [row] = await this.q(LEASE, [id]);
    return row ? leaseFromRow(row) : undefined;
  }

  /** Leases in force at `now` with an id above `since`, in id order. */
  async list(f: { now: number; since: number; holder: string | null }): Promise<Lease[]> {
    return (await this.q(IN_FORCE, [f.now, f.since, f.holder])).map(leaseFromRow);
  }

  /** Leases whose TTL passed by `now` and whose end is not recorded yet. */
  async expired(now: number): Promise<Lease[]> {
    return (await this.q(EXPIRED, [now])).map(leaseFromRow);
  }
}

export class PgSessionReads implements SessionReads {
  constructor(private readonly q: Query) {}

  async all(): Promise<StoredSession[]> {
    return (await this.q('SELECT * FROM agent_sessions')).map(sessionFromRow);
  }
}
