import { rmSync } from 'node:fs';
import { openDatabase } from '../../broker/store/db.js';
import { migrate } from '../../broker/store/migrate.js';
import { nowMs } from '../lib/clock.js';
import { makeBody } from '../lib/payload.js';
import { serveWorker } from '../lib/proc.js';
import { tempDbPath } from '../lib/relay-proc.js';

/**
 * The disk's ceiling: raw better-sqlite3 commits of the rows the relay writes for a message (the
 * message row, a queued delivery row per recipient and, with `pushed`, the update to `pushed`),
 * on the relay's own schema and PRAGMAs, with nothing else in the process.
 */
export interface SqliteCeilingArgs {
  sync: 'FULL' | 'NORMAL';
  recipients: number;
  msgsPerCommit: number;
  pushed: boolean;
  durationMs: number;
}

export interface SqliteCeiling extends SqliteCeilingArgs {
  msgsPerSec: number;
  rowsPerSec: number;
  commitsPerSec: number;
}

const INSERT_MESSAGE = `
  INSERT INTO messages (from_id, to_target, channel, subject, body, reply_to, thread_id, claimable, task_id, created_at, meta)
  VALUES (?, ?, NULL, NULL, ?, NULL, 0, 0, NULL, ?, '{}') RETURNING id`;
const SET_THREAD = `UPDATE messages SET thread_id = id WHERE id = ?`;
const INSERT_DELIVERY = `INSERT OR IGNORE INTO deliveries (agent_id, message_id, state, at) VALUES (?, ?, 'queued', ?)`;
const PUSHED = `UPDATE deliveries SET state = 'pushed', at = ? WHERE agent_id = ? AND message_id = ?`;

export function measure(a: SqliteCeilingArgs): SqliteCeiling {
  const path = tempDbPath(`sqlite-${a.sync}-${a.recipients}-${a.msgsPerCommit}`);
  const db = openDatabase({ path, synchronous: a.sync, busyTimeoutMs: 2000 });
  migrate(db);
  const insertMessage = db.prepare(INSERT_MESSAGE);
  const setThread = db.prepare(SET_THREAD);
  const insertDelivery = db.prepare(INSERT_DELIVERY);
  const pushed = db.prepare(PUSHED);
  const agents = Array.from({ length: a.recipients }, (_, i) => `sub-${i}`);
  const commit = db.transaction((count: number) => {
    const now = Date.now();
    for (let m = 0; m < count; m++) {
      const { id } = insertMessage.get('ext:bench', 'tag:bench', makeBody('T', now), now) as { id: number };
      setThread.run(id);
      for (const agent of agents) insertDelivery.run(agent, id, now);
      if (a.pushed) for (const agent of agents) pushed.run(now, agent, id);
    }
  });
  let msgs = 0;
  let commits = 0;
  const start = nowMs();
  while (nowMs() - start < a.durationMs) {
    commit.immediate(a.msgsPerCommit);
    msgs += a.msgsPerCommit;
    commits++;
  }
  const sec = (nowMs() - start) / 1000;
  db.close();
  rmSync(path.replace(/relay\.db$/, ''), { recursive: true, force: true });
  const rowsPerMsg = 2 + a.recipients * (a.pushed ? 2 : 1);
  return { ...a, msgsPerSec: Math.round(msgs / sec), rowsPerSec: Math.round((msgs * rowsPerMsg) / sec), commitsPerSec: Math.round(commits / sec) };
}

if (process.env.BENCH_WORKER) serveWorker({ measure });
