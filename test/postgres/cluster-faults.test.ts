import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import t, { type Test } from 'tap';
import { RelayRpcError } from '../../clients/index.js';
import { ERRORS } from '../../protocol/errors.js';
import { startPostgres } from '../helpers/postgres.js';
import { spawnRelay, type RelayProcess } from '../helpers/relay-process.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';
import { waitFor } from '../helpers/wait.js';
import { WsRpc } from '../helpers/ws-client.js';
import type { History } from '../reliability/history.js';
import { figure, percentile, sleep } from '../reliability/support.js';
import { Workload, workloadAgent } from '../reliability/workload.js';
import { postgresHistoryRows } from './history-rows.js';

/*
 * The cluster under faults: three relay processes (AGENT_RELAY_CLUSTER=on) on one PostgreSQL
 * database behind a round-robin TCP proxy, so the workload's agents land on different nodes and
 * talk across them. The crash test's queue workload (publishers, a sink, claimers, webhooks) runs
 * for LOAD_MS with callbacks to a receiver here, a fencing check (a claim released and claimed
 * again elsewhere: the first token must be refused) and one probe agent per node, connected to
 * it directly, whose sends time how long the survivors stall. During the load: one node is
 * SIGKILLed and restarted, one is frozen with SIGSTOP and thawed, and one node's LISTEN
 * connection is cut by the server. Then the crash suite's history checks, against PostgreSQL,
 * and the figures the issue asks for.
 */

const LOAD_MS = 60_000;
const KILL_AT_MS = 12_000;
const RESTART_AFTER_MS = 1_000;
const FREEZE_AT_MS = 27_000;
const FREEZE_MS = 3_000;
const LISTEN_CUT_AT_MS = 42_000;
const TTL_MS = 10_000;
const MIN_ACKED = 20_000;
/** The store's idle_in_transaction_session_timeout (broker/store-postgres/connection.ts). */
const IDLE_IN_TRANSACTION_MS = 2_000;
const PROBE_EVERY_MS = 20;
t.setTimeout(300_000);

const server = await startPostgres(t);

interface Callback {
  webhookId: string;
  taskId: number;
  eventId: number;
}

/** The integration's callback receiver on 127.0.0.1: every POST, in arrival order. */
async function callbackReceiver(t: Test): Promise<{ url: string; received: Callback[] }> {
  const received: Callback[] = [];
  const http = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString()) as { data: { event: { id: number; taskId: number } } };
      received.push({ webhookId: String(req.headers['webhook-id']), taskId: body.data.event.taskId, eventId: body.data.event.id });
      res.end('ok');
    });
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => http.close(() => resolve())));
  return { url: `http://127.0.0.1:${(http.address() as AddressInfo).port}/callbacks`, received };
}

/** Local TCP ports of a process's sockets (Linux /proc): which PostgreSQL backend serves which node. */
function localPorts(pid: number): Set<number> {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  const ports = new Set<number>();
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length > 9 && inodes.has(f[9]!)) ports.add(Number.parseInt(f[1]!.split(':')[1]!, 16));
  }
  return ports;
}

interface ProbeSample {
  node: number;
  startedAt: number;
  ms: number;
}

/**
 * One probe agent per node, connected to it directly: a send every PROBE_EVERY_MS, each timed
 * (a sample only once answered: a send that never returns, on a killed node, is no sample).
 */
