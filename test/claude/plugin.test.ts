import { accessSync, constants, cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import t, { type Test } from 'tap';
import { MAX_CONSECUTIVE_BLOCKS } from '../../adapters/claude/hooks.js';
import { startRelay } from '../helpers/relay.js';
import { connectAgent, WsRpc } from '../helpers/ws-client.js';
import {
  closedPort,
  expectedAgentId,
  hookCommand,
  hookEnv,
  httpRpc,
  logLines,
  PLUGIN_ROOT,
  projectDir,
  readJson,
  runHook,
  substitute,
  type HookEvent,
  type HookRun,
  type Session,
} from './fixtures/harness.js';

/** `sh -c COMMAND` as Claude Code's Bash tool runs it: exit code and output. */
function runShell(command: string, cwd: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', command], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const REPO = join(PLUGIN_ROOT, '..', '..', '..');
const EVENTS: HookEvent[] = ['SessionStart', 'UserPromptSubmit', 'Stop', 'SessionEnd'];

/** A hook run that succeeded the way Claude Code needs: exit 0, no signal. */
function exitedCleanly(t: Test, run: HookRun, what: string): void {
  t.equal(run.code, 0, `${what}: exit code 0 (stderr: ${run.stderr.trim() || 'none'})`);
  t.equal(run.signal, null, `${what}: not killed`);
}

/** Parse a hook's stdout as one JSON document. */
function json(t: Test, run: HookRun, what: string): any {
  try {
    return JSON.parse(run.stdout);
  } catch {
    t.fail(`${what}: stdout is not JSON: ${JSON.stringify(run.stdout)}`);
    return {};
  }
}

function additionalContext(t: Test, run: HookRun, event: HookEvent): string {
  const out = json(t, run, event);
  t.same(Object.keys(out), ['hookSpecificOutput'], `${event}: only hookSpecificOutput`);
  t.equal(out.hookSpecificOutput?.hookEventName, event, `${event}: hookEventName`);
  t.type(out.hookSpecificOutput?.additionalContext, 'string', `${event}: additionalContext is text`);
  return out.hookSpecificOutput?.additionalContext ?? '';
}

async function agentNamed(rpc: WsRpc, id: string): Promise<Record<string, any> | undefined> {
  const { agents } = await rpc.call('agent/list', {});
  return agents.find((a: any) => a.id === id);
}

async function deliveryState(rpc: WsRpc, messageId: number, agentId: string): Promise<string | undefined> {
  const { deliveries } = await rpc.call('message/get', { id: messageId });
  return deliveries.find((d: any) => d.agentId === agentId)?.state;
}

function newSession(dir: string, relayUrl: string, name: string, id: string, opts: { projectFile?: Record<string, unknown>; env?: Record<string, string> } = {}): Session {
  const home = join(dir, 'relay-home');
  const cwd = projectDir(join(dir, 'projects'), name, opts.projectFile);
  return { id, cwd, home, env: hookEnv({ AGENT_RELAY_URL: relayUrl, AGENT_RELAY_HOME: home, ...opts.env }) };
}

t.test('the plugin files are valid and point at an existing executable launcher', async (t) => {
  const manifest = readJson(join(PLUGIN_ROOT, '.claude-plugin', 'plugin.json'));
  t.type(manifest.name, 'string');
  t.match(manifest.name, /^[a-z0-9]+(-[a-z0-9]+)*$/, 'plugin name is kebab-case');

  const hooks = readJson(join(PLUGIN_ROOT, 'hooks', 'hooks.json'));
  t.same(Object.keys(hooks.hooks).sort(), [...EVENTS].sort(), 'one entry for each event the plugin handles');
  const verbs: Record<HookEvent, string> = { SessionStart: 'session-start', UserPromptSubmit: 'user-prompt-submit', Stop: 'stop', SessionEnd: 'session-end' };
  for (const event of EVENTS) {
    const groups = hooks.hooks[event];
    t.ok(Array.isArray(groups) && groups.length === 1, `${event}: one matcher group`);
    const [hook] = groups[0].hooks;
    t.equal(hook.type, 'command', `${event}: a command hook (SessionStart cannot use http hooks)`);
    t.ok(typeof hook.timeout === 'number' && hook.timeout > 0 && hook.timeout <= 60, `${event}: a bounded timeout`);
    t.match(hook.command, /\$\{CLAUDE_PLUGIN_ROOT\}/, `${event}: command is relative to the plugin root`);
    const cmd = hookCommand(event);
    const m = /^"([^"]+)" hook ([a-z-]+)$/.exec(cmd);
    t.ok(m, `${event}: command is "SCRIPT" hook VERB (${cmd})`);
    if (!m) continue;
    t.equal(m[2], verbs[event], `${event}: runs hook ${verbs[event]}`);
    t.ok(statSync(m[1]).isFile(), `${event}: ${m[1]} exists`);
    t.doesNotThrow(() => accessSync(m[1], constants.X_OK), `${event}: ${m[1]} is executable`);
  }

  const monitors = readJson(join(PLUGIN_ROOT, 'monitors', 'monitors.json'));
  t.ok(Array.isArray(monitors) && monitors.length >= 1, 'monitors.json is a non-empty array');
  for (const m of monitors) {
    t.same(Object.keys(m).sort(), ['command', 'description', 'name'], 'monitor entry is {name, command, description}');
    for (const k of ['name', 'command', 'description']) t.ok(typeof m[k] === 'string' && m[k].length > 0, `monitor ${k} is non-empty text`);
    const script = /^"([^"]+)" claude-monitor$/.exec(substitute(m.command));
    t.ok(script, `monitor command runs the launcher's claude-monitor (${m.command})`);
    if (script) t.doesNotThrow(() => accessSync(script[1], constants.X_OK), 'the monitor launcher is executable');
  }
});

