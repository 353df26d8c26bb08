// `tsx bench/search.ts [--messages N] [--rounds N] [--batch N]` (after `npm run build`): what full-text search
// costs and gives, on a database of N messages (default 1,000,000) of varied text.
//
// 1. Insert cost of the index, same run: two fresh databases at the current schema, one with the
//    FTS5 index (migrations 0005 and 0009) and one with it dropped (the schema before 0005). Both
//    take the same messages through the relay's own insert (MessageTable.insert, the statement the
//    writer thread runs), in transactions of --batch rows (default 500; the relay's group commits
//    range from 1 to hundreds), the indexed one then indexing them as the writer does since 0009
//    (SearchIndexer, a transaction of its own after the insert's); synchronous=NORMAL, so the
//    figure is the index's work, not fsync), alternating batch by batch between the two so both
//    see the same machine. Reported: messages/s of each and their ratio; then the time migration
//    0005 takes to index the unindexed database (what a relay upgrading that database spends at
//    start-up, before it listens).
// 2. Search latency as a user sees it: the relay as its own process (dist/broker/main.js) on the
//    indexed database, message/search over one WebSocket, one call in flight, for a fixed set of
//    queries (common and rare words, two words, a phrase, a prefix, a channel filter, an agent's
//    inbox), each asked --rounds times. Reported: p50/p99 per query and over all of them; and the
//    round trip of a cheap read from a third client every 20 ms, idle and while the searches run.
import { rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { hashToken } from '../broker/domain/tokens.js';
import { openDatabase, type Db } from '../broker/store/db.js';
import { listMigrations, migrate } from '../broker/store/migrate.js';
import { MessageTable } from '../broker/store/messages.js';
import { INDEXED_THROUGH } from '../broker/store/search-index.js';
import { SearchIndexer } from '../broker/store/search-indexer.js';
import { type Latency, newHist, recordMs, summarize } from './lib/hist.js';
import { runMain } from './lib/proc.js';
import { benchTmp, startRelay, tempDbPath } from './lib/relay-proc.js';
import { RpcWs } from './lib/rpc-ws.js';
import { textTable, type Table } from './lib/table.js';

const AGENTS = 50;
const CHANNELS = ['ci', 'ops', 'review', 'deploy', 'general'];
// Words with a meaning for the queries, spread through the text at known rates.
const RARE = 'postmortem';
const TOPICAL = ['deploy', 'build', 'failed', 'review', 'test', 'flaky', 'rollback', 'merge', 'latency', 'migration', 'incident', 'canary'];

/** A deterministic PRNG (mulberry32), so both databases and every run get the same text. */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A vocabulary of made-up words drawn with a Zipf-like skew, as natural text is. */
function textMaker(seed: number): { sentence: (min: number, max: number) => string; random: () => number } {
  const random = rng(seed);
  const syllables = ['ka', 'lo', 'mi', 're', 'su', 'ta', 'ven', 'dor', 'pli', 'qua', 'zen', 'bar', 'tor', 'el', 'fin', 'gra', 'hop', 'jun'];
  const vocab = Array.from({ length: 20_000 }, (_, i) => {
    let w = '';
    for (let n = 2 + (i % 3), x = i + 7; n > 0; n--, x = Math.floor(x / syllables.length) + i) w += syllables[x % syllables.length];
    return `${w}${i % 10}`;
  });
  // Each topical word is about 1 in 300 words; RARE about 1 in 20,000.
  const word = () => {
    const r = random();
    if (r < 0.00005) return RARE;
    return r < 0.04 ? TOPICAL[Math.floor(random() * TOPICAL.length)]! : vocab[Math.floor(vocab.length * random() ** 3)]!;
  };
  const sentence = (min: number, max: number) => Array.from({ length: min + Math.floor(random() * (max - min + 1)) }, word).join(' ');
  return { sentence, random };
}

function insertAll(dbs: { name: string; db: Db; table: MessageTable; indexer: SearchIndexer | null }[], n: number, batchSize: number): Map<string, number> {
  const text = textMaker(42);
  const ms = new Map(dbs.map((d) => [d.name, 0]));
  const now = Date.now();
  for (let from = 1; from <= n; from += batchSize) {
    const batch = Array.from({ length: Math.min(batchSize, n - from + 1) }, (_, k) => {
      const i = from + k;
      const to = `agent-${i % AGENTS}`;
      return {
        message: {
          from: i % 3 ? `agent-${(i * 7) % AGENTS}` : 'ext:ci',
          to,
          channel: text.random() < 0.6 ? CHANNELS[i % CHANNELS.length]! : null,
          subject: text.random() < 0.3 ? text.sentence(2, 6) : null,
          body: text.sentence(5, 80),
          replyTo: null,
          threadId: null,
          claimable: false,
          taskId: null,
          createdAt: now - (n - i),
          meta: {},
        },
        recipients: [to],
      };
    });
    for (const d of dbs) {
      const t0 = performance.now();
      d.db.transaction(() => {
        for (const b of batch) d.table.insert(b.message, b.recipients);
      })();
      d.indexer?.indexSome(batch.length);
      ms.set(d.name, ms.get(d.name)! + performance.now() - t0);
    }
  }
  return ms;
}

function withoutIndex(db: Db): void {
  db.exec(`DROP TRIGGER messages_fts_delete; DROP TRIGGER messages_fts_update; DROP TABLE messages_fts; DELETE FROM relay_meta WHERE key = '${INDEXED_THROUGH}';`);
}

function seedAgents(db: Db): Array<{ id: string; token: string }> {
  const agents = Array.from({ length: AGENTS }, (_, i) => ({ id: `agent-${i}`, token: `bench-search-token-${i}-${'x'.repeat(16)}` }));
  const ins = db.prepare(`INSERT INTO agents (id, label, status, token_hash, registered_at, last_seen_at) VALUES (?, ?, 'offline', ?, ?, ?)`);
  db.transaction(() => {
    for (const a of agents) ins.run(a.id, a.id, hashToken(a.token), Date.now(), Date.now());
  })();
  return agents;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { messages: { type: 'string' }, rounds: { type: 'string' }, batch: { type: 'string' } }, strict: true });
  const n = Number(values.messages ?? 1_000_000);
  const rounds = Number(values.rounds ?? 50);
  const batch = Number(values.batch ?? 500);
  console.log(`search bench: ${n.toLocaleString('en-US')} messages, ${rounds} rounds per query; load average ${loadavg()[0]!.toFixed(2)}`);

  const dbs = ['with index', 'without index'].map((name) => {
    const db = openDatabase({ path: tempDbPath(`search-${name.replace(' ', '-')}`), synchronous: 'NORMAL', busyTimeoutMs: 5000 });
    migrate(db);
    if (name === 'without index') withoutIndex(db);
    return { name, db, table: new MessageTable(db), indexer: name === 'without index' ? null : new SearchIndexer(db) };
  });
  const indexed = dbs[0]!;
  const agents = seedAgents(indexed.db);
  const ms = insertAll(dbs, n, batch);
  const rate = (name: string) => n / (ms.get(name)! / 1000);
  const sizes = dbs.map((d) => {
    d.db.pragma('wal_checkpoint(TRUNCATE)');
    const pages = d.db.pragma('page_count', { simple: true }) as number;
    const size = pages * (d.db.pragma('page_size', { simple: true }) as number);
    return size;
  });
  const plain = dbs[1]!.db;
  const t0 = performance.now();
  plain.transaction(() => plain.exec(listMigrations().find((m) => m.name.endsWith('_message_search.sql'))!.sql))();
  const migrationMs = performance.now() - t0;
  const path = indexed.db.name;
  for (const d of dbs) d.db.close();
  const insertTable: Table = {
    title: `Insert cost of the search index (${n.toLocaleString('en-US')} messages, ${batch} per transaction, synchronous=NORMAL, same run)`,
    headers: ['schema', 'messages/s', 'database MB'],
    rows: dbs.map((d, i) => [d.name, Math.round(rate(d.name)), sizes[i]! / 1e6]),
    note: [
      `ratio with/without: ${(rate('with index') / rate('without index')).toFixed(2)} of the insert rate (${((rate('without index') / rate('with index') - 1) * 100).toFixed(0)}% more time per insert)`,
      `migration 0005 indexing the ${n.toLocaleString('en-US')} messages of the unindexed database: ${(migrationMs / 1000).toFixed(2)} s`,
    ].join('\n'),
  };
  console.log(`\n${textTable(insertTable)}`);

  const relay = await startRelay({ name: 'search', dbPath: path });
  try {
    const obs = await RpcWs.connect(relay.wsUrl);
    const agent = await RpcWs.connect(relay.wsUrl);
    await agent.call('agent/register', { id: agents[3]!.id, agentToken: agents[3]!.token });
    const queries: Array<{ name: string; rpc: RpcWs; params: Record<string, unknown> }> = [
      { name: 'common word', rpc: obs, params: { query: 'deploy' } },
      { name: 'rare word', rpc: obs, params: { query: RARE } },
      { name: 'two words', rpc: obs, params: { query: 'build failed' } },
      { name: 'phrase', rpc: obs, params: { query: '"flaky test"' } },
      { name: 'prefix', rpc: obs, params: { query: 'migr*' } },
      { name: 'channel filter', rpc: obs, params: { query: 'review', channel: 'ops' } },
      { name: "agent's inbox", rpc: agent, params: { query: 'incident' } },
      { name: 'next page', rpc: obs, params: { query: 'latency' } },
    ];
    // A third client asks a cheap read every 20 ms throughout: what a search costs everyone else
    // (searches run on the store's search thread, not the event loop). First alone, as the baseline.
    const probe = await RpcWs.connect(relay.wsUrl);
    const idleProbe = await probeWhile(probe, () => new Promise((r) => setTimeout(r, 2000)));
    const all = newHist();
    const rows: Table['rows'] = [];
    const busyProbe = await probeWhile(probe, async () => {
      for (const q of queries) {
        const h = newHist();
        let hits = 0;
        for (let r = 0; r < rounds; r++) {
          let params = q.params;
          if (q.name === 'next page') {
            const first = await q.rpc.call('message/search', q.params);
            params = { ...q.params, after: first.nextCursor };
          }
          const t0 = performance.now();
          const res = await q.rpc.call('message/search', params);
          const took = performance.now() - t0;
          recordMs(h, took);
          recordMs(all, took);
          hits = res.hits.length;
        }
        const s = summarize(h);
        rows.push([q.name, JSON.stringify(q.params), hits, s.p50, s.p99]);
      }
    });
    const s = summarize(all);
    rows.push(['all', '', '', s.p50, s.p99]);
    console.log(
      `\n${textTable({
        title: `message/search latency over one WebSocket, ${n.toLocaleString('en-US')} messages (ms; the page is 20 hits)`,
        headers: ['query', 'params', 'hits', 'p50', 'p99'],
        rows,
      })}`,
    );
    console.log(
      `\n${textTable({
        title: 'A cheap read (agent/list, limit 1) every 20 ms from another client, ms',
        headers: ['while', 'reads', 'p50', 'p99', 'max'],
        rows: [
          ['nothing else runs', idleProbe.count, idleProbe.p50, idleProbe.p99, idleProbe.max],
          ['the searches above run', busyProbe.count, busyProbe.p50, busyProbe.p99, busyProbe.max],
        ],
      })}`,
    );
    await obs.close();
    await agent.close();
    await probe.close();
  } finally {
    await relay.stop();
    rmSync(benchTmp(), { recursive: true, force: true });
  }
}

/** Round trips of `agent/list {limit: 1}` on `rpc`, one every 20 ms, while `work` runs. */
async function probeWhile(rpc: RpcWs, work: () => Promise<unknown>): Promise<Latency> {
  const h = newHist();
  let done = false;
  const loop = (async () => {
    while (!done) {
      const t0 = performance.now();
      await rpc.call('agent/list', { limit: 1 });
      recordMs(h, performance.now() - t0);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  await work();
  done = true;
  await loop;
  return summarize(h);
}

runMain(main);
