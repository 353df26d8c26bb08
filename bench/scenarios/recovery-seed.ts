import { openDatabase } from '../../broker/store/db.js';
import { encodeRecipients } from '../../broker/store/deliveries.js';
import { migrate } from '../../broker/store/migrate.js';
import { SearchIndexer } from '../../broker/store/search-indexer.js';
import { hashToken } from '../../broker/domain/tokens.js';
import { makeBody } from '../lib/payload.js';
import { serveWorker } from '../lib/proc.js';

/**
 * Write a relay database as a long-running relay would have left it: `messages` messages (all but
 * the last `missed` to one agent each, the last `missed` broadcast to every agent), `tasks` tasks
 * with their events (70% done, 30% open), `agents` agents with known tokens, all resumable from
 * cursor = messages - missed, and every message in the search index.
 */
export function seed(a: { path: string; messages: number; tasks: number; agents: number; missed: number }): { since: number; agents: Array<{ id: string; token: string; since: number }>; ms: number } {
  const t0 = performance.now();
  const db = openDatabase({ path: a.path, synchronous: 'NORMAL', busyTimeoutMs: 2000 });
  migrate(db);
  const now = Date.now();
  const agents = Array.from({ length: a.agents }, (_, i) => ({ id: `rec-${i}`, token: `bench-token-${i}-${'x'.repeat(16)}` }));
  const insAgent = db.prepare(`INSERT INTO agents (id, label, tags, capabilities, channels, status, ready, system, token_hash, registered_at, last_seen_at, meta)
    VALUES (?, ?, '["rec"]', '[]', '[]', 'online', 1, 0, ?, ?, ?, '{}')`);
  const insMsg = db.prepare(`INSERT INTO messages (id, from_id, to_target, channel, subject, body, reply_to, thread_id, claimable, task_id, created_at, meta, recipients)
    VALUES (?, 'ext:seed', ?, NULL, NULL, ?, NULL, ?, 0, NULL, ?, '{}', ?)`);
  // Everything up to the resume cursor was pushed and read: one span of each per agent.
  const insSpan = db.prepare(`INSERT INTO delivery_spans (agent_id, state, first_id, last_id, at) VALUES (?, ?, 1, ?, ?)`);
  const insTask = db.prepare(`INSERT INTO tasks (id, title, body, target, channel, status, progress, dedupe_key, source, created_at, updated_at, closed_at, meta)
    VALUES (?, ?, NULL, 'cap:nobody', NULL, ?, ?, NULL, 'ext:seed', ?, ?, ?, '{}')`);
  const insEvent = db.prepare(`INSERT INTO events (at, kind, task_id, agent_id, data) VALUES (?, ?, ?, NULL, '{}')`);
  const since = a.messages - a.missed;
  const body = makeBody('W', now);
  const chunk = 50_000;
  db.transaction(() => {
    for (const ag of agents) insAgent.run(ag.id, ag.id, hashToken(ag.token), now, now);
    for (const ag of agents) for (const state of ['pushed', 'read']) insSpan.run(ag.id, state, since, now);
  }).immediate();
  const everyone = encodeRecipients(agents.map((ag) => ag.id));
  for (let from = 1; from <= a.messages; from += chunk) {
    db.transaction(() => {
      for (let id = from; id < from + chunk && id <= a.messages; id++) {
        const at = now - (a.messages - id);
        if (id <= since) {
          const to = agents[id % agents.length]!.id;
          insMsg.run(id, to, body, id, at, encodeRecipients([to]));
        } else {
          insMsg.run(id, 'tag:rec', body, id, at, everyone);
        }
      }
    }).immediate();
  }
  for (let from = 1; from <= a.tasks; from += chunk) {
    db.transaction(() => {
      for (let id = from; id < from + chunk && id <= a.tasks; id++) {
        const done = id % 10 < 7;
        insTask.run(id, `seeded task ${id}`, done ? 'done' : 'open', done ? 100 : 0, now, now, done ? now : null);
        insEvent.run(now, 'task.created', id);
        if (done) insEvent.run(now, 'task.closed', id);
      }
    }).immediate();
  }
  // A running relay indexes its messages for search as they come (migration 0009): so does the seed.
  new SearchIndexer(db).catchUp(chunk);
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  return { since, agents: agents.map((ag) => ({ ...ag, since })), ms: performance.now() - t0 };
}

if (process.env.BENCH_WORKER) serveWorker({ seed });