t.test('SessionStart registers the session as an agent and tells Claude who it is; resume keeps the agent', async (t) => {
  const relay = await startRelay(t);
  const dir = t.testdir();
  const reviewer = await connectAgent(t, relay.wsUrl, { id: 'reviewer-1', label: 'Code Reviewer', tags: ['review'] });
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const s = newSession(dir, relay.url, 'Payments API', '3F2A9C1E-7b4d-4e8a-9c2f-1a2b3c4d5e6f', {
    projectFile: { label: 'payments bot', tags: ['backend'], capabilities: ['typescript', 'review'], channels: ['dev', 'payments'] },
    env: { AGENT_RELAY_TAGS: 'night-shift, urgent' },
  });
  const id = expectedAgentId(s.cwd, s.id);
  t.equal(id.split('-claude-')[1], 'payments-api-3f2a9c1e', 'expected id is host-claude-CWDNAME-SESSION8');

  const run = await runHook(t, 'SessionStart', s);
  exitedCleanly(t, run, 'SessionStart');
  const text = additionalContext(t, run, 'SessionStart');
  t.ok(text.length < 10_000, `context stays under Claude's cap (${text.length} chars)`);

  const agent = await agentNamed(observer, id);
  t.ok(agent, `agent ${id} is registered`);
  t.equal(agent?.client, 'claude');
  t.equal(agent?.status, 'online');
  t.equal(agent?.cwd, s.cwd);
  t.equal(agent?.label, 'payments bot', 'label from the project file');
  t.same([...(agent?.tags ?? [])].sort(), ['backend', 'claude', 'night-shift', 'payments-api', 'urgent'], 'tags: claude, the project name, the project file and AGENT_RELAY_TAGS');
  t.same(agent?.capabilities, ['typescript', 'review'], 'capabilities from the project file');
  t.same(agent?.channels, ['dev', 'payments'], 'channels from the project file');
  t.equal(agent?.meta?.sessionId, s.id, 'the session id is kept in meta');

  const tokenFile = join(s.home, 'agents', `${encodeURIComponent(id)}.json`);
  t.equal(statSync(tokenFile).mode & 0o777, 0o600, 'the token file is private (0600)');
  const file = readJson(tokenFile);
  t.equal(file.id, id);
  t.same(Object.keys(file.relays), [relay.url], 'one token, stored for this relay');
  const stored = file.relays[relay.url];
  t.type(stored.token, 'string');
  const asAgent = await httpRpc(relay.url, 'message/list', { agentId: id, agentToken: stored.token, unread: true });
  t.notOk(asAgent.error, 'the stored token authenticates the agent');
  const wrong = await httpRpc(relay.url, 'message/list', { agentId: id, agentToken: `${stored.token}x`, unread: true });
  t.ok(wrong.error, 'a wrong token does not (so the check above means something)');

  t.match(text, `relay agent ${id}`, 'names its own id');
  t.match(text, relay.url, 'names the relay');
  t.match(text, 'reviewer-1', 'names the other online agent');
  t.match(text, 'Code Reviewer', "with the other agent's label");
  for (const cmd of [`agent-relay send --as ${id}`, `agent-relay inbox --as ${id}`, `agent-relay claim --as ${id}`, `agent-relay task update --as ${id}`]) {
    t.match(text, cmd, `explains the command: ${cmd}`);
  }
  t.notMatch(text, new RegExp(`Online agents:[^\\n]*${id}`), 'does not list itself among the others');

  // The reviewer can address the session by the tag the project file gave it.
  const sent = await reviewer.rpc.call('message/send', { to: 'tag:backend', body: 'ping' });
  t.same(sent.recipients, [id], 'a tag from the project file routes to the session');

  // Claude Code resumes the session: same session id, source "resume".
  const resumed = await runHook(t, 'SessionStart', s, { source: 'resume' });
  exitedCleanly(t, resumed, 'SessionStart (resume)');
  const text2 = additionalContext(t, resumed, 'SessionStart');
  t.match(text2, `relay agent ${id}`, 'the resumed session is the same agent');
  t.match(text2, 'unread relay messages', 'and it says messages are waiting');
  t.notMatch(text2, 'No unread relay messages');
  const { agents } = await observer.call('agent/list', {});
  t.equal(agents.filter((a: any) => a.id.includes('-claude-payments-api-')).length, 1, 'no second agent for the same session');
  const again = await agentNamed(observer, id);
  t.equal(again?.registeredAt, agent?.registeredAt, 'the same registration, re-joined');
  const stored2 = readJson(tokenFile).relays[relay.url];
  t.equal(stored2.token, stored.token, 'the stored token is unchanged');
  t.notOk((await httpRpc(relay.url, 'message/list', { agentId: id, agentToken: stored2.token })).error, 'and still valid');
  t.equal(statSync(tokenFile).mode & 0o777, 0o600, 'still 0600');
});