function probes(t: Test, h: History, urls: () => string[]) {
  const samples: ProbeSample[] = [];
  let running = true;
  const loop = async (node: number) => {
    let n = 0;
    let rpc: WsRpc | null = null;
    let token: string | undefined;
    while (running) {
      let body: string | null = null;
      try {
        if (!rpc || rpc.closeCode !== null) {
          rpc = await WsRpc.connect(t, urls()[node]!);
          token = (await rpc.call('agent/register', { id: `probe-${node}`, ...(token ? { agentToken: token } : {}) })).agentToken as string;
        }
        body = `probe-${node}:${n++}`;
        h.sendsAttempted.add(body);
        const startedAt = Date.now();
        // To itself: an agent that is surely there, on the same node.
        const r = await rpc.call('message/send', { to: `probe-${node}`, body });
        samples.push({ node, startedAt, ms: Date.now() - startedAt });
        h.noteSendResult(body, `probe-${node}`, { id: r.message.id as number, taskId: null });
      } catch (err) {
        // Its node is down or frozen: try again on whatever the URL points at now.
        if (rpc && rpc.closeCode === null) await rpc.close().catch(() => {});
        rpc = null;
        const code = err && typeof err === 'object' && 'code' in err && typeof err.code === 'number' ? err.code : null;
        if (body !== null) h.noteSendResult(body, `probe-${node}`, code === null ? 'indeterminate' : { code });
      }
      await sleep(PROBE_EVERY_MS);
    }
    // Left connected (closed at teardown): a probe that left would be released during the checks.
  };
  const loops = [0, 1, 2].map((i) => loop(i));
  return {
    samples,
    stop: async () => {
      running = false;
      await Promise.all(loops);
    },
  };
}

/**
 * Fencing across nodes, until stopped: a claimable message to `cap:fence`, claimed by fence-a,
 * released, claimed by fence-b (both through the proxy, so on different nodes mostly); fence-a then
 * finishing with its first token must get -32006. A round that hits a fault part-way is skipped.
 */
function fencing(t: Test, h: History, url: string) {
  const a = workloadAgent(t, url, 'fence-a', { capabilities: ['fence'] });
  const b = workloadAgent(t, url, 'fence-b', { capabilities: ['fence'] });
  const figures = { rounds: 0, staleTried: 0, staleRefused: 0, staleAccepted: 0, skipped: 0 };
  let running = true;
  const loop = (async () => {
    await Promise.all([a.connect(), b.connect()]);
    let n = 0;
    while (running) {
      const body = `fence-a:${n++}`;
      h.sendsAttempted.add(body);
      try {
        const sent = await a.send('cap:fence', body, { claimable: true }).catch((err: unknown) => {
          h.noteSendResult(body, 'cap:fence', err instanceof RelayRpcError ? { code: err.code } : 'indeterminate');
          throw err;
        });
        h.noteSendResult(body, 'cap:fence', { id: sent.message.id, taskId: sent.task!.id });
        const id = sent.task!.id;
        const first = (await a.call('task/claim', { id })).claimToken;
        await a.call('task/release', { id, claimToken: first });
        const second = (await b.call('task/claim', { id })).claimToken;
        figures.staleTried++;
        try {
          await a.call('task/update', { id, claimToken: first, status: 'done' });
          figures.staleAccepted++;
        } catch (err) {
          if (err instanceof RelayRpcError && err.code === ERRORS.staleClaim.code) figures.staleRefused++;
          else throw err;
        }
        await b.call('task/update', { id, claimToken: second, status: 'done' });
        figures.rounds++;
      } catch {
        figures.skipped++;
      }
      await sleep(100);
    }
  })();
  return {
    figures,
    clients: new Map([
      ['fence-a', a],
      ['fence-b', b],
    ]),
    stop: async () => {
      running = false;
      await loop;
    },
  };
}

