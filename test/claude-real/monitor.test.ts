// Real interactive `claude` sessions (the pinned @anthropic-ai/claude-code, 2.1.197) under tmux, with
// the plugin installed, offline: a fake Messages API on 127.0.0.1 records every request, and a proxy
// that refuses everything stands in for the rest of the network. Each relay message must reach the
// model exactly once (counted by a unique token in the request bodies), whichever of the monitor and
// the hooks delivers it, idle or mid-turn, and end `read` on the relay; SessionEnd then prunes the
// claim files.
//
// The monitor runs only because of a setting this file seeds: Claude Code 2.1.197 arms plugin
// monitors only in interactive sessions and only when the GrowthBook feature `tengu_amber_sentinel`
// is on, which it reads from `cachedGrowthBookFeatures` in `.claude.json` (GrowthBook itself is
// unreachable here). It reads no feature at all with DISABLE_TELEMETRY, DO_NOT_TRACK or
// CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC set, hence the proxy instead of those. The second test
// seeds the flag off: no monitor, the hooks alone, as wherever Claude Code keeps monitors off.
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { startRelay, type TestRelay } from '../helpers/relay.js';
import { connectAgent, WsRpc } from '../helpers/ws-client.js';
import { expectedAgentId, logLines, projectDir } from '../claude/fixtures/harness.js';
import { waitFor } from '../helpers/wait.js';
import { answer, CLAUDE, claudeConfig, claudeEnv, fakeMessagesApi, installPlugin, isMain, NO_CLAUDE, refusingProxy, type ModelRequest } from './harness.js';
import { descendants, NO_TMUX, tmuxSession, type TmuxSession } from './tmux.js';

const SKIP = NO_CLAUDE || NO_TMUX;

const FLAG = 'tengu_amber_sentinel';
const TURN_MS = 45_000;

type Handler = (r: ModelRequest, res: ServerResponse) => Promise<void>;

interface Rig {
  relay: TestRelay;
  observer: WsRpc;
  lead: Awaited<ReturnType<typeof connectAgent>>;
  agentId: string;
  relayHome: string;
  requests: ModelRequest[];
  /** Handlers for the next main requests, in order; the rest answer "Done.". */
  plan: Handler[];
  asked: string[];
  sessionId: string;
  s: TmuxSession;
  /** Start `claude ARGS` for the same project, config and relay in another tmux session. */
  start(name: string, args: string[]): Promise<TmuxSession>;
}

/** A relay, the fake API, the plugin installed, and `claude` started under tmux; the monitor's feature flag as given. */
async function interactive(t: Test, name: string, monitorFlag: boolean): Promise<Rig> {
  const relay = await startRelay(t);
  const dir = t.testdir();
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const lead = await connectAgent(t, relay.wsUrl, { id: 'lead' });
  const cwd = projectDir(dir, `${name}-proj`);
  const sessionId = randomUUID();
  const plan: Handler[] = [];
  const api = await fakeMessagesApi(t, async (r, res) => {
    if (!isMain(r)) return answer(res, r.body, 'Title');
    const next = plan.shift();
    return next ? next(r, res) : answer(res, r.body, 'Done.');
  });
  const proxy = await refusingProxy(t);
  const { home, config } = claudeConfig(dir, cwd, { cachedGrowthBookFeatures: { [FLAG]: monitorFlag } });
  const relayHome = join(dir, 'relay-home');
  const env = claudeEnv({ home, config, apiUrl: api.url, relayUrl: relay.url, relayHome, offline: { proxy: proxy.url } });
  await installPlugin(t, env, cwd);
  const start = async (name: string, args: string[]) => {
    const s = await tmuxSession(t, { dir, name, cwd, env, argv: [CLAUDE, ...args, '--allowedTools', 'Bash(agent-relay:*)'] });
    await s.waitScreen(/❯/, 'the prompt');
    return s;
  };
  const s = await start(name, ['--session-id', sessionId]);
  const agentId = expectedAgentId(cwd, sessionId);
  await waitFor(async () => (await observer.call('agent/list', {})).agents.some((a: any) => a.id === agentId), 'SessionStart to register the agent', 30_000, 100);
  return { relay, observer, lead, agentId, relayHome, requests: api.requests, plan, asked: proxy.asked, sessionId, s, start };
}

