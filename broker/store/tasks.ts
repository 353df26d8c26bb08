import type { Task, TaskStatus } from '../../protocol/index.js';
import type { NewTask, TaskFilter } from '../domain/store-port.js';
import type { Db } from './db.js';
import { parseObject, toJson } from './json.js';

interface TaskRow {
  id: number;
  title: string;
  body: string | null;
  target: string;
  channel: string | null;
  status: string;
  progress: number;
  claimed_by: string | null;
  claimed_at: number | null;
  attempts: number;
  dedupe_key: string | null;
  source: string;
  occurrences: number;
  message_id: number | null;
  callback_url: string | null;
  created_at: number;
  updated_at: number;
  closed_at: number | null;
  meta: string;
}

const TERMINAL = `('done', 'failed', 'canceled')`;
const INSERT = `
  INSERT INTO tasks (title, body, target, channel, status, dedupe_key, source, callback_url, created_at, updated_at, meta)
  VALUES (@title, @body, @target, @channel, 'open', @dedupe_key, @source, @callback_url, @created_at, @created_at, @meta)
  RETURNING *`;
const GET = `SELECT * FROM tasks WHERE id = ?`;
const FIND_LIVE_BY_DEDUPE = `SELECT * FROM tasks WHERE source = ? AND dedupe_key = ? AND status NOT IN ${TERMINAL}`;
const BUMP_OCCURRENCES = `UPDATE tasks SET occurrences = occurrences + 1, updated_at = ? WHERE id = ? RETURNING *`;
const SET_MESSAGE = `UPDATE tasks SET message_id = ? WHERE id = ? RETURNING *`;
// The claim is one conditional write: of concurrent claimers exactly one changes a row.
const CLAIM = `
  UPDATE tasks SET status = 'claimed', claimed_by = @agent, claimed_at = @now, attempts = attempts + 1, updated_at = @now
  WHERE id = @id AND status = 'open' AND claimed_by IS NULL
  RETURNING *`;
const SET_STATE = `
  UPDATE tasks SET status = @status, progress = @progress, updated_at = @now,
    closed_at = CASE WHEN @status IN ${TERMINAL} THEN @now ELSE closed_at END
  WHERE id = @id RETURNING *`;
const RELEASE = `
  UPDATE tasks SET status = 'open', claimed_by = NULL, claimed_at = NULL, updated_at = ?
  WHERE id = ? RETURNING *`;
const LIVE_CLAIMED_BY = `SELECT * FROM tasks WHERE claimed_by = ? AND status NOT IN ${TERMINAL} ORDER BY id`;
const LIST = `
  SELECT * FROM tasks
  WHERE id > @since AND (@status IS NULL OR status = @status) AND (@target IS NULL OR target = @target)
    AND (@channel IS NULL OR channel = @channel) AND (@claimed_by IS NULL OR claimed_by = @claimed_by)
  ORDER BY id LIMIT @limit`;
const COUNT_BY_STATUS = `SELECT status, COUNT(*) AS n FROM tasks GROUP BY status`;
const PRUNE_CLOSED = `DELETE FROM tasks WHERE status IN ${TERMINAL} AND closed_at < ?`;

export function taskFromRow(r: TaskRow): Task {
  return {
    id: r.id,
    title: r.title,
    body: r.body,
    target: r.target,
    channel: r.channel,
    status: r.status as TaskStatus,
    progress: r.progress,
    claimedBy: r.claimed_by,
    claimedAt: r.claimed_at,
    dedupeKey: r.dedupe_key,
    source: r.source,
    occurrences: r.occurrences,
    messageId: r.message_id,
    callbackUrl: r.callback_url,
    attempts: r.attempts,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    closedAt: r.closed_at,
    meta: parseObject(r.meta),
  };
}

export class TaskTable {
  private readonly s;

  constructor(db: Db) {
    this.s = {
      insert: db.prepare<[Record<string, unknown>], TaskRow>(INSERT),
      get: db.prepare<[number], TaskRow>(GET),
      findLive: db.prepare<[string, string], TaskRow>(FIND_LIVE_BY_DEDUPE),
      bump: db.prepare<[number, number], TaskRow>(BUMP_OCCURRENCES),
      setMessage: db.prepare<[number, number], TaskRow>(SET_MESSAGE),
      claim: db.prepare<[Record<string, unknown>], TaskRow>(CLAIM),
      setState: db.prepare<[Record<string, unknown>], TaskRow>(SET_STATE),
      release: db.prepare<[number, number], TaskRow>(RELEASE),
      liveClaimedBy: db.prepare<[string], TaskRow>(LIVE_CLAIMED_BY),
      list: db.prepare<[Record<string, unknown>], TaskRow>(LIST),
      countByStatus: db.prepare<[], { status: string; n: number }>(COUNT_BY_STATUS),
      pruneClosed: db.prepare(PRUNE_CLOSED),
    };
  }

  insert(t: NewTask): Task {
    return taskFromRow(
      this.s.insert.get({
        title: t.title,
        body: t.body,
        target: t.target,
        channel: t.channel,
        dedupe_key: t.dedupeKey,
        source: t.source,
        callback_url: t.callbackUrl,
        created_at: t.createdAt,
        meta: toJson(t.meta),
      })!,
    );
  }

  get(id: number): Task | undefined {
    const row = this.s.get.get(id);
    return row ? taskFromRow(row) : undefined;
  }

  /** The non-terminal task of `source` with `dedupeKey`, if any. */
  findLive(source: string, dedupeKey: string): Task | undefined {
    const row = this.s.findLive.get(source, dedupeKey);
    return row ? taskFromRow(row) : undefined;
  }

  bumpOccurrences(id: number, now: number): Task {
    return taskFromRow(this.s.bump.get(now, id)!);
  }

  setMessage(id: number, messageId: number): Task {
    return taskFromRow(this.s.setMessage.get(messageId, id)!);
  }

  /** Claim an open task; undefined when it was not open (someone else holds it, or it is closed). */
  claim(id: number, agentId: string, now: number): Task | undefined {
    const row = this.s.claim.get({ id, agent: agentId, now });
    return row ? taskFromRow(row) : undefined;
  }

  setState(id: number, status: TaskStatus, progress: number, now: number): Task {
    return taskFromRow(this.s.setState.get({ id, status, progress, now })!);
  }

  release(id: number, now: number): Task {
    return taskFromRow(this.s.release.get(now, id)!);
  }

  liveClaimedBy(agentId: string): Task[] {
    return this.s.liveClaimedBy.all(agentId).map(taskFromRow);
  }

  list(f: TaskFilter): Task[] {
    return this.s.list.all({ since: f.since, status: f.status, target: f.target, channel: f.channel, claimed_by: f.claimedBy, limit: f.limit }).map(taskFromRow);
  }

  countByStatus(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const r of this.s.countByStatus.all()) out[r.status] = r.n;
    return out;
  }

  pruneClosedBefore(cutoff: number): number {
    return this.s.pruneClosed.run(cutoff).changes;
  }
}
