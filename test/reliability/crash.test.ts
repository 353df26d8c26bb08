import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { spawnRelay, type RelayProcess } from '../helpers/relay-process.js';
import { ftsCheckPasses } from '../helpers/search-index.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';
import { figure, LONG, seededRandom, seedFromEnv, sleep, uniqueDir } from './support.js';
import { sqliteHistoryRows } from './history.js';
import { Workload } from './workload.js';

/**
 * Crash: WebSocket publishers, a webhook poster and claimers run against a real relay process
 * that is SIGKILLed at random moments and restarted on the same database (on a fresh port behind
 * a fixed in-test proxy, so no TIME_WAIT wait). Clients reconnect and carry on. After every
 * restart: integrity_check ok, synchronous=FULL, and nothing acknowledged before the kill is
 * missing. At the end the whole history is checked like a queue history (see history.ts).
 *
 * CI: 20 kills and at least 5,000 acknowledged sends. RELAY_LONG_TESTS=1: 100 kills, 25,000.
 */

const KILLS = LONG ? 100 : 20;
const MIN_ACKED = LONG ? 25_000 : 5_000;
t.setTimeout(LONG ? 3 * 3600_000 : 600_000);

/**
 * The full-text index follows the commits in passes of its own (broker/store/search-indexer.ts), so
 * kills land between a send's commit and its indexing, and inside passes. A search has the relay
 * index everything committed; then FTS5's own check compares the index with the messages table.
 */
async function searchIndexAfterKills(relay: RelayProcess, dbPath: string): Promise<{ messages: number; indexed: number; agrees: boolean }> {
  const res = await fetch(`${relay.url}/rpc`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'message/search', params: { query: 'anything' } }),
  });
  const reply = (await res.json()) as { result?: unknown; error?: unknown };
  if (!reply.result) throw new Error(`message/search failed: ${JSON.stringify(reply.error)}`);
  const db = new Database(dbPath, { timeout: 5000 });
  try {
    const messages = db.prepare('SELECT count(*) FROM messages').pluck().get() as number;
    const indexed = db.prepare('SELECT count(*) FROM messages_fts_docsize').pluck().get() as number;
    return { messages, indexed, agrees: ftsCheckPasses(db, 1) };
  } finally {
    db.close();
  }
}

