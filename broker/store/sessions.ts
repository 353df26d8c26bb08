import type { StoredSession } from '../domain/store-port.js';
import type { Db } from './db.js';

interface SessionRow {
  agent_id: string;
  node: string | null;
  epoch: number;
  at: number;
}

const BIND = `
  INSERT INTO agent_sessions (agent_id, node, epoch, at) VALUES (?, ?, 1, ?)
  ON CONFLICT (agent_id) DO UPDATE SET node = excluded.node, epoch = agent_sessions.epoch + 1, at = excluded.at
  RETURNING *`;
const UNBIND = `UPDATE agent_sessions SET node = NULL, at = ? WHERE agent_id = ? AND node = ? AND epoch = ? RETURNING *`;
const ALL = `SELECT * FROM agent_sessions`;

const fromRow = (r: SessionRow): StoredSession => ({ agentId: r.agent_id, node: r.node, epoch: r.epoch, at: r.at });

/** agent_sessions (migration 0008): which node holds each agent's connection, and its epoch. */
export class SessionTable {
  private readonly s;

  constructor(db: Db) {
    this.s = {
      bind: db.prepare<[string, string, number], SessionRow>(BIND),
      unbind: db.prepare<[number, string, string, number], SessionRow>(UNBIND),
      all: db.prepare<[], SessionRow>(ALL),
    };
  }

  /** The agent's connection is on `node` now: the next epoch. */
  bind(agentId: string, node: string, at: number): StoredSession {
    return fromRow(this.s.bind.get(agentId, node, at)!);
  }

  /** Connected nowhere, if its binding is still (node, epoch); undefined when it moved on. */
  unbind(agentId: string, node: string, epoch: number, at: number): StoredSession | undefined {
    const row = this.s.unbind.get(at, agentId, node, epoch);
    return row ? fromRow(row) : undefined;
  }

  all(): StoredSession[] {
    return this.s.all.all().map(fromRow);
  }
}
