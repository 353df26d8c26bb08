import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import WebSocket from 'ws';
import { childEnv, ROOT, spawnChild, spawnTs } from '../helpers/child.js';
import { figure, uniqueDir } from './support.js';

/*
 * "No ack, push or callback before the sync that covers it" (issue 16, item 8), checked on the
 * system calls of a real relay process (dist/broker/main.js, the store's writer thread included)
 * under strace, by bench/durability-trace-check.ts: every socket write naming a marked message
 * (MARK-<n>-: its body, and the string request id its ack carries) must be preceded by a returned
 * fsync of the -wal that began after the WAL commit frame holding that message was written.
 * 200 messages from 4 WebSocket clients to one receiving agent (so pushes are checked), and one
 * task with a callback URL to a receiver on 127.0.0.1 (so a callback POST is checked).
 * Negative control (run by hand when this was written): the same run with AGENT_RELAY_SYNC=NORMAL
 * gives 2 WAL syncs (checkpoints only) and 403 violations of 403 mentions.
 */

const STRACE = '/usr/bin/strace';
const MAIN = join(ROOT, 'dist', 'broker', 'main.js');
const SENDERS = 4;
const MESSAGES = 200;
const TASK_MARK = MESSAGES + 1;

function straceWorks(): string | null {
  if (!existsSync(STRACE)) return `${STRACE} is not installed`;
  const probe = spawnSync(STRACE, ['-qq', '-e', 'trace=none', process.execPath, '-e', '0'], { encoding: 'utf8', timeout: 10_000 });
  return probe.status === 0 ? null : `strace cannot trace here (exit ${probe.status}): ${(probe.stderr ?? '').trim().slice(0, 200)}`;
}

interface Client {
  ws: WebSocket;
  frames: string[];
  call(id: string, method: string, params: Record<string, unknown>): Promise<any>;
}

async function connect(url: string): Promise<Client> {
  const ws = new WebSocket(url);
  const frames: string[] = [];
  const pending = new Map<string, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  ws.on('message', (data) => {
    const text = data.toString();
    frames.push(text);
    const m = JSON.parse(text) as { id?: string; result?: unknown; error?: { message: string } };
    if (typeof m.id !== 'string') return;
    const p = pending.get(m.id);
    pending.delete(m.id);
    if (m.error) p?.reject(new Error(m.error.message));
    else p?.resolve(m.result);
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return {
    ws,
    frames,
    call: (id, method, params) =>
      new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
      }),
  };
}