t.test(`SIGKILL at random moments (${KILLS} kills): nothing acknowledged is lost, claims have one owner, clients continue`, async (t) => {
  const seed = seedFromEnv();
  const random = seededRandom(seed);
  t.comment(`seed ${seed} (replay with RELAY_TEST_SEED=${seed})`);
  const dir = uniqueDir(t);
  const dbPath = join(dir, 'relay.db');
  const secret = `whsec_${randomBytes(24).toString('base64')}`;
  const integrations = join(dir, 'integrations.json');
  writeFileSync(integrations, JSON.stringify({ integrations: [{ name: 'ci', secret, target: 'cap:work' }] }));
  const env = { AGENT_RELAY_INTEGRATIONS: integrations, AGENT_RELAY_SYNC: 'FULL' };

  let relay: RelayProcess = await spawnRelay(t, { dbPath, env });
  const proxy = await startTcpProxy(t, relay.port);
  const load = new Workload(t, {
    url: `http://127.0.0.1:${proxy.port}`,
    integration: 'ci',
    hookSecret: secret,
    publishers: 3,
    claimers: 3,
    window: 6,
    pauseMs: 8,
    hookPauseMs: 15,
    claimableEvery: 10,
  });
  await load.start();
  const h = load.history;

  let kills = 0;
  let integrityOk = 0;
  let fullSync = 0;
  let lostAfterRestart = 0;
  const restartMs: number[] = [];
  let verified = { sends: 0, hooks: 0 };
  const started = Date.now();
  while (kills < KILLS || h.ackedCount < MIN_ACKED) {
    // Let the load run for a random while, then pull the plug.
    await sleep(250 + random() * 1250);
    if (kills >= KILLS) continue;
    // What was acknowledged up to the kill must be there after it.
    const ackedBefore = { sends: h.sendsAcked.size, hooks: h.hooksAcked.size };
    const exit = await relay.kill9();
    kills++;
    if (exit.signal !== 'SIGKILL') t.fail(`kill ${kills}: the relay exited with ${exit.code}/${exit.signal}, not SIGKILL`);
    const restartAt = Date.now();
    relay = await spawnRelay(t, { dbPath, env });
    proxy.retarget(relay.port);
    restartMs.push(Date.now() - restartAt);

    const db = new Database(dbPath, { readonly: true });
    const integrity = db.pragma('integrity_check', { simple: true });
    db.close();
    if (integrity === 'ok') integrityOk++;
    else t.fail(`integrity_check after restart ${kills}: ${String(integrity)}`);
    const health = (await (await fetch(`${relay.url}/healthz`)).json()) as { storage: { synchronous: string } };
    if (health.storage.synchronous === 'FULL') fullSync++;
    const { lost, checked } = h.lostSince(dbPath, verified);
    // Only what was acknowledged before this kill is held against this restart.
    verified = { sends: Math.min(checked.sends, ackedBefore.sends), hooks: Math.min(checked.hooks, ackedBefore.hooks) };
    lostAfterRestart += lost;
    if (lost > 0) t.fail(`restart ${kills}: ${lost} acknowledged writes missing`);
  }
  const loadMs = Date.now() - started;
  await load.stop();

  // Drain: every receiver gets everything the database holds for it.
  for (let i = 0; i < 120 && h.missing(sqliteHistoryRows(dbPath, load.receivers)) > 0; i++) await sleep(500);

  const f = h.check(sqliteHistoryRows(dbPath, load.receivers), { publishers: load.isPublisher, hookSource: 'ci' });
  const search = await searchIndexAfterKills(relay, dbPath);
  t.equal(kills, KILLS, `${KILLS} SIGKILLs`);
  t.ok(f.acked_sends + f.acked_hooks >= MIN_ACKED, `at least ${MIN_ACKED} acknowledged sends (${f.acked_sends} messages + ${f.acked_hooks} webhooks)`);
  t.equal(integrityOk, kills, 'integrity_check ok after every restart');
  t.equal(fullSync, kills, 'synchronous=FULL after every restart');
  t.equal(lostAfterRestart, 0, 'nothing acknowledged before a kill was missing after the restart');
  t.equal(f.integrity, 'ok', 'integrity_check ok at the end');
  t.equal(f.lost, 0, 'lost acknowledged messages, webhooks, claims and completions: 0');
  t.equal(f.wrong_owner, 0, 'acknowledged claims with a different owner: 0');
  t.equal(f.second_owner, 0, 'acknowledged claims with a second owner: 0');
  t.equal(f.unexpected, 0, 'unexpected messages (in the database or handed to an application): 0');
  t.equal(f.duplicate_writes, 0, 'no send or webhook delivery was written twice');
  t.equal(f.app_duplicates, 0, 'duplicates to the application (client library): 0');
  t.equal(f.app_out_of_order, 0, 'the application saw ids in increasing order');
  t.equal(f.app_missing, 0, 'every committed message reached its receiver (at least once, by cursor resume)');
  t.same([...h.sendsRefused], [], 'no send was refused (only cut off)');
  t.same([...h.hooksRefused], [], 'no webhook delivery was refused');
  t.same([...h.claimsRefused], [], 'no claim or completion was refused other than by a conflict');
  t.same(
    { indexed: search.indexed, agrees: search.agrees },
    { indexed: search.messages, agrees: true },
    'a search then finds every stored message: the full-text index, killed mid-pass too, agrees with the messages',
  );
  t.ok(f.acked_claims > 0 && f.acked_dones > 0, `claims (${f.acked_claims}) and completions (${f.acked_dones}) were acknowledged`);
  const reconnects = [...load.reconnects.values()].reduce((a, b) => a + b, 0);
  t.ok(reconnects >= kills, `clients reconnected and continued (${reconnects} reconnects)`);

  figure(t, 'crash', {
    seed,
    kills,
    restarts: kills,
    integrity_ok: `${integrityOk}/${kills}`,
    full_sync: `${fullSync}/${kills}`,
    acked_sends: f.acked_sends,
    acked_webhooks: f.acked_hooks,
    acked_claims: f.acked_claims,
    acked_dones: f.acked_dones,
    indeterminate: f.indeterminate,
    webhook_retries: h.hookRetries,
    webhook_duplicate_answers: h.hookDuplicateAnswers,
    claim_conflicts: h.claimConflicts,
    lost: f.lost + lostAfterRestart,
    wrong_owner: f.wrong_owner,
    second_owner: f.second_owner,
    unexpected: f.unexpected,
    duplicate_writes: f.duplicate_writes,
    app_delivered: f.app_delivered,
    app_duplicates: f.app_duplicates,
    app_missing: f.app_missing,
    reconnects,
    restart_ms_median: restartMs.sort((a, b) => a - b)[Math.floor(restartMs.length / 2)] ?? 0,
    load_s: Math.round(loadMs / 1000),
  });
  t.equal(await relay.stop('SIGTERM'), 0, 'the last relay stops cleanly');
});