/** A plugin hook is running under `pid` (the monitor does not count). */
function hookRunning(pid: number): boolean {
  return descendants(pid).some((p) => {
    try {
      return / hook (session-start|user-prompt-submit|stop|session-end)/.test(readFileSync(`/proc/${p}/cmdline`, 'utf8').replaceAll('\0', ' '));
    } catch {
      return false;
    }
  });
}

/** Type a prompt and submit it. */
async function prompt(s: TmuxSession, text: string): Promise<void> {
  await s.keys([text], true);
  // Enter only once the input box shows the text: on a loaded machine an Enter typed while the
  // TUI is still drawing can submit a partial prompt, or none, and the turn never comes.
  await s.waitScreen(new RegExp(text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')), `"${text}" in the input box`);
  await s.keys(['Enter']);
}

async function agent(rig: Rig): Promise<any> {
  return (await rig.observer.call('agent/list', {})).agents.find((a: any) => a.id === rig.agentId);
}

async function state(rig: Rig, id: number): Promise<string | undefined> {
  return (await rig.observer.call('message/get', { id })).deliveries.find((d: any) => d.agentId === rig.agentId)?.state;
}

/** Which path claimed the message: the claim file's content (`monitor` or `hook`), or null. */
function claimedBy(rig: Rig, id: number): string | null {
  const file = join(rig.relayHome, 'claude', 'delivered', encodeURIComponent(rig.agentId), String(id));
  return existsSync(file) ? readFileSync(file, 'utf8') : null;
}

function claims(rig: Rig): string[] {
  try {
    return readdirSync(join(rig.relayHome, 'claude', 'delivered', encodeURIComponent(rig.agentId)));
  } catch {
    return [];
  }
}

/** How often `token` occurs in the newest main request (each carries the whole conversation). */
function inLatest(rig: Rig, token: string): number {
  return (rig.requests.filter(isMain).at(-1)?.raw.split(token).length ?? 1) - 1;
}

/** Send a relay message with a unique token in its body. */
async function send(rig: Rig, text: string): Promise<{ id: number; token: string }> {
  const token = `RELAY-TOKEN-${randomUUID().slice(0, 8)}`;
  const { message } = await rig.lead.rpc.call('message/send', { to: rig.agentId, body: `${text} ${token}` });
  return { id: message.id, token };
}

/**
 * Submit a prompt whose answer (a Bash call to `agent-relay agents`) is held open, send a message
 * meanwhile, and let the turn go on once `holdUntil` holds; then wait for the message to reach the
 * model and be read.
 */
async function midTurn(
  rig: Rig,
  holdUntil: (m: { id: number }) => boolean = () => true,
): Promise<{ m: { id: number; token: string }; first: ReturnType<typeof firstWith>; claimedWhileHeld: string | null }> {
  let arrive!: () => void;
  let release!: () => void;
  const arrived = new Promise<void>((resolve) => (arrive = resolve));
  const released = new Promise<void>((resolve) => (release = resolve));
  rig.plan.push((r, res) => (arrive(), answer(res, r.body, '', 'agent-relay agents', released)));
  const from = rig.requests.length;
  await prompt(rig.s, 'Run the relay check');
  await arrived;
  const m = await send(rig, 'also look at the flaky test');
  await waitFor(() => holdUntil(m), 'the held turn to be let go', TURN_MS, 50);
  const claimedWhileHeld = claimedBy(rig, m.id);
  release();
  return { m, first: await reaches(rig, m, 'mid-turn', from), claimedWhileHeld };
}

/** The first main request carrying `token`: its place among the main requests, how often it has it, and what precedes it there. */
function firstWith(rig: Rig, token: string): { index: number; count: number; before: string } {
  const main = rig.requests.filter(isMain);
  const index = main.findIndex((r) => r.raw.includes(token));
  const raw = main[index]?.raw ?? '';
  const at = raw.indexOf(token);
  return { index, count: raw.split(token).length - 1, before: at < 0 ? '' : raw.slice(Math.max(0, at - 160), at + token.length) };
}

/** Wait until the message reaches the model (in a main request from the `from`th on) and is read on the relay; then where it came first. */
async function reaches(rig: Rig, m: { id: number; token: string }, what: string, from = 0): Promise<ReturnType<typeof firstWith>> {
  await waitFor(
    () =>
      rig.requests
        .slice(from)
        .filter(isMain)
        .some((r) => r.raw.includes(m.token)),
    `the ${what} message to reach the model`,
    TURN_MS,
    100,
  );
  await waitFor(async () => (await state(rig, m.id)) === 'read', `the ${what} message to be read`, TURN_MS, 100);
  return firstWith(rig, m.token);
}

/**
 * One more turn carries the whole conversation: each message must be in it once. Then /exit:
 * SessionEnd marks the agent offline and prunes the claim files (every message is read).
 */
async function finish(t: Test, rig: Rig, messages: Record<string, { token: string }>, started: number): Promise<void> {
  const end = rig.requests.length;
  await prompt(rig.s, 'Anything else?');
  await waitFor(() => rig.requests.slice(end).some(isMain), 'the last turn', TURN_MS, 100);
  for (const [what, m] of Object.entries(messages)) t.equal(inLatest(rig, m.token), 1, `the ${what} message is in the conversation once`);
  t.comment(`requests: ${rig.requests.filter(isMain).length} main, ${rig.requests.length} in all; the proxy refused: ${[...new Set(rig.asked)].join(', ') || 'nothing'}`);
  t.comment(await rig.s.screen());
  await prompt(rig.s, '/exit');
  await waitFor(async () => !(await rig.s.alive()), 'claude to exit after /exit', 20_000, 100);
  const exited = Date.now() - started;
  await waitFor(async () => (await agent(rig))?.status === 'offline', 'SessionEnd to mark the agent offline', 10_000, 100).catch(async (err: Error) => {
    // Say what the relay and the hooks saw: a timed-out hook logs its problem, a revived agent shows in its events.
    const { events } = await rig.observer.call('event/list', { limit: 1000 });
    const mine = events.filter((e: any) => e.agentId === rig.agentId).map((e: any) => `+${e.at - started} ms ${e.kind} ${JSON.stringify(e.data)}`);
    const relayLog = rig.relay.logs.filter((l) => JSON.stringify(l).includes(rig.agentId)).map((l) => `+${Number(l.time) - started} ${l.msg} ${JSON.stringify(l)}`.slice(0, 400));
    throw new Error(
      `${err.message}; agent ${JSON.stringify(await agent(rig))}; its events: ${mine.join(' | ')}; hook log: ${logLines(rig.relayHome).join(' | ') || 'empty'}; relay log: ${relayLog.join(' | ')}; claude exited at +${exited} ms, now +${Date.now() - started} ms`,
    );
  });
  t.pass('/exit: SessionEnd marked the agent offline');
  t.same(logLines(rig.relayHome), [], 'no hook problem was logged');
  t.same(claims(rig), [], 'SessionEnd pruned the claim files (every message is read)');
  t.comment(`${Date.now() - started} ms`);
}

t.test(
  `monitor on (feature flag ${FLAG} seeded in .claude.json): a message sent before the monitor connects, one to an idle session and one mid-turn each reach the model once`,
  { skip: SKIP },
  async (t) => {
    const started = Date.now();
    const rig = await interactive(t, 'mon', true);
    // (0) Sent once SessionStart has registered the agent, before the monitor is up (it starts a second
    // or more later): the monitor resumes after the cursor SessionStart stored, so it still prints it.
    const early = await send(rig, 'sent before the monitor connects');
    const upBefore = (await agent(rig))?.connected === true;
    await rig.s.waitScreen(/1 monitor/, 'Claude to show the armed monitor');
    await waitFor(async () => (await agent(rig))?.connected === true, 'the monitor to hold its WebSocket', 30_000, 100);
    t.pass(`the monitor runs (${Date.now() - started} ms after start)`);
    const e1 = await reaches(rig, early, 'early');
    t.equal(claimedBy(rig, early.id), 'monitor', `early (monitor ${upBefore ? 'already' : 'not yet'} connected when sent): the monitor delivered it`);
    t.equal(e1.count, 1, `early: once in the request that carries it (main request ${e1.index + 1}: …${e1.before})`);

    // (1) Idle: the monitor prints the message, the notification wakes the session.
    const idle = await send(rig, 'please check the build');
    const i1 = await reaches(rig, idle, 'idle');
    t.equal(claimedBy(rig, idle.id), 'monitor', 'idle: the monitor delivered it');
    t.match(i1.before, `relay message #${idle.id} from lead`, "idle: as the monitor's line");
    t.equal(i1.count, 1, `idle: once in the request that carries it (main request ${i1.index + 1}: …${i1.before})`);

    // (2) Mid-turn: the model's answer (a Bash call) is held open while the message arrives, until a path claims it.
    const { m: mid, first: m1, claimedWhileHeld } = await midTurn(rig, (m) => claimedBy(rig, m.id) !== null);
    t.equal(claimedWhileHeld, 'monitor', 'mid-turn: the monitor claimed it');
    t.match(m1.before, `relay message #${mid.id} from lead`, "mid-turn: as the monitor's line");
    t.equal(m1.count, 1, `mid-turn: once in the request that carries it (main request ${m1.index + 1}: …${m1.before})`);

    await finish(t, rig, { early, idle, 'mid-turn': mid }, started);
  },
);

t.test(`monitor off (${FLAG} false): a message waiting for a prompt and one mid-turn reach the model once through the hooks`, { skip: SKIP }, async (t) => {
  const started = Date.now();
  const rig = await interactive(t, 'hooks', false);
  t.notMatch(await rig.s.screen(), /monitor/, 'no monitor is armed');

  // (3) The message arrives with no monitor; UserPromptSubmit hands it over with the next prompt.
  const waiting = await send(rig, 'please check the build');
  await prompt(rig.s, 'What is new?');
  const w1 = await reaches(rig, waiting, 'waiting');
  t.equal(claimedBy(rig, waiting.id), 'hook', 'waiting: a hook delivered it');
  t.match(w1.before, `Relay message #${waiting.id} from lead`, "waiting: as UserPromptSubmit's context");
  t.equal(w1.count, 1, `waiting: once in the request that carries it (main request ${w1.index + 1}: …${w1.before})`);

  // (4) Mid-turn with no monitor: Stop's additionalContext hands it over.
  const { m: mid, first: m1, claimedWhileHeld } = await midTurn(rig);
  t.equal(claimedWhileHeld, null, 'mid-turn: nothing claimed it while the turn was held');
  t.equal(claimedBy(rig, mid.id), 'hook', 'mid-turn: a hook delivered it');
  t.match(m1.before, 'New relay messages arrived while you worked', "mid-turn: as Stop's additionalContext");
  t.equal(m1.count, 1, `mid-turn: once in the request that carries it (main request ${m1.index + 1}: …${m1.before})`);

  await finish(t, rig, { waiting, 'mid-turn': mid }, started);
});

t.test(`monitor on (${FLAG}): Claude killed, its orphaned monitor stops by itself without losing a message; the message reaches the resumed session once`, { skip: SKIP }, async (t) => {
  const started = Date.now();
  const rig = await interactive(t, 'killed', true);
  await waitFor(async () => (await agent(rig))?.connected === true, 'the monitor to hold its WebSocket', 30_000, 100);
  // One turn first: --resume needs a conversation to resume. Killed once it has ended (its Stop hook
  // finished), so only the monitor is left running.
  await prompt(rig.s, 'Hello');
  await rig.s.waitScreen(/✻ \S+ for \d+s/, 'the first turn to end');
  await waitFor(() => !hookRunning(rig.s.pid), "the turn's hooks to finish", 10_000, 50);
  const monitors = descendants(rig.s.pid);
  process.kill(rig.s.pid, 'SIGKILL');
  await waitFor(async () => !(await rig.s.alive()), 'claude to die', 10_000, 100);
  const orphans = monitors.filter((p) => existsSync(`/proc/${p}`));
  t.ok(orphans.length > 0, `Claude's monitor outlives it (pids ${orphans.join(', ')} still running)`);

  // Sent at once: the monitor either tries to print it (and gives its claim back) or has already
  // noticed that Claude's end of its stdout is closed and stopped; either way it is not lost.
  const upAtSend = (await agent(rig))?.connected === true;
  const lost = await send(rig, 'sent after Claude died');
  await waitFor(async () => (await agent(rig))?.connected === false, 'the monitor to stop by itself', 20_000, 100);
  await waitFor(() => orphans.every((p) => !existsSync(`/proc/${p}`)), "the monitor's processes to exit", 10_000, 100);
  t.pass(`the orphaned monitor stopped by itself (it was ${upAtSend ? 'still' : 'no longer'} connected when the message was sent)`);
  t.equal(claimedBy(rig, lost.id), null, 'no claim is left for the message');
  t.not(await state(rig, lost.id), 'injected', `not acknowledged as injected (${await state(rig, lost.id)})`);

  rig.s = await rig.start('resumed', ['--resume', rig.sessionId]);
  const k1 = await reaches(rig, lost, 'given back');
  t.equal(k1.count, 1, `resumed: once in the request that carries it, claimed by ${claimedBy(rig, lost.id)} (main request ${k1.index + 1}: …${k1.before})`);
  await finish(t, rig, { 'given back': lost }, started);
});