t.test('UserPromptSubmit hands unread messages over once and marks them read; SessionEnd leaves', async (t) => {
  const relay = await startRelay(t);
  const dir = t.testdir();
  const builder = await connectAgent(t, relay.wsUrl, { id: 'builder', label: 'Builder' });
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const s = newSession(dir, relay.url, 'web-app', 'session-ups-0001', { env: { AGENT_RELAY_CAPS: 'deploy, sql' } });
  const id = expectedAgentId(s.cwd, s.id);

  const start = await runHook(t, 'SessionStart', s);
  exitedCleanly(t, start, 'SessionStart');
  t.match(additionalContext(t, start, 'SessionStart'), 'No unread relay messages');
  const agent = await agentNamed(observer, id);
  t.equal(agent?.label, 'claude web-app', 'without a project file: label "claude NAME"');
  t.same(agent?.tags, ['claude', 'web-app'], 'tags: claude and the project name');
  t.same(agent?.capabilities, ['deploy', 'sql'], 'capabilities from AGENT_RELAY_CAPS');

  const short = (await builder.rpc.call('message/send', { to: id, body: 'Build 1432 is green; please review PR #88.' })).message;
  const longBody = `${Array.from({ length: 60 }, (_, i) => `line ${i}: ${'detail '.repeat(6)}`).join('\n')}\nEND-OF-LONG-BODY`;
  const long = (await builder.rpc.call('message/send', { to: id, subject: 'release notes', body: longBody })).message;
  const huge = (await builder.rpc.call('message/send', { to: id, body: `HUGE-START ${'z'.repeat(15_000)} HUGE-END` })).message;
  // Sent after the context is already full: it must wait for the next prompt, not be lost.
  const after = (await builder.rpc.call('message/send', { to: id, body: 'AFTER-THE-FULL-CONTEXT: one more thing' })).message;
  t.ok(longBody.length > 2000, `a long body (${longBody.length} chars)`);

  const prompt = await runHook(t, 'UserPromptSubmit', s);
  exitedCleanly(t, prompt, 'UserPromptSubmit');
  const text = additionalContext(t, prompt, 'UserPromptSubmit');
  for (const m of [short, long, huge]) t.match(text, `#${m.id} from builder`, `message #${m.id}: id and sender`);
  t.match(text, short.body, 'the short body in full');
  t.ok(text.includes(longBody), 'the long, multi-line body in full');
  t.match(text, 'release notes', 'the subject');
  t.match(text, 'HUGE-START', 'the start of the oversized body');
  t.notMatch(text, 'HUGE-END', 'but not all of it');
  t.match(text, `agent-relay threads ${huge.id}`, 'with where to read the rest');
  t.ok(text.length <= 10_000, `context within Claude's ~10,000 character cap (${text.length})`);
  t.match(text, `agent-relay send --as ${id} --reply-to`, 'how to reply');

  for (const m of [short, long, huge]) t.equal(await deliveryState(observer, m.id, id), 'read', `#${m.id} is marked read after the hand-over`);
  t.notMatch(text, 'AFTER-THE-FULL-CONTEXT', 'the context is full: the next message is not in it');
  t.not(await deliveryState(observer, after.id, id), 'read', `so #${after.id} is not marked read`);

  // The next prompt hands over what did not fit, and only that.
  const second = await runHook(t, 'UserPromptSubmit', s, { prompt: 'And then?' });
  exitedCleanly(t, second, 'second UserPromptSubmit');
  const text2 = additionalContext(t, second, 'UserPromptSubmit');
  t.match(text2, `#${after.id} from builder`, 'the message that did not fit comes with the next prompt');
  t.match(text2, after.body);
  for (const m of [short, long, huge]) t.notMatch(text2, `#${m.id} `, `#${m.id} is not handed over again`);
  t.equal(await deliveryState(observer, after.id, id), 'read', `#${after.id} is read now`);
  // The token file keeps one entry per relay (this read `.token`, undefined, and passed only while observers could read any inbox).
  const token = readJson(join(s.home, 'agents', `${encodeURIComponent(id)}.json`)).relays[relay.url].token;
  const unread = await httpRpc(relay.url, 'message/list', { agentId: id, agentToken: token, unread: true });
  t.same(unread.result?.messages, [], 'the inbox has nothing unread');

  const third = await runHook(t, 'UserPromptSubmit', s, { prompt: 'Anything else?' });
  exitedCleanly(t, third, 'third UserPromptSubmit');
  t.equal(third.stdout, '', 'handed over once, nothing new: the next prompt adds nothing');

  const end = await runHook(t, 'SessionEnd', s);
  exitedCleanly(t, end, 'SessionEnd');
  t.equal(end.stdout, '');
  t.equal((await agentNamed(observer, id))?.status, 'offline', 'the agent is offline after SessionEnd');
  const offline = (await observer.call('event/list', { kind: 'agent.offline' })).events;
  t.ok(
    offline.some((e: any) => e.agentId === id),
    'an agent.offline event was recorded',
  );
  t.same(logLines(s.home), [], 'no problem was logged');
});

