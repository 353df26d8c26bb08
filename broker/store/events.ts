import type { EventKind, RelayEvent } from '../../protocol/index.js';
import type { Db } from './db.js';
import { parseObject, toJson } from './json.js';

interface EventRow {
  id: number;
  at: number;
  kind: string;
  task_id: number | null;
  agent_id: string | null;
  data: string;
}

export type NewEvent = Omit<RelayEvent, 'id'>;

const INSERT = `INSERT INTO events (at, kind, task_id, agent_id, data) VALUES (?, ?, ?, ?, ?) RETURNING id`;
const LIST = `
  SELECT * FROM events
  WHERE id > @since AND (@kind IS NULL OR kind = @kind) AND (@task IS NULL OR task_id = @task)
  ORDER BY id LIMIT @limit`;
const OF_TASK = `SELECT * FROM events WHERE task_id = ? AND id > ? ORDER BY id LIMIT ?`;
const MAX_ID = `SELECT COALESCE(MAX(id), 0) AS id FROM events`;
const PRUNE = `DELETE FROM events WHERE at < ?`;

function fromRow(r: EventRow): RelayEvent {
  return { id: r.id, at: r.at, kind: r.kind as EventKind, taskId: r.task_id, agentId: r.agent_id, data: parseObject(r.data) };
}

export class EventTable {
  private readonly s;

  constructor(db: Db) {
    this.s = {
      insert: db.prepare(INSERT),
      list: db.prepare<[Record<string, unknown>], EventRow>(LIST),
      ofTask: db.prepare<[number, number, number], EventRow>(OF_TASK),
      maxId: db.prepare<[], { id: number }>(MAX_ID),
      prune: db.prepare(PRUNE),
    };
  }

  append(e: NewEvent): RelayEvent {
    const { id } = this.s.insert.get(e.at, e.kind, e.taskId, e.agentId, toJson(e.data)) as { id: number };
    return { ...e, id };
  }

  list(f: { since: number; kind: EventKind | null; taskId: number | null; limit: number }): RelayEvent[] {
    return this.s.list.all({ since: f.since, kind: f.kind, task: f.taskId, limit: f.limit }).map(fromRow);
  }

  /** The task's events after `since`, oldest first, at most `limit`. */
  ofTask(taskId: number, since = 0, limit = Number.MAX_SAFE_INTEGER): RelayEvent[] {
    return this.s.ofTask.all(taskId, since, limit).map(fromRow);
  }

  maxId(): number {
    return this.s.maxId.get()!.id;
  }

  pruneBefore(cutoff: number): number {
    return this.s.prune.run(cutoff).changes;
  }
}
