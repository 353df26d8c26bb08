import { closeSync, fdatasyncSync, openSync, rmSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { openDatabase } from '../../broker/store/db.js';
import { encodeRecipients } from '../../broker/store/deliveries.js';
import { migrate } from '../../broker/store/migrate.js';
import { nowMs } from '../lib/clock.js';
import { newHist, recordMs, summarize, type Latency } from '../lib/hist.js';
import { makeBody } from '../lib/payload.js';
import { serveWorker } from '../lib/proc.js';
import { tempDbPath } from '../lib/relay-proc.js';

/**
 * The disk's ceiling: raw better-sqlite3 commits of the rows the relay writes for a message (the
 * message row with its recipients, its thread root and, with `pushed`, the push span of each
 * recipient extended once per commit), on the relay's own schema and PRAGMAs, with nothing else
 * in the process.
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
  INSERT INTO messages (from_id, to_target, channel, subject, body, reply_to, thread_id, claimable, task_id, created_at, meta, recipients)
  VALUES (?, ?, NULL, NULL, ?, NULL, 0, 0, NULL, ?, '{}', ?) RETURNING id`;
const SET_THREAD = `UPDATE messages SET thread_id = id WHERE id = ?`;
const INSERT_SPAN = `INSERT INTO delivery_spans (agent_id, state, first_id, last_id, at) VALUES (?, 'pushed', 1, 0, ?) RETURNING id`;
const EXTEND_SPAN = `UPDATE delivery_spans SET last_id = ? WHERE id = ? AND agent_id = ? AND first_id = 1 AND last_id < ?`;

export function measure(a: SqliteCeilingArgs): SqliteCeiling {
  const path = tempDbPath(`sqlite-${a.sync}-${a.recipients}-${a.msgsPerCommit}`);
  const db = openDatabase({ path, synchronous: a.sync, busyTimeoutMs: 2000 });
  migrate(db);
  const insertMessage = db.prepare(INSERT_MESSAGE);
  const setThread = db.prepare(SET_THREAD);
  const extendSpan = db.prepare(EXTEND_SPAN);
  const agents = Array.from({ length: a.recipients }, (_, i) => `sub-${i}`);
  const recipients = encodeRecipients(agents);
  const insertSpan = db.prepare(INSERT_SPAN);
  const spans = db.transaction(() => agents.map((agent) => (insertSpan.get(agent, Date.now()) as { id: number }).id)).immediate();
  const commit = db.transaction((count: number) => {
    const now = Date.now();
    let last = 0;
    for (let m = 0; m < count; m++) {
      last = (insertMessage.get('ext:bench', 'tag:bench', makeBody('T', now), now, recipients) as { id: number }).id;
      setThread.run(last);
    }
    if (a.pushed)
      agents.forEach((agent, i) => {
        extendSpan.run(last, spans[i], agent, last);
      });
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
  const rows = msgs * 2 + (a.pushed ? commits * a.recipients : 0);
  return { ...a, msgsPerSec: Math.round(msgs / sec), rowsPerSec: Math.round(rows / sec), commitsPerSec: Math.round(commits / sec) };
}

export interface FsyncCeiling {
  syncs: number;
  bytesPerAppend: number;
  syncsPerSec: number;
  latency: Latency;
}

/**
 * The disk's own durability cost: `syncs` appends of `bytesPerAppend` bytes to a small file, each
 * followed by fdatasync (what SQLite calls on Linux for a WAL commit), in a folder beside the relay
 * databases of this run. Latency is the append plus its fdatasync.
 */
export function measureFsync(a: { syncs: number; bytesPerAppend: number }): FsyncCeiling {
  const dir = dirname(tempDbPath('fsync'));
  const fd = openSync(join(dir, 'append.log'), 'a');
  const buf = Buffer.alloc(a.bytesPerAppend, 0x61);
  const hist = newHist();
  const start = nowMs();
  for (let i = 0; i < a.syncs; i++) {
    const t = nowMs();
    writeSync(fd, buf);
    fdatasyncSync(fd);
    recordMs(hist, nowMs() - t);
  }
  const sec = (nowMs() - start) / 1000;
  closeSync(fd);
  rmSync(dir, { recursive: true, force: true });
  return { ...a, syncsPerSec: Math.round(a.syncs / sec), latency: summarize(hist) };
}

if (process.env.BENCH_WORKER) serveWorker({ measure, measureFsync });
