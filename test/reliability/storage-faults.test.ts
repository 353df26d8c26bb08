import Database from 'better-sqlite3';
import { join } from 'node:path';
import t from 'tap';
import { EXIT } from '../../clients/cli/context.js';
import { runCli } from '../../clients/cli/main.js';
import { RelayHttpClient } from '../../clients/http-client.js';
import { ERRORS } from '../../protocol/errors.js';
import { spawnRelay } from '../helpers/relay-process.js';
import { startRelay } from '../helpers/relay.js';
import { connectAgent, RpcError, WsRpc } from '../helpers/ws-client.js';
import { figure, sleep, uniqueDir } from './support.js';

/**
 * Storage faults against real SQLite files: another process holding the write lock past the busy
 * timeout, and a full disk (max_page_count lowered on the relay's own connection mid-load).
 * Either way: a clear -32008, nothing acknowledged that is not in the database, no crash, reads
 * keep serving, and writes resume once the fault is gone.
 */

const BUSY_MS = 300;

t.test('a second process holding the write lock past the busy timeout: -32008 "storage busy", nothing acknowledged, no crash, writes resume', async (t) => {
  const dbPath = join(uniqueDir(t), 'relay.db');
  const relay = await spawnRelay(t, { dbPath, env: { AGENT_RELAY_BUSY_TIMEOUT_MS: String(BUSY_MS) } });
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const before = await alice.rpc.call('message/send', { to: 'bob', body: 'before the lock' });

  // This test process is the second process: it takes the write lock and sits on it.
  // (It may have to wait a moment for a commit of the relay's own to finish first.)
  const holder = new Database(dbPath, { timeout: 5000 });
  t.teardown(() => holder.close());
  holder.exec('BEGIN IMMEDIATE');
  const lockedAt = Date.now();

  const wsOutcomes: Array<{ code: number | null; message: string; ms: number }> = [];
  const sends = Array.from({ length: 10 }, async (_, i) => {
    const started = Date.now();
    try {
      await alice.rpc.call('message/send', { to: 'bob', body: `during-lock-${i}` });
      wsOutcomes.push({ code: null, message: 'acknowledged', ms: Date.now() - started });
    } catch (err) {
      wsOutcomes.push({ code: err instanceof RpcError ? err.code : -1, message: (err as Error).message, ms: Date.now() - started });
    }
  });
  const httpSend = fetch(`${relay.url}/api/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ to: 'bob', body: 'during-lock-http', from: 'ext:script' }),
  }).then(async (r) => ({ status: r.status, body: (await r.json()) as { error?: { code: number; message: string } } }));
  const claimTry = alice.rpc.call('task/create', { title: 'during-lock-task', target: 'bob' }).then(
    () => null,
    (e: unknown) => e,
  );
  await Promise.all(sends);
  const http = await httpSend;
  const taskErr = await claimTry;
  // Reads do not need the write lock (WAL): they keep serving while it is held.
  const readStarted = Date.now();
  const read = await bob.rpc.call('message/list', {});
  const readMs = Date.now() - readStarted;
  const health = await fetch(`${relay.url}/healthz`);
  const healthBody = (await health.json()) as { dbWritable: boolean };
  const heldMs = Date.now() - lockedAt;
  t.ok(heldMs > BUSY_MS, `the lock was held past the busy timeout (${heldMs} ms > ${BUSY_MS} ms)`);
  holder.exec('ROLLBACK');

  const refused = wsOutcomes.filter((o) => o.code === ERRORS.storageBusy.code);
  t.equal(refused.length, 10, 'every WebSocket send during the lock was refused with -32008');
  t.ok(
    wsOutcomes.every((o) => /storage busy/.test(o.message) && /nothing was written/.test(o.message)),
    'the message says "storage busy ... nothing was written"',
  );
  t.equal(http.status, 503, 'HTTP send during the lock: 503');
  t.equal(http.body.error?.code, ERRORS.storageBusy.code, 'with -32008');
  t.match(http.body.error?.message, /storage busy/, 'and says storage busy');
  t.equal((taskErr as RpcError | null)?.code, ERRORS.storageBusy.code, 'task/create during the lock: -32008');
  t.same(
    read.messages.map((m: { body: string }) => m.body),
    ['before the lock'],
    'reads kept serving during the lock',
  );
  t.equal(health.status, 503, '/healthz says the database is not writable (503) while it is locked');
  t.equal(healthBody.dbWritable, false, 'dbWritable: false');

  // The lock is gone: writes resume on the same connection, same process.
  const after = await alice.rpc.call('message/send', { to: 'bob', body: 'after the lock' });
  t.ok(after.message.id > before.message.id, 'a write after the lock is acknowledged');
  t.equal(alice.rpc.closeCode, null, 'the WebSocket stayed open throughout');
  const healthAfter = await fetch(`${relay.url}/healthz`);
  t.equal(healthAfter.status, 200, '/healthz is 200 again');
  await healthAfter.text();

  const check = new Database(dbPath, { readonly: true });
  t.teardown(() => check.close());
  const bodies = check.prepare(`SELECT body FROM messages ORDER BY id`).pluck().all() as string[];
  t.same(bodies, ['before the lock', 'after the lock'], 'nothing refused was written; both acknowledged writes are there');
  t.equal(check.prepare(`SELECT count(*) FROM tasks`).pluck().get(), 0, 'the refused task/create wrote nothing');
  t.equal(check.pragma('integrity_check', { simple: true }), 'ok', 'integrity_check ok');
  const stillRunning = await Promise.race([relay.exited.then(() => false), sleep(50).then(() => true)]);
  t.ok(stillRunning, `the relay process did not crash (pid ${relay.pid})`);
  figure(t, 'storage-busy', {
    busy_timeout_ms: BUSY_MS,
    lock_held_ms: heldMs,
    refused: refused.length + (http.status === 503 ? 1 : 0) + 1,
    acknowledged_during_lock: wsOutcomes.filter((o) => o.code === null).length,
    refusal_ms_max: Math.max(...wsOutcomes.map((o) => o.ms)),
    read_during_lock_ms: readMs,
    crashed: !stillRunning,
    resumed: after.message.id > before.message.id,
  });
  t.equal(await relay.stop('SIGTERM'), 0, 'it stops cleanly');
});

t.test('a full disk (max_page_count lowered mid-load): errors, no acknowledged-but-absent row, reads keep serving, writes resume', async (t) => {
  const dir = uniqueDir(t);
  const relay = await startRelay(t, {}, { dir });
  const writers = await Promise.all(['w1', 'w2', 'w3'].map((id) => connectAgent(t, relay.wsUrl, { id, tags: ['load'] })));
  const reader = await WsRpc.connect(t, relay.wsUrl);
  await connectAgent(t, relay.wsUrl, { id: 'sink', capabilities: ['work'] });

  const acked = new Map<number, { body: string; taskId: number | null }>();
  const refusals = new Map<number, number>();
  const attempted = new Set<string>();
  let phase: 'before' | 'full' | 'after' = 'before';
  const ackedIn = { before: 0, full: 0, after: 0 };
  let running = true;
  let seq = 0;
  const load = writers.map(async (w) => {
    while (running) {
      const batch = Array.from({ length: 5 }, () => {
        const n = seq++;
        const body = `${w.id}-${n}-${'x'.repeat(200 + (n % 7) * 300)}`;
        attempted.add(body);
        const claimable = n % 4 === 0;
        return w.rpc.call('message/send', claimable ? { to: 'cap:work', body, claimable: true } : { to: n % 2 ? 'sink' : 'tag:load', body }).then(
          (r) => {
            acked.set(r.message.id, { body, taskId: r.task?.id ?? null });
            ackedIn[phase]++;
          },
          (err: unknown) => {
            const code = err instanceof RpcError ? err.code : -1;
            refusals.set(code, (refusals.get(code) ?? 0) + 1);
          },
        );
      });
      await Promise.all(batch);
    }
  });

  await sleep(300);
  const pages = Number(await relay.store.pragma('page_count'));
  // The relay's own connection may not grow the file any more: the disk is "full".
  await relay.store.pragma(`max_page_count = ${pages + 2}`);
  phase = 'full';
  const fullFrom = seq;
  await sleep(800);

  // While full: refusals are -32008, reads keep serving.
  const readStarted = performance.now();
  const listed = await reader.call('message/list', { limit: 50 });
  const readMs = performance.now() - readStarted;
  const agents = await reader.call('agent/list', {});
  attempted.add('y'.repeat(100_000));
  const fullErr = await writers[0]!.rpc.call('message/send', { to: 'sink', body: 'y'.repeat(100_000) }).then(
    () => null,
    (e: unknown) => e as RpcError,
  );

  await relay.store.pragma('max_page_count = 1073741823');
  phase = 'after';
  await sleep(300);
  running = false;
  await Promise.all(load);
  const resumedBody = 'after the disk has room again';
  attempted.add(resumedBody);
  const resumed = await writers[1]!.rpc.call('message/send', { to: 'sink', body: resumedBody });
  acked.set(resumed.message.id, { body: resumedBody, taskId: null });

  t.ok(ackedIn.before > 0, `writes were acknowledged before the disk filled (${ackedIn.before})`);
  t.ok((refusals.get(ERRORS.storageBusy.code) ?? 0) > 0, `writes were refused while it was full (${refusals.get(ERRORS.storageBusy.code) ?? 0} × -32008)`);
  t.same(
    [...refusals.keys()].filter((c) => c !== ERRORS.storageBusy.code),
    [],
    'every refusal was -32008 (no internal errors, no dropped sockets)',
  );
  t.equal(fullErr?.code, ERRORS.storageBusy.code, 'a large write while full: -32008');
  t.match(fullErr?.error.message ?? '', /storage full/, 'saying "storage full"');
  t.ok(listed.messages.length > 0, `reads kept serving while full (message/list in ${readMs.toFixed(1)} ms)`);
  t.equal(agents.agents.length, 4, 'agent/list served while full');
  t.ok(ackedIn.after > 0, `writes resumed once the disk had room (${ackedIn.after} acknowledged after)`);
  t.ok(resumed.message.id > 0, 'a large write after the fault is acknowledged');
  t.ok(
    writers.every((w) => w.rpc.closeCode === null),
    'no writer was disconnected',
  );

  const db = new Database(join(dir, 'relay.db'), { readonly: true });
  t.teardown(() => db.close());
  const getMsg = db.prepare<[number], { body: string; task_id: number | null }>(`SELECT body, task_id FROM messages WHERE id = ?`);
  let absent = 0;
  let taskMismatch = 0;
  for (const [id, a] of acked) {
    const row = getMsg.get(id);
    if (!row || row.body !== a.body) absent++;
    else if (row.task_id !== a.taskId) taskMismatch++;
  }
  const stored = db.prepare(`SELECT body FROM messages WHERE from_id LIKE 'w%'`).pluck().all() as string[];
  const unexpected = stored.filter((b) => !attempted.has(b)).length;
  const ackedBodies = new Set([...acked.values()].map((a) => a.body));
  const writtenNotAcked = stored.filter((b) => !ackedBodies.has(b)).length;
  const orphanTasks = db.prepare(`SELECT count(*) FROM tasks t LEFT JOIN messages m ON m.id = t.message_id WHERE m.id IS NULL`).pluck().get() as number;
  const orphanDeliveries = db.prepare(`SELECT count(*) FROM delivery_marks d LEFT JOIN messages m ON m.id = d.message_id WHERE m.id IS NULL`).pluck().get() as number;
  const integrity = db.pragma('integrity_check', { simple: true });
  t.equal(absent, 0, 'no acknowledged message is absent from the database');
  t.equal(taskMismatch, 0, 'every acknowledged claimable send has its task');
  t.equal(unexpected, 0, 'nothing was written that no writer sent');
  t.equal(writtenNotAcked, 0, 'nothing refused was written either');
  t.equal(orphanTasks, 0, 'no task without its announcement (no half-applied write)');
  t.equal(orphanDeliveries, 0, 'no delivery without its message');
  t.equal(integrity, 'ok', 'integrity_check ok');
  figure(t, 'storage-full', {
    acked_before: ackedIn.before,
    acked_while_full: ackedIn.full,
    acked_after: ackedIn.after,
    refused_32008: refusals.get(ERRORS.storageBusy.code) ?? 0,
    other_errors: [...refusals].filter(([c]) => c !== ERRORS.storageBusy.code).reduce((n, [, k]) => n + k, 0),
    acked_but_absent: absent,
    written_not_acked: writtenNotAcked,
    half_applied: orphanTasks + orphanDeliveries,
    read_while_full_ms: readMs,
    sent_from_fault: seq - fullFrom,
    integrity: String(integrity),
  });
});

t.test('/healthz reports a full disk (dbWritable false, the last commit failure) and its recovery once a commit succeeds', async (t) => {
  const relay = await startRelay(t, {}, { dir: uniqueDir(t) });
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const health = async () => {
    const res = await fetch(`${relay.url}/healthz`);
    return { status: res.status, body: (await res.json()) as { dbWritable: boolean; lastCommitFailure: { at: number; error: string } | null } };
  };
  t.match(await health(), { status: 200, body: { dbWritable: true, lastCommitFailure: null } }, 'writable before');

  await relay.store.pragma(`max_page_count = ${Number(await relay.store.pragma('page_count'))}`);
  const refused = await alice.rpc.call('message/send', { to: 'bob', body: 'y'.repeat(100_000) }).then(
    () => null,
    (e: unknown) => e as RpcError,
  );
  t.equal(refused?.code, ERRORS.storageBusy.code, 'a write on the full disk is refused with -32008');
  const full = await health();
  t.equal(full.status, 503, `/healthz is 503 while writes fail (was ${full.status})`);
  t.equal(full.body.dbWritable, false, 'dbWritable: false');
  t.match(full.body.lastCommitFailure?.error ?? '', /^SQLITE_FULL: /, `it names the failure (${full.body.lastCommitFailure?.error})`);
  // The client library and `agent-relay status` show that report, not "healthz: HTTP 503".
  const report = await new RelayHttpClient({ url: relay.url }).health();
  t.match(report, { ok: false, dbWritable: false, lastCommitFailure: { error: /^SQLITE_FULL: / } }, 'RelayHttpClient.health() returns the 503 report');
  const out: string[] = [];
  const code = await runCli(['status'], { out: (s) => out.push(s), err: (s) => out.push(s), isTTY: false, env: { AGENT_RELAY_URL: relay.url, AGENT_RELAY_HOME: uniqueDir(t) } });
  t.equal(code, EXIT.refused, 'agent-relay status exits 1 while the database cannot be written');
  t.match(out.join('\n'), /NOT OK, database not writable\nlast commit failed at \S+: SQLITE_FULL: /, `it prints why (${out[0]})`);

  await relay.store.pragma('max_page_count = 1073741823');
  await alice.rpc.call('message/send', { to: 'bob', body: 'room again' });
  t.match(await health(), { status: 200, body: { dbWritable: true, lastCommitFailure: null } }, 'writable again once a commit succeeded');
});

t.test('when a write of a group commit meets a full disk, every write of it is refused and none is written', async (t) => {
  const relay = await startRelay(t, {}, { dir: uniqueDir(t) });
  const store = relay.store;
  const write = (body: string) =>
    relay.core.queue.apply(
      {
        op: 'message.send',
        at: Date.now(),
        message: { from: 'ext:test', to: 'broadcast', channel: null, subject: null, body, replyTo: null, threadId: null, claimable: false, taskId: null, createdAt: Date.now(), meta: {} },
        recipients: [],
        task: null,
      },
      () => body,
    );
  // Three writes in one turn share one commit; the second cannot fit in what the file may still
  // grow by (a real SQLITE_FULL in the middle of the batch).
  await store.pragma(`max_page_count = ${Number(await store.pragma('page_count')) + 2}`);
  const outcomes = await Promise.allSettled([write('first'), write('x'.repeat(200_000)), write('third')]);
  await store.pragma('max_page_count = 1073741823');
  const codes = outcomes.map((o) => (o.status === 'rejected' ? (o.reason as { code?: number }).code : 'acknowledged'));
  t.same(codes, [ERRORS.storageBusy.code, ERRORS.storageBusy.code, ERRORS.storageBusy.code], 'all three are refused with -32008 (none as an internal error)');
  t.match((outcomes[0] as PromiseRejectedResult).reason.message, /storage full/, 'saying storage full');
  t.equal(await store.messages.maxId(), 0, 'none was written: the first and third did not commit without the second');
  t.notOk(await store.inTransaction(), 'no transaction was left open');
  const after = await write('after');
  t.equal(after, 'after', 'the next write goes through');
  t.equal((await store.messages.all({ since: 0, limit: 10, channel: null, threadId: null })).map((m) => m.body).join(','), 'after', 'and only it is stored');
  figure(t, 'storage-rolled-back-batch', { refused_32008: codes.filter((c) => c === ERRORS.storageBusy.code).length, written: (await store.messages.maxId()) - 1 });
});
