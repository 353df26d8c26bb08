import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { EXIT } from '../../clients/cli/context.js';
import { runCli } from '../../clients/cli/main.js';
import { childEnv, ROOT, trackChild, untrackChild } from '../helpers/child.js';
import { startRelay } from '../helpers/relay.js';
import { spawnRelay } from '../helpers/relay-process.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';

/**
 * The real `agent-relay` bin as child processes (`node bin/agent-relay.js ...`): that it runs at
 * all, its exit codes, and the commands that run until interrupted (tail, monitor), whose stdout
 * lines are read as they come and which are stopped with SIGTERM by pid. Spawns are kept few:
 * each costs most of a second.
 */

const BIN = join(ROOT, 'bin', 'agent-relay.js');
/** Generous bound for anything a child should do (start-up included); not a timing assertion. */
const WAIT_MS = 30_000;

/** The parent's environment minus relay and CLI settings and NO_COLOR, plus `extra`. */
function cliEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  return childEnv(extra, (k) => k.startsWith('AGENT_RELAY_') || k === 'NO_COLOR');
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A running `agent-relay` child: its stdout as lines, its stderr, and how it ended. */
class Child {
  readonly lines: string[] = [];
  stderr = '';
  private partial = '';
  private exit: Exit | null = null;
  private wake: Array<() => void> = [];
  readonly exited: Promise<Exit>;
  readonly pid: number;