t.test('Stop hands waiting messages over as additionalContext (not a block), at most MAX_CONSECUTIVE_BLOCKS times in a row', async (t) => {
  t.ok(MAX_CONSECUTIVE_BLOCKS >= 1 && MAX_CONSECUTIVE_BLOCKS < 8, `bound (${MAX_CONSECUTIVE_BLOCKS}) is under Claude's own limit of 8`);
  const relay = await startRelay(t);
  const dir = t.testdir();
  const lead = await connectAgent(t, relay.wsUrl, { id: 'lead' });
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const s = newSession(dir, relay.url, 'worker', 'stop-session-42');
  const id = expectedAgentId(s.cwd, s.id);
  exitedCleanly(t, await runHook(t, 'SessionStart', s), 'SessionStart');

  const send = async (body: string) => (await lead.rpc.call('message/send', { to: id, body })).message as { id: number; body: string };
  const stopHook = async (active: boolean) => {
    const run = await runHook(t, 'Stop', s, { stop_hook_active: active });
    exitedCleanly(t, run, 'Stop');
    return run;
  };
  // Claude Code 2.1.197 labels a `decision: "block"` "Stop hook error" and gives the reason to the model twice;
  // Stop's additionalContext keeps Claude working, arrives once and shows no error.
  const handOver = (run: HookRun, what: string): string => {
    const out = json(t, run, what);
    t.notOk('decision' in out, `${what}: no decision (a block shows as a Stop hook error)`);
    t.notOk('reason' in out, `${what}: no reason`);
    return additionalContext(t, run, 'Stop');
  };
  const expectBlock = async (run: HookRun, m: { id: number; body: string }, what: string) => {
    const text = handOver(run, what);
    t.match(text, `#${m.id} from lead`, `${what}: the context names message #${m.id} and its sender`);
    t.match(text, m.body, `${what}: with its body`);
    t.equal(await deliveryState(observer, m.id, id), 'read', `${what}: #${m.id} marked read`);
    return text;
  };

  // A message that fills the reason on its own, and one behind it: two blocks, each message once.
  const huge = await send(`HUGE-START ${'y'.repeat(12_000)} HUGE-END`);
  const first = await send('first: rerun the flaky test');
  const out1 = handOver(await stopHook(false), 'block 1');
  t.match(out1, `#${huge.id} from lead`, 'block 1: the oversized message');
  t.notMatch(out1, 'HUGE-END', 'block 1: clipped');
  t.ok(out1.length <= 10_000, `block 1: the context stays under 10,000 characters (${out1.length})`);
  t.notMatch(out1, first.body, 'block 1: the next message did not fit');
  t.not(await deliveryState(observer, first.id, id), 'read', `block 1: so #${first.id} is not marked read`);
  const reason2 = await expectBlock(await stopHook(true), first, 'block 2');
  t.notMatch(reason2, `#${huge.id} `, 'block 2: the oversized message is not repeated');

  // Then a Stop with nothing waiting: Claude may stop, and the count starts again.
  const idle = await stopHook(true);
  t.equal(idle.stdout, '', 'nothing waiting: Stop lets Claude stop');

  // So a full run of MAX_CONSECUTIVE_BLOCKS blocks is allowed again (it would not be without the reset).
  let previous = first;
  for (let i = 1; i <= MAX_CONSECUTIVE_BLOCKS; i++) {
    const m = await send(`task ${i}: update the changelog entry ${i}`);
    const reason = await expectBlock(await stopHook(i > 1), m, `block ${i} of a run`);
    t.notMatch(reason, `#${previous.id} `, `block ${i}: does not repeat #${previous.id}`);
    previous = m;
  }

  // One more with a new message waiting: the bound is reached, so Claude may stop; the message stays unread.
  const extra = await send('extra: this one waits for the next prompt');
  const bounded = await stopHook(true);
  t.equal(bounded.stdout, '', `after ${MAX_CONSECUTIVE_BLOCKS} blocks in a row the next Stop does not block`);
  t.not(await deliveryState(observer, extra.id, id), 'read', 'the waiting message stays unread');

  // Letting Claude stop reset the count: the next turn's Stop hands the waiting message over.
  await expectBlock(await stopHook(false), extra, 'next turn');
  t.same(logLines(s.home), [], 'no problem was logged');
});

