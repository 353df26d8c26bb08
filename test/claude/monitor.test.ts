import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { trackChild, untrackChild } from '../helpers/child.js';
import { startRelay } from '../helpers/relay.js';
import { connectAgent, WsRpc } from '../helpers/ws-client.js';
import { expectedAgentId, hookEnv, logLines, monitorCommand, projectDir, runHook, type Session } from './fixtures/harness.js';
import { waitFor } from '../helpers/wait.js';

const LINE_WITHIN_MS = 1000;

interface Line {
  text: string;
  at: number;
}

interface Monitor {
  /** The `sh -c` Claude Code would start. */
  shPid: number;
  lines: Line[];
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  running: () => boolean;
  /** The launcher's process (the CLI), the child of the shell. */
  cliPid: () => number;
  /** Close the reading end of its stdout, as Claude's death does. */
  closeStdout: () => void;
}

/** Start the plugin's monitor command as Claude Code does: `sh -c COMMAND` in the session's cwd. */
function startMonitor(t: Test, s: Session): Monitor {
  const child = spawn('sh', ['-c', monitorCommand()], { cwd: s.cwd, env: s.env, stdio: ['ignore', 'pipe', 'pipe'] });
  const shPid = child.pid;
  if (shPid === undefined) throw new Error('monitor did not start');
  trackChild(shPid);
  const lines: Line[] = [];
  let partial = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    const at = Date.now();
    partial += d;
    const parts = partial.split('\n');
    partial = parts.pop() ?? '';
    for (const text of parts) lines.push({ text, at });
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  let done = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('close', (code, signal) => {
      done = true;
      untrackChild(shPid);
      resolve({ code, signal });
    }),
  );
  const children = (): number[] => {
    try {
      return readFileSync(`/proc/${shPid}/task/${shPid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    } catch {
      return [];
    }
  };
  let cli: number | null = null;
  const m: Monitor = {
    shPid,
    lines,
    stderr: () => err,
    exited,
    running: () => !done,
    closeStdout: () => child.stdout.destroy(),
    cliPid: () => {
      if (cli === null) {
        const kids = children();
        if (kids.length !== 1) throw new Error(`expected the shell to have one child, found ${kids.length}`);
        cli = kids[0]!;
        trackChild(cli);
      }
      return cli;
    },
  };
  t.teardown(async () => {
    if (!m.running()) return;
    for (const pid of [cli ?? children()[0], shPid]) {
      if (pid === undefined) continue;
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    await exited;
  });
  return m;
}

/** SIGTERM the monitor's process by pid (the shell ends with it) and wait for both to exit. */
async function stopMonitor(t: Test, m: Monitor): Promise<void> {
  const pid = m.cliPid();
  const sent = Date.now();
  process.kill(pid, 'SIGTERM');
  const result = await Promise.race([m.exited, new Promise<null>((r) => setTimeout(() => r(null), 10_000))]);
  t.ok(result, `the monitor exits after SIGTERM (${Date.now() - sent} ms)`);
  t.equal(result?.code, 0, 'with exit code 0');
  untrackChild(pid);
  let gone = false;
  try {
    process.kill(pid, 0);
  } catch {
    gone = true;
  }
  t.ok(gone, `process ${pid} is gone`);
}

async function agentNamed(rpc: WsRpc, id: string): Promise<Record<string, any> | undefined> {
  return (await rpc.call('agent/list', {})).agents.find((a: any) => a.id === id);
}

/** Whitespace runs flattened to one space, clipped to `max` characters with an ellipsis. */
function clipped(body: string, max: number): string {
  const flat = body.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/**
 * Send each body from `sender`, and for each wait for the monitor's line: one line per message,
 * naming the sender and id with the clipped body, within LINE_WITHIN_MS of the send's acknowledgement.
 */
async function sendAndSee(t: Test, sender: { rpc: WsRpc; id: string }, to: string, m: Monitor, bodies: string[], observer: WsRpc): Promise<number[]> {
  const latencies: number[] = [];
  for (const body of bodies) {
    const before = m.lines.length;
    const sent = (await sender.rpc.call('message/send', { to, body })).message;
    const ackAt = Date.now();
    const mine = () => m.lines.slice(before).filter((l) => l.text.includes(`#${sent.id} `));
    await waitFor(() => mine().length > 0, `the monitor's line for #${sent.id}`, 5000, 5);
    const line = mine()[0]!;
    const latency = line.at - ackAt;
    latencies.push(latency);
    t.ok(latency < LINE_WITHIN_MS, `#${sent.id}: line ${latency} ms after the send was acknowledged (< ${LINE_WITHIN_MS})`);
    t.match(line.text, `relay message #${sent.id} from ${sender.id}: `, `#${sent.id}: the line names id and sender`);
    t.ok(line.text.includes(`: ${clipped(body, 200)} (reply: agent-relay send --as ${to} --reply-to ${sent.id} ${sender.id}`), `#${sent.id}: the (clipped) body, then how to reply`);
    await waitFor(async () => (await observer.call('message/get', { id: sent.id })).deliveries.find((d: any) => d.agentId === to)?.state === 'injected', `#${sent.id} injected`, 3000);
    t.pass(`#${sent.id}: delivery state is injected`);
  }
  // Give a duplicate a moment to show up, then: exactly one line per message, and nothing else.
  await new Promise((r) => setTimeout(r, 200));
  return latencies;
}

function newSession(dir: string, relayUrl: string, name: string, id: string): Session {
  const home = join(dir, 'relay-home');
  return { id, home, cwd: projectDir(join(dir, 'projects'), name), env: hookEnv({ AGENT_RELAY_URL: relayUrl, AGENT_RELAY_HOME: home }) };
}

t.test('the monitor prints one line per message within a second, acks it injected, and stops on SIGTERM', async (t) => {
  const relay = await startRelay(t);
  const dir = t.testdir();
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const planner = await connectAgent(t, relay.wsUrl, { id: 'planner' });
  const s = newSession(dir, relay.url, 'svc', 'monitor-session-1');
  const id = expectedAgentId(s.cwd, s.id);
  t.equal((await runHook(t, 'SessionStart', s)).code, 0, 'SessionStart ran');
  const registered = await agentNamed(observer, id);
  t.equal(registered?.connected, false, 'before the monitor: registered over HTTP, no live connection');

  const m = startMonitor(t, s);
  const startedAt = Date.now();
  await waitFor(async () => (await agentNamed(observer, id))?.connected === true, 'the monitor to connect', 15_000, 50);
  t.comment(`monitor connected ${Date.now() - startedAt} ms after it was started`);
  const connected = await agentNamed(observer, id);
  t.equal(connected?.status, 'online');
  for (const k of ['label', 'tags', 'capabilities', 'channels', 'client', 'cwd', 'meta', 'registeredAt'] as const) {
    t.same(connected?.[k], registered?.[k], `the monitor's connection keeps the session's ${k}`);
  }

  const bodies = ['short: please look at the failing deploy', 'multi\nline\n\n   body   with\tspaces', `long: ${'0123456789'.repeat(60)} TAIL-NOT-SHOWN`];
  const latencies = await sendAndSee(t, planner, id, m, bodies, observer);
  t.equal(m.lines.length, bodies.length, 'exactly one line per message');
  t.notMatch(m.lines.map((l) => l.text).join('\n'), 'TAIL-NOT-SHOWN', 'a long body is clipped');
  t.comment(`latency, send acknowledged → line on stdout: ${latencies.map((l) => `${l} ms`).join(', ')}`);

  // A message for someone else never reaches this session's monitor.
  const bystander = await connectAgent(t, relay.wsUrl, { id: 'bystander' });
  const other = (await planner.rpc.call('message/send', { to: bystander.id, body: 'not for claude' })).message;
  const last = (await planner.rpc.call('message/send', { to: id, body: 'last one' })).message;
  await waitFor(() => m.lines.some((l) => l.text.includes(`#${last.id} `)), 'the last line', 5000, 5);
  t.notOk(
    m.lines.some((l) => l.text.includes(`#${other.id} `)),
    "another agent's message is not printed",
  );

  await stopMonitor(t, m);
  t.equal(m.stderr(), '', 'nothing on stderr');
  await waitFor(async () => (await agentNamed(observer, id))?.connected === false, 'the connection to close', 5000, 50);
  t.pass('after SIGTERM the agent has no live connection');
  t.same(logLines(s.home), [], 'no problem was logged');
});

t.test('a monitor started before SessionStart waits, then follows the agent SessionStart registers', async (t) => {
  const relay = await startRelay(t);
  const dir = t.testdir();
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const ops = await connectAgent(t, relay.wsUrl, { id: 'ops' });
  const s = newSession(dir, relay.url, 'early-bird', 'monitor-session-2');
  const id = expectedAgentId(s.cwd, s.id);

  const m = startMonitor(t, s);
  // Long enough for the CLI to start and look for the session more than once.
  await new Promise((r) => setTimeout(r, 2500));
  t.ok(m.running(), 'the monitor keeps waiting for a session');
  t.same(m.lines, [], 'and prints nothing meanwhile');
  t.same(
    (await observer.call('agent/list', {})).agents.map((a: any) => a.id),
    ['ops'],
    'it registers nothing by itself',
  );

  t.equal((await runHook(t, 'SessionStart', s)).code, 0, 'SessionStart ran');
  const registeredAt = Date.now();
  await waitFor(async () => (await agentNamed(observer, id))?.connected === true, 'the monitor to follow the new agent', 10_000, 50);
  t.comment(`monitor connected ${Date.now() - registeredAt} ms after SessionStart`);

  const latencies = await sendAndSee(t, ops, id, m, ['hello from ops', 'second: deploy window opens at 14:00'], observer);
  t.equal(m.lines.length, 2, 'exactly one line per message');
  t.comment(`latency, send acknowledged → line on stdout: ${latencies.map((l) => `${l} ms`).join(', ')}`);

  await stopMonitor(t, m);
  t.same(logLines(s.home), [], 'no problem was logged');
});

t.test('a monitor told CLAUDE_CODE_SESSION_ID follows that session, not the newest one in its folder', async (t) => {
  const relay = await startRelay(t);
  const dir = t.testdir();
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const ops = await connectAgent(t, relay.wsUrl, { id: 'ops' });
  // Two sessions in one folder; Claude Code gives each monitor its own session id in the environment.
  const mine = newSession(dir, relay.url, 'shared', 'a1b2c3d4-mine');
  const other = newSession(dir, relay.url, 'shared', 'e5f6a7b8-other');
  const mineId = expectedAgentId(mine.cwd, mine.id);
  const otherId = expectedAgentId(other.cwd, other.id);
  t.not(mineId, otherId, 'two agents');
  const m = startMonitor(t, { ...mine, env: { ...mine.env, CLAUDE_CODE_SESSION_ID: mine.id } });
  await new Promise((r) => setTimeout(r, 1500));
  // The other session's SessionStart wins the race: by folder alone the monitor would follow it.
  t.equal((await runHook(t, 'SessionStart', other)).code, 0, "the other session's SessionStart ran first");
  await new Promise((r) => setTimeout(r, 1500));
  t.notOk((await agentNamed(observer, otherId))?.connected, 'the monitor did not take the other session');
  t.equal((await runHook(t, 'SessionStart', mine)).code, 0, 'SessionStart of its own session ran');
  await waitFor(async () => (await agentNamed(observer, mineId))?.connected === true, 'the monitor to follow its own session', 10_000, 50);
  t.notOk((await agentNamed(observer, otherId))?.connected, 'and still not the other session');
  const latencies = await sendAndSee(t, ops, mineId, m, ['for this session'], observer);
  t.equal(m.lines.length, 1, 'one line');
  t.comment(`latency: ${latencies.join(', ')} ms`);
  await stopMonitor(t, m);
  t.same(logLines(mine.home), [], 'no problem was logged');
});

t.test('one path per message: what the monitor printed the hooks skip, what a hook handed over the monitor skips', async (t) => {
  const relay = await startRelay(t);
  const dir = t.testdir();
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const lead = await connectAgent(t, relay.wsUrl, { id: 'lead' });
  const s0 = newSession(dir, relay.url, 'once', 'c0ffee01-once');
  const s: Session = { ...s0, env: { ...s0.env, CLAUDE_CODE_SESSION_ID: s0.id } };
  const id = expectedAgentId(s.cwd, s.id);
  t.equal((await runHook(t, 'SessionStart', s)).code, 0, 'SessionStart ran');
  const send = async (body: string) => (await lead.rpc.call('message/send', { to: id, body })).message as { id: number };

  // 1. The session is idle; the monitor prints a message, and its line wakes the session: Claude Code
  //    fires UserPromptSubmit with the notification as the prompt. The hook must not hand it over again.
  let m = startMonitor(t, s);
  await waitFor(async () => (await agentNamed(observer, id))?.connected === true, 'the monitor to connect', 15_000, 50);
  const a = await send('A: printed by the monitor');
  await waitFor(() => m.lines.some((l) => l.text.includes(`#${a.id} `)), `the line for #${a.id}`, 5000, 5);
  const woke = await runHook(t, 'UserPromptSubmit', s, { prompt: m.lines.find((l) => l.text.includes(`#${a.id} `))!.text });
  t.equal(woke.code, 0);
  t.equal(woke.stdout, '', `UserPromptSubmit woken by the line does not hand #${a.id} over again`);
  t.equal((await observer.call('message/get', { id: a.id })).deliveries.find((d: any) => d.agentId === id)?.state, 'read', `and marks #${a.id} (printed by the monitor) read`);
  // 2. Mid-turn: the monitor prints, then Stop runs before the notification is shown. Stop skips it.
  const b = await send('B: printed mid-turn');
  await waitFor(() => m.lines.some((l) => l.text.includes(`#${b.id} `)), `the line for #${b.id}`, 5000, 5);
  const stopped = await runHook(t, 'Stop', s);
  t.equal(stopped.stdout, '', `Stop does not hand over #${b.id}, which the monitor printed`);
  await stopMonitor(t, m);

  // 3. A hook hands a message over while no monitor runs; a monitor started later replays from its cursor
  //    and must not print it again. A message after that is printed once.
  const c = await send('C: handed over by Stop');
  const handed = await runHook(t, 'Stop', s);
  t.match(handed.stdout, `#${c.id} from lead`, `Stop hands #${c.id} over`);
  m = startMonitor(t, s);
  await waitFor(async () => (await agentNamed(observer, id))?.connected === true, 'the second monitor to connect', 15_000, 50);
  const d = await send('D: after the restart');
  await waitFor(() => m.lines.some((l) => l.text.includes(`#${d.id} `)), `the line for #${d.id}`, 5000, 5);
  await new Promise((r) => setTimeout(r, 300));
  t.notOk(
    m.lines.some((l) => l.text.includes(`#${c.id} `)),
    `the monitor does not print #${c.id}, which Stop handed over`,
  );
  t.equal(m.lines.filter((l) => l.text.includes(`#${d.id} `)).length, 1, `#${d.id} printed once`);
  const later = await runHook(t, 'UserPromptSubmit', s, { prompt: 'next task' });
  t.equal(later.stdout, '', `the next prompt does not hand over #${d.id} (printed) or #${c.id} (handed over)`);
  for (const x of [a, b, c, d]) t.equal((await observer.call('message/get', { id: x.id })).deliveries.find((dd: any) => dd.agentId === id)?.state, 'read', `#${x.id} is read`);
  const end = await runHook(t, 'SessionEnd', s, { reason: 'prompt_input_exit' });
  t.equal(end.code, 0, 'SessionEnd (/exit) ran');
  await stopMonitor(t, m);
  t.same(logLines(s.home), [], 'no problem was logged');
});

t.test("a message sent after SessionStart but before the monitor connects is printed when it does (SessionStart stores the relay's cursor)", async (t) => {
  const relay = await startRelay(t);
  const dir = t.testdir();
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const lead = await connectAgent(t, relay.wsUrl, { id: 'lead' });
  const s0 = newSession(dir, relay.url, 'gap', 'feed0001-gap');
  const s: Session = { ...s0, env: { ...s0.env, CLAUDE_CODE_SESSION_ID: s0.id } };
  const id = expectedAgentId(s.cwd, s.id);
  t.equal((await runHook(t, 'SessionStart', s)).code, 0, 'SessionStart ran');
  const early = (await lead.rpc.call('message/send', { to: id, body: 'before the monitor' })).message;
  const m = startMonitor(t, s);
  await waitFor(() => m.lines.some((l) => l.text.includes(`#${early.id} `)), `the line for #${early.id}`, 15_000, 20);
  t.pass(`#${early.id}, sent before the monitor started, is printed`);
  await waitFor(async () => (await observer.call('message/get', { id: early.id })).deliveries.find((d: any) => d.agentId === id)?.state === 'injected', 'injected', 3000);
  t.equal(m.lines.length, 1, 'one line');
  await stopMonitor(t, m);
  t.same(logLines(s.home), [], 'no problem was logged');
});

t.test('a monitor whose reader is gone (Claude killed) gives the message back, unacknowledged, and stops; the next prompt hands it over once', async (t) => {
  const relay = await startRelay(t);
  const dir = t.testdir();
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const lead = await connectAgent(t, relay.wsUrl, { id: 'lead' });
  const s0 = newSession(dir, relay.url, 'orphan', 'dead0001-orphan');
  const s: Session = { ...s0, env: { ...s0.env, CLAUDE_CODE_SESSION_ID: s0.id } };
  const id = expectedAgentId(s.cwd, s.id);
  t.equal((await runHook(t, 'SessionStart', s)).code, 0, 'SessionStart ran');
  const m = startMonitor(t, s);
  await waitFor(async () => (await agentNamed(observer, id))?.connected === true, 'the monitor to connect', 15_000, 50);
  m.closeStdout();
  const lost = (await lead.rpc.call('message/send', { to: id, body: 'nobody reads this line' })).message;
  const exit = await Promise.race([m.exited, new Promise<null>((r) => setTimeout(() => r(null), 10_000))]);
  // Its stderr rides along: it failed once under load (exit 1), not reproduced alone.
  t.equal(exit?.code, 0, 'the monitor exits 0 once a line cannot be written', { stderr: m.stderr() });
  await waitFor(async () => (await agentNamed(observer, id))?.connected === false, 'the connection to close', 5000, 50);
  t.notOk(existsSync(join(s.home, 'claude', 'delivered', encodeURIComponent(id), String(lost.id))), 'the claim was given back');
  t.not((await observer.call('message/get', { id: lost.id })).deliveries.find((d: any) => d.agentId === id)?.state, 'injected', 'not acknowledged as injected');
  const next = await runHook(t, 'UserPromptSubmit', s, { prompt: 'carry on' });
  t.equal(next.stdout.split(`Relay message #${lost.id} from lead`).length - 1, 1, `the next prompt hands #${lost.id} over once`);
  t.equal((await observer.call('message/get', { id: lost.id })).deliveries.find((d: any) => d.agentId === id)?.state, 'read', 'and it is read');
  t.same(logLines(s.home), [], 'no problem was logged');
});

t.test('a monitor whose reader is gone stops by itself within seconds, with no message to print (its stdout socket is probed)', async (t) => {
  const relay = await startRelay(t);
  const dir = t.testdir();
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const s0 = newSession(dir, relay.url, 'probe', 'dead0003-probe');
  const s: Session = { ...s0, env: { ...s0.env, CLAUDE_CODE_SESSION_ID: s0.id } };
  const id = expectedAgentId(s.cwd, s.id);
  t.equal((await runHook(t, 'SessionStart', s)).code, 0, 'SessionStart ran');
  const m = startMonitor(t, s);
  await waitFor(async () => (await agentNamed(observer, id))?.connected === true, 'the monitor to connect', 15_000, 50);
  const closed = Date.now();
  m.closeStdout();
  const exit = await Promise.race([m.exited, new Promise<null>((r) => setTimeout(() => r(null), 10_000))]);
  t.equal(exit?.code, 0, `the monitor exits 0 (${Date.now() - closed} ms after its reader went)`);
  await waitFor(async () => (await agentNamed(observer, id))?.connected === false, 'the connection to close', 5000, 50);
  t.pass('and the agent has no live connection');
  t.same(logLines(s.home), [], 'no problem was logged');
});