t.test('three nodes behind a round-robin proxy: a node killed and restarted, one frozen, one LISTEN cut; the history holds', async (t) => {
  const url = await server.freshDatabase();
  const dir = mkdtempSync(join(tmpdir(), 'relay-cluster-faults-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const callbacks = await callbackReceiver(t);
  const secret = `whsec_${randomBytes(24).toString('base64')}`;
  const integrations = join(dir, 'integrations.json');
  writeFileSync(integrations, JSON.stringify({ integrations: [{ name: 'ci', secret, target: 'cap:work', callbackUrl: callbacks.url }] }));
  const env = {
    AGENT_RELAY_STORE: url,
    AGENT_RELAY_CLUSTER: 'on',
    AGENT_RELAY_INTEGRATIONS: integrations,
    AGENT_RELAY_ALLOW_PRIVATE_CALLBACKS: 'true',
    STALE_TTL_MS: String(TTL_MS),
    AGENT_RELAY_PRESENCE_INTERVAL_MS: '500',
  };
  const start = (i: number) => spawnRelay(t, { dbPath: join(dir, `unused-${i}.db`), env });
  const nodes: RelayProcess[] = [];
  for (let i = 0; i < 3; i++) nodes.push(await start(i));
  const proxy = await startTcpProxy(
    t,
    nodes.map((n) => n.port),
  );

  const load = new Workload(t, {
    url: proxy.url,
    integration: 'ci',
    hookSecret: secret,
    publishers: 6,
    claimers: 3,
    window: 8,
    pauseMs: 5,
    hookPauseMs: 15,
    claimableEvery: 10,
  });
  await load.start();
  const h = load.history;
  const probe = probes(t, h, () => nodes.map((n) => n.wsUrl));
  const fence = fencing(t, h, proxy.url);

  // When each client lost its connection and when it was ready again.
  const clients = [...load.clients.entries(), ...fence.clients.entries()];
  const drops = new Map<string, number[]>();
  const readies = new Map<string, number[]>();
  for (const [id, c] of clients) {
    c.on('disconnected', () => drops.set(id, [...(drops.get(id) ?? []), Date.now()]));
    c.on('ready', () => readies.set(id, [...(readies.get(id) ?? []), Date.now()]));
  }

  const started = Date.now();
  const at = (ms: number) => sleep(Math.max(0, started + ms - Date.now()));

  await at(KILL_AT_MS);
  proxy.retargetAt(1, 0);
  const killedAt = Date.now();
  const exit = await nodes[1]!.kill9();
  t.equal(exit.signal, 'SIGKILL', 'node 2 was SIGKILLed');
  await sleep(RESTART_AFTER_MS);
  nodes[1] = await start(1);
  proxy.retargetAt(1, nodes[1].port);
  const restartedAt = Date.now();

  await at(FREEZE_AT_MS);
  const frozenAt = Date.now();
  process.kill(nodes[2]!.pid, 'SIGSTOP');
  await sleep(FREEZE_MS);
  process.kill(nodes[2]!.pid, 'SIGCONT');
  const thawedAt = Date.now();

  await at(LISTEN_CUT_AT_MS);
  const ports = localPorts(nodes[0]!.pid);
  const feeds = (await server.admin<{ pid: number; client_port: number }>(`SELECT pid, client_port FROM pg_stat_activity WHERE application_name = 'agent-relay feed'`)).rows;
  const feed = feeds.find((f) => ports.has(f.client_port));
  t.ok(feed, `node 1's LISTEN connection found among ${feeds.length}`);
  // The cut node's feed is back once a message sent on another node reaches a socket on it.
  const cutWitness = await WsRpc.connect(t, nodes[0]!.wsUrl);
  await cutWitness.call('agent/register', { id: 'cut-witness' });
  const viaOther = await WsRpc.connect(t, nodes[2]!.wsUrl);
  await viaOther.call('agent/register', { id: 'cut-sender' });
  const cutAt = Date.now();
  await server.admin('SELECT pg_terminate_backend($1)', [feed!.pid]);
  h.sendsAttempted.add('after the cut');
  const witness = (await viaOther.call('message/send', { to: 'cut-witness', body: 'after the cut' })).message.id as number;
  await waitFor(() => cutWitness.messages().some((m) => m.id === witness), 'the cut node to deliver a message sent on another node', 10_000);
  const witnessedMs = Date.now() - cutAt;

  await at(LOAD_MS);
  await Promise.all([load.stop(), probe.stop(), fence.stop()]);
  const loadMs = Date.now() - started;

  // Drain: every receiver has everything the database holds for it, every callback is delivered.
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  t.teardown(() => db.end());
  const pendingCallbacks = async () => Number((await db.query(`SELECT count(*) AS n FROM outbox WHERE state <> 'delivered'`)).rows[0].n);
  // The snapshot the checks read is the drain's last one (one full read of the history per round).
  let rows = await postgresHistoryRows(url, load.receivers);
  for (let i = 0; i < 120 && (h.missing(rows) > 0 || (await pendingCallbacks()) > 0); i++) {
    await sleep(500);
    rows = await postgresHistoryRows(url, load.receivers);
  }
  const f = h.check(rows, { publishers: (from) => load.isPublisher(from) || /^(probe-\d|fence-a|cut-sender)$/.test(from), hookSource: 'ci' });
  const missing = h.missingIds(rows);
  const createdAt = new Map(
    (await db.query(`SELECT id::float8 AS id, created_at::float8 AS at FROM messages WHERE id = ANY ($1)`, [missing.map((m) => m.id)])).rows.map((r) => [r.id as number, r.at as number]),
  );
  const ids = (await db.query(`SELECT count(*)::float8 AS n, coalesce(max(id), 0)::float8 AS max FROM messages`)).rows[0] as { n: number; max: number };
  const offline = (await db.query(`SELECT agent_id FROM events WHERE kind = 'agent.offline'`)).rows.map((r) => r.agent_id as string);
  const outbox = (await db.query(`SELECT webhook_id, task_id::float8 AS task_id, event_id::float8 AS event_id, state FROM outbox ORDER BY id`)).rows as Array<{
    webhook_id: string;
    task_id: number;
    event_id: number;
    state: string;
  }>;

  // Callbacks: each outbox entry arrived (once, or again with the same webhook-id), per task in event order.
  const arrivals = new Map<string, number>();
  for (const c of callbacks.received) arrivals.set(c.webhookId, (arrivals.get(c.webhookId) ?? 0) + 1);
  const undelivered = outbox.filter((e) => e.state !== 'delivered' || !arrivals.has(e.webhook_id)).length;
  const unknownCallbacks = [...arrivals.keys()].filter((id) => !outbox.some((e) => e.webhook_id === id)).length;
  const resent = [...arrivals.values()].filter((n) => n > 1).length;
  let orderViolations = 0;
  const lastEvent = new Map<number, number>();
  for (const c of callbacks.received) {
    if (c.eventId < (lastEvent.get(c.taskId) ?? 0)) orderViolations++;
    lastEvent.set(c.taskId, Math.max(c.eventId, lastEvent.get(c.taskId) ?? 0));
  }

  // Survivors' stall: the slowest probe send started on a surviving node around each fault.
  const slowest = (from: number, to: number, nodesOf: number[]) => Math.max(0, ...probe.samples.filter((s) => nodesOf.includes(s.node) && s.startedAt >= from && s.startedAt <= to).map((s) => s.ms));
  // Up to the restart: starting a node (compiling its TypeScript) takes a core of this 2-core box.
  const killStall = slowest(killedAt - 100, killedAt + RESTART_AFTER_MS, [0, 2]);
  const freezeStall = slowest(frozenAt - 100, thawedAt, [0, 1]);
  const quiet = probe.samples.filter((s) => s.startedAt < killedAt - 1_000).map((s) => s.ms);
  // The killed node's clients: from the kill to their next ready.
  const resumed: number[] = [];
  for (const [id] of clients) {
    const dropped = (drops.get(id) ?? []).find((x) => x >= killedAt && x <= killedAt + 1_000);
    if (dropped === undefined) continue;
    const ready = (readies.get(id) ?? []).find((x) => x >= dropped);
    resumed.push(ready === undefined ? Number.POSITIVE_INFINITY : ready - killedAt);
  }

  t.ok(f.acked_sends + f.acked_hooks >= MIN_ACKED, `at least ${MIN_ACKED} acknowledged sends (${f.acked_sends} messages + ${f.acked_hooks} webhooks)`);
  t.equal(f.lost, 0, 'lost acknowledged messages, webhooks, claims and completions: 0');
  t.equal(f.refused_present, 0, 'refused sends present in the database: 0');
  t.equal(f.wrong_owner, 0, 'acknowledged claims with a different owner: 0');
  t.equal(f.second_owner, 0, 'double claims: 0');
  t.equal(f.unexpected, 0, 'unexpected messages (in the database or handed to an application): 0');
  t.equal(f.duplicate_writes, 0, 'no send or webhook delivery was written twice');
  t.equal(f.app_duplicates, 0, 'duplicates to the application: 0');
  t.equal(f.app_out_of_order, 0, 'out of order at the application: 0');
  t.equal(
    f.app_missing,
    0,
    `missing at a receiver: 0${missing.length ? ` (${missing.map((m) => `${m.client} id ${m.id}, committed ${createdAt.get(m.id)! - started} ms into the load`).join('; ')}; kill at ${killedAt - started}, freeze at ${frozenAt - started}, LISTEN cut at ${cutAt - started} ms)` : ''}`,
  );
  t.equal(ids.max - ids.n, 0, `id holes: 0 (${ids.n} messages, ids 1..${ids.max})`);
  t.ok(fence.figures.staleTried > 0, `stale tokens tried (${fence.figures.staleTried})`);
  t.equal(fence.figures.staleRefused, fence.figures.staleTried, `stale tokens refused: ${fence.figures.staleRefused} of ${fence.figures.staleTried}`);
  t.ok(outbox.length > 0, `callbacks were queued (${outbox.length})`);
  t.equal(undelivered, 0, 'every callback was delivered');
  t.equal(unknownCallbacks, 0, 'no callback arrived that the outbox does not hold');
  t.equal(orderViolations, 0, 'callback order violations (per task): 0');
  t.same(offline, [], 'no agent was released (each reconnected within STALE_TTL_MS)');
  t.ok(resumed.length > 0, `the killed node's clients: ${resumed.length}`);
  t.ok(Math.max(...resumed) <= 5_000, `resumed within 5 s of the kill (${resumed.join(', ')} ms)`);
  t.ok(killStall <= 200, `survivors' stall during the kill ≤ 200 ms (slowest probe send ${killStall} ms; p99 before the faults ${percentile(quiet, 99)} ms)`);
  t.ok(
    freezeStall <= IDLE_IN_TRANSACTION_MS + 500,
    `a frozen node stops the others no longer than its timeout (slowest survivor send during the freeze ${freezeStall} ms; idle_in_transaction_session_timeout ${IDLE_IN_TRANSACTION_MS} ms)`,
  );
  t.pass(`after its LISTEN connection was cut, node 1 delivered a message sent on node 3 ${witnessedMs} ms after the cut`);

  figure(t, 'cluster-faults', {
    nodes: 3,
    load_s: Math.round(loadMs / 1000),
    acked_sends: f.acked_sends,
    acked_webhooks: f.acked_hooks,
    acked_claims: f.acked_claims,
    acked_dones: f.acked_dones,
    indeterminate: f.indeterminate,
    refused: [...h.sendsRefused.entries()].map(([code, n]) => `${code}:${n}`).join('/') || 0,
    lost: f.lost,
    refused_present: f.refused_present,
    duplicates_to_app: f.app_duplicates,
    missing_at_receiver: f.app_missing,
    out_of_order: f.app_out_of_order,
    id_holes: ids.max - ids.n,
    double_claims: f.second_owner,
    wrong_owner: f.wrong_owner,
    stale_tokens_refused: `${fence.figures.staleRefused}/${fence.figures.staleTried}`,
    fence_rounds_skipped: fence.figures.skipped,
    callbacks: outbox.length,
    callbacks_resent_same_id: resent,
    callback_order_violations: orderViolations,
    agents_released: offline.length,
    kill_stall_ms: killStall,
    freeze_stall_ms: freezeStall,
    probe_p99_before_faults_ms: percentile(quiet, 99),
    killed_clients: resumed.length,
    resumed_ms_max: Math.max(...resumed),
    restart_ms: restartedAt - killedAt - RESTART_AFTER_MS,
    listen_cut_witnessed_ms: witnessedMs,
  });
});