  constructor(
    t: Test,
    readonly args: string[],
    env: Record<string, string>,
  ) {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: cliEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    const pid = child.pid;
    if (pid === undefined) throw new Error('agent-relay did not start');
    this.pid = pid;
    trackChild(pid);
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      const parts = (this.partial + s).split('\n');
      this.partial = parts.pop()!;
      this.lines.push(...parts);
      this.notify();
    });
    child.stderr.setEncoding('utf8').on('data', (s: string) => (this.stderr += s));
    this.exited = new Promise((resolve) => {
      // 'close', not 'exit': by then stdout and stderr are fully read.
      child.once('close', (code, signal) => {
        if (this.partial) this.lines.push(this.partial);
        this.partial = '';
        this.exit = { code, signal };
        untrackChild(pid);
        this.notify();
        resolve(this.exit);
      });
    });
    t.teardown(async () => {
      if (this.exit) return;
      this.signal('SIGKILL');
      await this.exited;
    });
  }

  private notify(): void {
    const w = this.wake;
    this.wake = [];
    for (const f of w) f();
  }

  private signal(sig: NodeJS.Signals): void {
    if (this.exit) return;
    try {
      process.kill(this.pid, sig);
    } catch {
      // already gone
    }
  }

  /** Resolve once `cond(lines)` holds; fail if the child exits first or nothing comes within WAIT_MS. */
  async waitFor(cond: (lines: string[]) => boolean, what: string): Promise<void> {
    const deadline = Date.now() + WAIT_MS;
    while (!cond(this.lines)) {
      if (this.exit) throw new Error(`agent-relay ${this.args.join(' ')} exited (${JSON.stringify(this.exit)}) before ${what}\nstdout: ${this.lines.join('\n')}\nstderr: ${this.stderr}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${what} from agent-relay ${this.args.join(' ')} within ${WAIT_MS} ms\nstdout: ${this.lines.join('\n')}\nstderr: ${this.stderr}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** SIGTERM by pid (Ctrl-C's sibling) and the exit it leads to. */
  async stop(): Promise<Exit> {
    this.signal('SIGTERM');
    return this.finished();
  }

  /** The exit, or a failure when the child is still running after WAIT_MS (it is then killed). */
  async finished(): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), WAIT_MS)));
    const r = await Promise.race([this.exited, bound]);
    clearTimeout(timer);
    if (r === 'timeout') {
      this.signal('SIGKILL');
      await this.exited;
      throw new Error(`agent-relay ${this.args.join(' ')} did not exit within ${WAIT_MS} ms\nstderr: ${this.stderr}`);
    }
    return r;
  }
}

/** Run the bin to completion. */
async function runBin(t: Test, args: string[], env: Record<string, string> = {}): Promise<Exit & { stdout: string; stderr: string }> {
  const child = new Child(t, args, env);
  const exit = await child.finished();
  return { ...exit, stdout: child.lines.join('\n'), stderr: child.stderr };
}

/** The CLI in-process (the other terminal of these scenarios). */
async function cli(env: Record<string, string>, ...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(argv, { out: (s) => out.push(s), err: (s) => err.push(s), isTTY: false, env });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

async function cliJson(t: Test, env: Record<string, string>, ...argv: string[]): Promise<any> {
  const r = await cli(env, '--json', ...argv);
  t.equal(r.code, EXIT.ok, `agent-relay ${argv.join(' ')} exits 0`, { stderr: r.err });
  return JSON.parse(r.out);
}

async function rpc(relay: { url: string }, method: string, params: Record<string, unknown> = {}): Promise<any> {
  const res = await fetch(`${relay.url}/rpc`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }) });
  const frame = (await res.json()) as { result?: any; error?: { code: number; message: string } };
  if (frame.error) throw new Error(`${method}: ${frame.error.code} ${frame.error.message}`);
  return frame.result;
}

/** Poll the relay (bounded) until `cond` holds on what `probe` returns. */
async function eventually<T>(probe: () => Promise<T>, cond: (v: T) => boolean, what: string): Promise<T> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const v = await probe();
    if (cond(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: last ${JSON.stringify(v)}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** What the store holds for `id` on the one relay it has a token for. */
function stored(home: string, id: string): any {
  const file = JSON.parse(readFileSync(join(home, 'agents', `${id}.json`), 'utf8'));
  return Object.values(file.relays)[0];
}

// ---------------------------------------------------------------------------------------------

t.test('the bin: --help, a real command, and exit 3 when the relay is unreachable', async (t) => {
  const help = await runBin(t, ['--help']);
  t.equal(help.code, 0, '--help exits 0');
  t.match(help.stdout, /^Usage: agent-relay \[options\] \[command\]/);
  for (const command of ['register', 'agents', 'status', 'send', 'inbox', 'search', 'threads', 'claim', 'tasks', 'task', 'event', 'tail', 'monitor']) {
    t.match(help.stdout, new RegExp(`\\n  ${command}\\b`), `--help lists ${command}`);
  }

  const dir = t.testdir();
  const relay = await startRelay(t, {}, { dir });
  const home = join(dir, 'home');
  const reg = await runBin(t, ['register', '--id', 'bin-agent', '--tags', 'bin', '--json'], { AGENT_RELAY_URL: relay.url, AGENT_RELAY_HOME: home });
  t.equal(reg.code, 0, 'register through the bin exits 0', { stderr: reg.stderr });
  const result = JSON.parse(reg.stdout);
  t.equal(result.agent.id, 'bin-agent');
  t.equal(stored(home, 'bin-agent').token, result.agentToken, 'the bin stored the token in AGENT_RELAY_HOME');
  const listed = await rpc(relay, 'agent/list', {});
  t.match(listed.agents, [{ id: 'bin-agent', tags: ['bin'], client: 'cli' }]);

  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  const down = await runBin(t, ['status'], { AGENT_RELAY_URL: `http://127.0.0.1:${port}`, AGENT_RELAY_HOME: home });
  t.equal(down.code, 3, 'an unreachable relay exits 3');
  t.equal(down.stdout, '');
  t.match(down.stderr, `relay not reachable at http://127.0.0.1:${port}`);
  t.match(down.stderr, /start it with agent-relay serve/);
});

t.test('tail --json prints a JSON line per message, agent and task as they happen; SIGTERM stops it', async (t) => {
  const dir = t.testdir();
  const relay = await startRelay(t, {}, { dir });
  const env = { AGENT_RELAY_URL: relay.url, AGENT_RELAY_HOME: join(dir, 'home') };
  await cliJson(t, env, 'register', '--id', 'alice');
  const before = (await cliJson(t, env, 'send', 'broadcast', 'sent before tail started')).message;

  // --since 0 replays what came before; the replay and the live subscription are one step on the
  // relay, so once the first line is out every later change is followed.
  const tail = new Child(t, ['tail', '--json', '--since', '0'], env);
  const parsed = () => tail.lines.map((l) => JSON.parse(l));
  await tail.waitFor((lines) => lines.length >= 1, 'the replayed message');
  t.same(parsed()[0], { kind: 'message', message: before }, 'the earlier message, replayed');

  await cliJson(t, env, 'register', '--id', 'newcomer');
  await tail.waitFor(() => parsed().some((l) => l.kind === 'agent' && l.agent.id === 'newcomer'), 'an agent line');
  const agentLine = parsed().find((l) => l.kind === 'agent' && l.agent.id === 'newcomer');
  t.match(agentLine.agent, { id: 'newcomer', status: 'online' });

  const work = await cliJson(t, env, 'send', '--as', 'alice', 'broadcast', 'live work', '--claimable');
  await tail.waitFor(() => parsed().some((l) => l.kind === 'message' && l.message.id === work.message.id), 'the live message');
  t.same(parsed().find((l) => l.kind === 'message' && l.message.id === work.message.id).message, work.message);
  await tail.waitFor(() => parsed().some((l) => l.kind === 'task' && l.task.id === work.task.id), 'a task line');
  t.match(
    parsed().find((l) => l.kind === 'task' && l.task.id === work.task.id),
    { task: { id: work.task.id, status: 'open' }, event: { kind: 'task.created', taskId: work.task.id } },
  );

  await cliJson(t, env, 'claim', '--as', 'newcomer', String(work.task.id));
  await tail.waitFor(() => parsed().some((l) => l.kind === 'task' && l.event.kind === 'task.claimed'), 'the claim');
  t.match(
    parsed().find((l) => l.kind === 'task' && l.event.kind === 'task.claimed'),
    { task: { id: work.task.id, status: 'claimed', claimedBy: 'newcomer' }, event: { agentId: 'newcomer' } },
  );

  const exit = await tail.stop();
  t.same(exit, { code: 0, signal: null }, 'SIGTERM ends tail cleanly');
  t.ok(
    tail.lines.every((l) => {
      try {
        return typeof JSON.parse(l).kind === 'string';
      } catch {
        return false;
      }
    }),
    'every stdout line is one JSON object with a kind',
  );
  t.equal(tail.stderr, '', '--json keeps stderr quiet');
});

t.test('monitor --as X prints a line per incoming message, acknowledges it, and resumes after a restart', async (t) => {
  const dir = t.testdir();
  const relay = await startRelay(t, {}, { dir });
  const home = join(dir, 'home');
  const env = { AGENT_RELAY_URL: relay.url, AGENT_RELAY_HOME: home };
  await cliJson(t, env, 'register', '--id', 'alice');
  await cliJson(t, env, 'register', '--id', 'bob');
  const bob = { agentId: 'bob', agentToken: stored(home, 'bob').token };
  const connected = () =>
    eventually(
      () => rpc(relay, 'agent/list', {}),
      (r) => r.agents.some((a: any) => a.id === 'bob' && a.connected),
      'the monitor to hold its WebSocket',
    );
  const reply = (id: number) => `(reply: agent-relay send --as bob --reply-to ${id} alice "...")`;

  const monitor = new Child(t, ['monitor', '--as', 'bob'], env);
  await connected();
  const m1 = (await cliJson(t, env, 'send', '--as', 'alice', 'bob', 'hello monitor')).message;
  const m2 = await cliJson(t, env, 'send', '--as', 'alice', 'bob', 'take this\njob', '--claimable', '--channel', 'ops');
  await monitor.waitFor((lines) => lines.length >= 2, 'two message lines');
  t.same(monitor.lines, [
    `relay message #${m1.id} from alice: hello monitor ${reply(m1.id)}`,
    `relay message #${m2.message.id} from alice in ops (claimable: agent-relay claim --as bob ${m2.task.id}): take this job ${reply(m2.message.id)}`,
  ]);
  // The printed claim hint is a command that works, and its claim token is stored next to the cursor.
  t.equal((await cliJson(t, env, 'claim', '--as', 'bob', String(m2.task.id))).task.claimedBy, 'bob');
  // Each printed message is acknowledged as injected.
  await eventually(
    () => rpc(relay, 'message/get', { id: m1.id, ...bob }),
    (r) => r.deliveries.some((d: any) => d.agentId === 'bob' && d.state === 'injected'),
    'm1 acknowledged as injected',
  );

  // The monitor records its cursor after the claim: the claim token must survive that write.
  const m3 = (await cliJson(t, env, 'send', '--as', 'alice', 'bob', 'after the claim')).message;
  await monitor.waitFor((lines) => lines.length >= 3, 'the third message line');
  t.equal(monitor.lines[2], `relay message #${m3.id} from alice: after the claim ${reply(m3.id)}`);
  t.same(await monitor.stop(), { code: 0, signal: null }, 'SIGTERM ends monitor cleanly');
  t.equal(stored(home, 'bob').cursor, m3.id, 'the last printed message id is remembered');
  t.equal(stored(home, 'bob').claims?.[m2.task.id], 1, "the monitor's write kept the claim made meanwhile");
  const update = await cli(env, 'task', 'update', '--as', 'bob', String(m2.task.id), '--progress', '50');
  t.equal(update.code, EXIT.ok, 'so task update still finds the claim token', { stderr: update.err });

  // A message while no monitor runs; the next monitor prints it first and nothing it already printed.
  const m4 = (await cliJson(t, env, 'send', '--as', 'alice', 'bob', 'while you were away')).message;
  const again = new Child(t, ['monitor', '--as', 'bob'], env);
  await again.waitFor((lines) => lines.length >= 1, 'the missed message');
  t.equal(again.lines[0], `relay message #${m4.id} from alice: while you were away ${reply(m4.id)}`);
  await connected();
  const m5 = (await cliJson(t, env, 'send', '--as', 'alice', 'bob', 'and a live one')).message;
  await again.waitFor((lines) => lines.length >= 2, 'the live message after resuming');
  t.same(again.lines, [`relay message #${m4.id} from alice: while you were away ${reply(m4.id)}`, `relay message #${m5.id} from alice: and a live one ${reply(m5.id)}`]);
  t.same(await again.stop(), { code: 0, signal: null });
  t.equal(stored(home, 'bob').cursor, m5.id);

  const noIdentity = await runBin(t, ['monitor'], env);
  t.equal(noIdentity.code, 2, 'monitor without --as is a usage error and does not hang');
  t.match(noIdentity.stderr, /pass --as ID/);
});

t.test('tail and inbox --follow carry on across a relay restart (same address, same database), printing nothing twice', async (t) => {
  const dir = t.testdir();
  const dbPath = join(dir, 'relay.db');
  const first = await spawnRelay(t, { dbPath });
  // The followers keep one address; the restarted relay gets a new port behind it (a fixed port
  // would sit in TIME_WAIT for a minute after the first relay's sockets close).
  const proxy = await startTcpProxy(t, first.port);
  const env = { AGENT_RELAY_URL: proxy.url, AGENT_RELAY_HOME: join(dir, 'home') };
  await cliJson(t, env, 'register', '--id', 'alice');
  await cliJson(t, env, 'register', '--id', 'bob');
  const m1 = (await cliJson(t, env, 'send', '--as', 'alice', 'bob', 'before the restart')).message;

  const tail = new Child(t, ['tail', '--json', '--since', '0'], env);
  const follow = new Child(t, ['inbox', '--follow', '--json', '--as', 'bob'], env);
  const tailed = () =>
    tail.lines
      .map((l) => JSON.parse(l))
      .filter((l) => l.kind === 'message')
      .map((l) => l.message.id);
  const followed = () => follow.lines.map((l) => JSON.parse(l).id);
  await tail.waitFor(() => tailed().includes(m1.id), 'the first message in tail');
  await follow.waitFor(() => followed().includes(m1.id), 'the first message in inbox --follow');

  proxy.retarget(0);
  t.equal(await first.stop(), 0, 'the relay stops cleanly');
  const second = await spawnRelay(t, { dbPath });
  proxy.retarget(second.port);
  const m2 = (await cliJson(t, env, 'send', '--as', 'alice', 'bob', 'after the restart')).message;
  await tail.waitFor(() => tailed().includes(m2.id), 'the message sent after the restart, in tail');
  await follow.waitFor(() => followed().includes(m2.id), 'the message sent after the restart, in inbox --follow');
  const m3 = (await cliJson(t, env, 'send', '--as', 'alice', 'bob', 'and one more')).message;
  await tail.waitFor(() => tailed().includes(m3.id), 'one more in tail');
  await follow.waitFor(() => followed().includes(m3.id), 'one more in inbox --follow');
  t.same(tailed(), [m1.id, m2.id, m3.id], 'tail printed each message once, in order');
  t.same(followed(), [m1.id, m2.id, m3.id], 'inbox --follow printed each message once, in order');
  t.same(await tail.stop(), { code: 0, signal: null });
  await follow.stop();
  t.equal(tail.stderr + follow.stderr, '', 'with --json, stderr stays quiet through the reconnect');
});