t.test('a hook whose Claude is gone (its stdout closed: killed mid-hook) marks nothing read and gives its claims back; the next prompt hands the messages over', async (t) => {
  const relay = await startRelay(t);
  const dir = t.testdir();
  const lead = await connectAgent(t, relay.wsUrl, { id: 'lead' });
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const s = newSession(dir, relay.url, 'gone', 'dead0002-gone');
  const id = expectedAgentId(s.cwd, s.id);
  exitedCleanly(t, await runHook(t, 'SessionStart', s), 'SessionStart');
  const m = (await lead.rpc.call('message/send', { to: id, body: 'nobody reads this hook' })).message as { id: number };
  for (const event of ['Stop', 'UserPromptSubmit'] as const) {
    exitedCleanly(t, await runHook(t, event, s, {}, { closeStdout: true }), `${event} with nobody reading`);
    t.not(await deliveryState(observer, m.id, id), 'read', `${event}: #${m.id} is not marked read`);
    t.notOk(existsSync(join(s.home, 'claude', 'delivered', encodeURIComponent(id), String(m.id))), `${event}: its claim was given back`);
  }
  const next = await runHook(t, 'UserPromptSubmit', s, { prompt: 'carry on' });
  t.equal(additionalContext(t, next, 'UserPromptSubmit').split(`#${m.id} from lead`).length - 1, 1, `the next prompt hands #${m.id} over once`);
  t.equal(await deliveryState(observer, m.id, id), 'read', 'and marks it read');
  t.same(logLines(s.home), [], 'no problem was logged');
});