async function until(what: string, cond: () => boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

t.test('no ack, push or callback leaves the relay before the WAL fsync that covers it (strace)', async (t) => {
  const why = straceWorks();
  if (why) {
    t.comment(`skipped: ${why}`);
    t.pass('skipped', { skip: why });
    return;
  }
  t.ok(existsSync(MAIN), `the relay is built (${MAIN}; npm run build)`);
  if (!existsSync(MAIN)) return;
  const dir = uniqueDir(t);
  const trace = join(dir, 'trace.txt');

  // The callback receiver.
  const posts: string[] = [];
  const rx = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      posts.push(Buffer.concat(chunks).toString('utf8'));
      res.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((r) => rx.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => rx.close(() => r())));
  const rxUrl = `http://127.0.0.1:${(rx.address() as AddressInfo).port}/hook`;

  const started = Date.now();
  const relay = spawnChild(
    t,
    STRACE,
    ['-f', '-qq', '-y', '-xx', '-s', '66000', '-e', 'trace=pwrite64,fsync,fdatasync,write,writev,sendto,sendmsg', '-o', trace, process.execPath, MAIN, '--port', '0', '--db', join(dir, 'relay.db')],
    {
      env: childEnv({
        LOG_LEVEL: 'info',
        AGENT_RELAY_HOME: dir,
        AGENT_RELAY_ALLOW_PRIVATE_CALLBACKS: 'true',
        AGENT_RELAY_CALLBACK_SECRET: `whsec_${randomBytes(32).toString('base64')}`,
      }),
    },
  );
  await until('the relay to listen', () => /"url":"http:\/\/127\.0\.0\.1:\d+"/.test(relay.stdout()), 25_000);
  const line = relay
    .stdout()
    .split('\n')
    .find((l) => /"url":"http:\/\/127\.0\.0\.1:\d+"/.test(l))!;
  const { url } = JSON.parse(line) as { url: string };
  // The relay is strace's child.
  const pid = Number(readFileSync(`/proc/${relay.pid}/task/${relay.pid}/children`, 'utf8').trim().split(/\s+/)[0]);
  t.ok(pid > 0, `the relay runs under strace (pid ${pid})`);
  const wsUrl = `${url.replace('http', 'ws')}/rpc`;

  const sink = await connect(wsUrl);
  t.teardown(() => sink.ws.terminate());
  await sink.call('reg-sink', 'agent/register', { id: 'sink' });
  const senders: Client[] = [];
  for (let i = 0; i < SENDERS; i++) {
    const c = await connect(wsUrl);
    t.teardown(() => c.ws.terminate());
    await c.call(`reg-s${i}`, 'agent/register', { id: `sender-${i}` });
    senders.push(c);
  }

  // Each sender sends its share one after another; the four run side by side, so commits group.
  const acked: number[] = [];
  await Promise.all(
    senders.map(async (c, i) => {
      for (let n = i + 1; n <= MESSAGES; n += SENDERS) {
        const r = (await c.call(`ack-MARK-${n}-`, 'message/send', { to: 'sink', body: `MARK-${n}- from sender-${i}` })) as { message: { id: number } };
        if (r.message.id > 0) acked.push(n);
      }
    }),
  );
  const task = (await senders[0]!.call(`ack-MARK-${TASK_MARK}-`, 'task/create', { title: `MARK-${TASK_MARK}- build it`, target: 'sink', callbackUrl: rxUrl })) as { task: { id: number } };
  t.equal(acked.length, MESSAGES, `every message was acknowledged (${acked.length})`);
  t.ok(task.task.id > 0, 'the task was created');

  const pushed = () => new Set(sink.frames.flatMap((f) => [...f.matchAll(/MARK-(\d+)-/g)].map((m) => Number(m[1])))).size;
  await until('the pushes to sink', () => pushed() >= MESSAGES + 1);
  await until('the callback POST', () => posts.some((p) => p.includes(`MARK-${TASK_MARK}-`)));
  const loadMs = Date.now() - started;

  // Stop the relay by pid (strace exits with it), then check the trace.
  process.kill(pid, 'SIGTERM');
  const exit = await relay.exited;
  t.equal(exit.code, 0, 'the relay stopped cleanly under strace');
  const check = spawnTs(t, 'bench/durability-trace-check.ts', { args: [trace] });
  const checked = await check.exited;
  const out = check.stdout();
  t.comment(out.trim());
  const m = /(\d+) commits, (\d+) WAL syncs \(tids ([^)]*)\), (\d+) socket writes \(tids ([^)]*)\), (\d+) batch mentions checked, (\d+) violations/.exec(out);
  t.ok(m, 'the checker reported');
  if (!m) return;
  const [, commits, syncs, syncTids, socketWrites, writeTids, mentions, violations] = m;
  t.equal(checked.code, 0, 'the checker passed (exit 0)');
  t.equal(Number(violations), 0, 'no socket write named a message before the WAL sync covering its commit');
  // Every marked message is named at least by its ack and by its push; the task also by its callback.
  const expected = 2 * (MESSAGES + 1) + 1;
  t.ok(Number(mentions) >= expected, `at least ${expected} mentions were checked (${mentions}): a missed marker cannot pass`);
  t.notSame(syncTids, writeTids, `the WAL syncs ran on another thread (${syncTids}) than the socket writes (${writeTids})`);
  figure(t, 'durability-order', {
    messages: MESSAGES,
    commits: Number(commits),
    wal_syncs: Number(syncs),
    socket_writes: Number(socketWrites),
    mentions_checked: Number(mentions),
    violations: Number(violations),
    callbacks: posts.length,
    trace_mb: Math.round(statSync(trace).size / 1e5) / 10,
    load_ms: loadMs,
  });
});