t.test('with the relay down every hook exits 0 at once, prints nothing and logs why; they recover when it is back', async (t) => {
  const dir = t.testdir();
  const port = await closedPort();
  const url = `http://127.0.0.1:${port}`;
  const s = newSession(dir, url, 'offline-proj', 'down-session-7');
  const id = expectedAgentId(s.cwd, s.id);
  const times: string[] = [];
  const quietAndLogged = async (event: HookEvent, verb: string, run: HookRun, before: number, why: RegExp) => {
    exitedCleanly(t, run, `${event} (relay down)`);
    t.equal(run.stdout, '', `${event}: nothing on stdout`);
    t.ok(run.ms < 5000, `${event}: exits quickly (${run.ms} ms)`);
    times.push(`${event} ${run.ms} ms`);
    const lines = logLines(s.home);
    t.equal(lines.length, before + 1, `${event}: one line appended to claude/hooks.log`);
    t.match(lines.at(-1) ?? '', new RegExp(`^\\d{4}-\\d\\d-\\d\\dT\\S+ ${verb}: `), `${event}: the line has a time and the hook`);
    t.match(lines.at(-1) ?? '', why, `${event}: the line says why`);
  };
  const notReachable = new RegExp(`relay not reachable at http://127\\.0\\.0\\.1:${port}`);

  // Nothing listens: SessionStart cannot register.
  await quietAndLogged('SessionStart', 'session-start', await runHook(t, 'SessionStart', s), 0, notReachable);

  // The relay starts (on that port): the next prompt joins the session without a SessionStart.
  const dbPath = join(dir, 'relay.db');
  const relay = await startRelay(t, { port, dbPath }, { dir });
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const joined = await runHook(t, 'UserPromptSubmit', s);
  exitedCleanly(t, joined, 'UserPromptSubmit after the relay started');
  t.equal(joined.stdout, '', 'nothing to hand over yet');
  t.equal((await agentNamed(observer, id))?.status, 'online', 'the session joined on its first prompt');
  t.equal(logLines(s.home).length, 1, 'nothing new logged');

  // The relay goes away mid-session: the later hooks stay quiet and log.
  await observer.close();
  await relay.close();
  await quietAndLogged('UserPromptSubmit', 'user-prompt-submit', await runHook(t, 'UserPromptSubmit', s), 1, notReachable);
  await quietAndLogged('Stop', 'stop', await runHook(t, 'Stop', s), 2, notReachable);
  await quietAndLogged('SessionEnd', 'session-end', await runHook(t, 'SessionEnd', s), 3, notReachable);

  // Garbage on stdin: exit 0, log.
  const garbage = await runHook(t, 'UserPromptSubmit', s, {}, { stdin: '{"session_id": oops not json' });
  await quietAndLogged('UserPromptSubmit', 'user-prompt-submit', garbage, 4, /JSON/);
  const noSession = await runHook(t, 'Stop', s, {}, { stdin: JSON.stringify({ hook_event_name: 'Stop', cwd: s.cwd }) });
  await quietAndLogged('Stop', 'stop', noSession, 5, /no session_id/);

  // Back on the same port with the same database: a message sent now is handed over on the next prompt.
  const back = await startRelay(t, { port, dbPath }, { dir });
  const sender = await connectAgent(t, back.wsUrl, { id: 'pager' });
  const m = (await sender.rpc.call('message/send', { to: id, body: 'the relay is back' })).message;
  const recovered = await runHook(t, 'UserPromptSubmit', s);
  exitedCleanly(t, recovered, 'UserPromptSubmit after the relay came back');
  t.match(additionalContext(t, recovered, 'UserPromptSubmit'), `#${m.id} from pager`, 'the message is handed over');
  t.equal(logLines(s.home).length, 6, 'nothing new logged');
  t.comment(`hook run times with the relay down: ${times.join(', ')}`);
});

t.test('a relay that accepts but never answers does not hold a hook past its bound', async (t) => {
  const dir = t.testdir();
  const { createServer } = await import('node:net');
  const sockets = new Set<import('node:net').Socket>();
  const server = createServer((sock) => {
    sockets.add(sock);
    sock.on('error', () => undefined);
    sock.on('close', () => sockets.delete(sock));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  const port = (server.address() as { port: number }).port;
  const s = newSession(dir, `http://127.0.0.1:${port}`, 'hang-proj', 'hang-session-1');
  const run = await runHook(t, 'SessionStart', s);
  exitedCleanly(t, run, 'SessionStart (relay hangs)');
  t.equal(run.stdout, '', 'nothing on stdout');
  const hookTimeout = readJson(join(PLUGIN_ROOT, 'hooks', 'hooks.json')).hooks.SessionStart[0].hooks[0].timeout;
  t.ok(run.ms < hookTimeout * 1000 * 0.8, `exits well inside the hook's ${hookTimeout} s timeout (${run.ms} ms)`);
  t.match(logLines(s.home).at(-1) ?? '', /session-start: relay not reachable .*no answer within \d+ ms/, 'logs that the relay did not answer');
});

t.test('without a CLI the launcher still exits 0 and logs why', async (t) => {
  // A copy of the plugin away from the checkout, and a PATH without node or agent-relay.
  const dir = t.testdir();
  const root = join(dir, 'cache', 'plugins', 'agent-relay', 'plugin');
  mkdirSync(root, { recursive: true });
  cpSync(PLUGIN_ROOT, root, { recursive: true });
  const home = join(dir, 'home');
  const s: Session = { id: 'no-cli-session', cwd: projectDir(dir, 'proj'), home, env: hookEnv({ AGENT_RELAY_URL: 'http://127.0.0.1:9', AGENT_RELAY_HOME: home, PATH: '/usr/bin:/bin' }) };
  const run = await runHook(t, 'SessionStart', s, {}, { root });
  exitedCleanly(t, run, 'SessionStart without a CLI');
  t.equal(run.stdout, '');
  t.match(logLines(home).at(-1) ?? '', /hook session-start: agent-relay CLI not found/, 'the log says the CLI is missing');
});

t.test("the context block's commands work without npm link: the plugin's bin/agent-relay (Claude puts <plugin>/bin on the Bash tool's PATH)", async (t) => {
  const relay = await startRelay(t);
  const dir = t.testdir();
  const lead = await connectAgent(t, relay.wsUrl, { id: 'lead' });
  const s = newSession(dir, relay.url, 'no-link', 'nolink-session-1');
  const id = expectedAgentId(s.cwd, s.id);
  const text = additionalContext(t, await runHook(t, 'SessionStart', s), 'SessionStart');
  const launcher = join(PLUGIN_ROOT, 'bin', 'agent-relay');
  t.ok(statSync(launcher).isFile(), 'the plugin ships bin/agent-relay');
  t.doesNotThrow(() => accessSync(launcher, constants.X_OK), 'and it is executable');
  // The Bash tool's PATH as Claude Code builds it for an enabled plugin: <plugin>/bin first, no agent-relay elsewhere.
  const path = `${join(PLUGIN_ROOT, 'bin')}:${dirname(process.execPath)}:/usr/bin:/bin`;
  const bash = (command: string) => runShell(command, s.cwd, { ...s.env, PATH: path });
  const m = (await lead.rpc.call('message/send', { to: id, body: 'are you there?' })).message;
  const inboxLine = /^Inbox: (agent-relay inbox .*)$/m.exec(text)?.[1];
  t.ok(inboxLine, 'the context block has the inbox command');
  const inbox = await bash(inboxLine!);
  t.equal(inbox.code, 0, `the inbox command from the context block runs (stderr: ${inbox.stderr.trim() || 'none'})`);
  t.match(inbox.stdout, 'are you there?', 'and lists the message');
  const reply = await bash(`agent-relay send --as ${id} --reply-to ${m.id} lead "yes"`);
  t.equal(reply.code, 0, `the reply command runs (stderr: ${reply.stderr.trim() || 'none'})`);
  const { messages } = await lead.rpc.call('message/list', {});
  t.ok(
    messages.some((x: any) => x.body === 'yes' && x.replyTo === m.id && x.from === id),
    'the reply reached lead',
  );
});

t.test('in a checkout without node_modules (or without dist/) every hook still exits 0, quietly, and logs why', async (t) => {
  // Outside the repository: node must not find this checkout's node_modules by walking up.
  const base = mkdtempSync(join(tmpdir(), 'relay-nomods-'));
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  const checkout = (name: string, withDist: boolean): string => {
    const root = join(base, name);
    mkdirSync(join(root, 'bin'), { recursive: true });
    for (const f of ['agent-relay.js', 'run-built.js']) cpSync(join(REPO, 'bin', f), join(root, 'bin', f));
    cpSync(join(REPO, 'package.json'), join(root, 'package.json'));
    cpSync(PLUGIN_ROOT, join(root, 'adapters', 'claude', 'plugin'), { recursive: true });
    if (withDist) cpSync(join(REPO, 'dist'), join(root, 'dist'), { recursive: true });
    return root;
  };
  for (const [name, withDist] of [
    ['no-node-modules', true],
    ['no-dist', false],
  ] as const) {
    const root = checkout(name, withDist);
    const home = join(base, `${name}-home`);
    const s: Session = {
      id: `${name}-session`,
      cwd: projectDir(base, `${name}-proj`),
      home,
      env: hookEnv({ AGENT_RELAY_URL: 'http://127.0.0.1:9', AGENT_RELAY_HOME: home, PATH: `${dirname(process.execPath)}:/usr/bin:/bin` }),
    };
    for (const event of EVENTS) {
      const run = await runHook(t, event, s, {}, { root: join(root, 'adapters', 'claude', 'plugin') });
      exitedCleanly(t, run, `${name}: ${event}`);
      t.equal(run.stdout, '', `${name}: ${event}: nothing on stdout`);
      t.ok(run.stderr.trim().split('\n').filter(Boolean).length <= 1, `${name}: ${event}: at most one line on stderr (${JSON.stringify(run.stderr)})`);
    }
    const lines = logLines(home);
    t.equal(lines.length, EVENTS.length, `${name}: one log line per hook`);
    t.match(lines.at(-1) ?? '', /hook session-end: agent-relay CLI cannot load/, `${name}: the log says the CLI cannot load`);
  }
});

// Claude Code 2.1.197 runs a plugin installed from a local directory marketplace in place; this is the
// fallback for a run from the cache copy it also leaves (another version, another marketplace kind).
t.test("a copy in Claude's plugin cache layout finds the package through known_marketplaces.json: hooks and bin/agent-relay work without npm link", async (t) => {
  const relay = await startRelay(t);
  const dir = t.testdir();
  const observer = await WsRpc.connect(t, relay.wsUrl);
  // The cache layout `claude plugin install agent-relay@agent-relay` left with Claude Code 2.1.197.
  const plugins = join(dir, 'config', 'plugins');
  const root = join(plugins, 'cache', 'agent-relay', 'agent-relay', '0.1.0');
  mkdirSync(root, { recursive: true });
  cpSync(PLUGIN_ROOT, root, { recursive: true });
  writeFileSync(
    join(plugins, 'known_marketplaces.json'),
    JSON.stringify({ 'agent-relay': { source: { source: 'directory', path: REPO }, installLocation: REPO, lastUpdated: new Date().toISOString() } }),
  );
  const path = `${join(root, 'bin')}:${dirname(process.execPath)}:/usr/bin:/bin`;
  const s = newSession(dir, relay.url, 'installed', 'cached01-session', { env: { PATH: path } });
  const id = expectedAgentId(s.cwd, s.id);
  const start = await runHook(t, 'SessionStart', s, {}, { root });
  exitedCleanly(t, start, 'SessionStart from the cache copy');
  t.match(additionalContext(t, start, 'SessionStart'), `relay agent ${id}`, 'registered and told Claude who it is');
  t.equal((await agentNamed(observer, id))?.status, 'online', 'the agent is online');
  const inbox = await runShell(`agent-relay inbox --as ${id} --unread`, s.cwd, s.env);
  t.equal(inbox.code, 0, `bin/agent-relay from the cache copy runs the CLI (stderr: ${inbox.stderr.trim() || 'none'})`);
  t.same(logLines(s.home), [], 'no problem was logged');
});
