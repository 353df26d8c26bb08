import { hostname } from 'node:os';
import type { Command } from 'commander';
import { CliContext, type GlobalOptions, type Io } from '../../clients/cli/context.js';
import type { CommandGroup } from '../../clients/cli/main.js';
import { runMonitor } from '../../clients/cli/commands/live.js';
import { RelayHttpClient } from '../../clients/http-client.js';
import { loadIdentity, relayHome } from '../../clients/cli/identity-store.js';
import type { HookDeps, HookInput, HookResult } from './hooks.js';

// The hooks' code (and node:crypto, which session state needs) loads when a hook runs, not for
// every command: registering the commands is all `agent-relay --help` needs.
const hooks = () => import('./hooks.js');
const sessionState = () => import('./session-state.js');

/** A hook must never hold Claude up: every relay call gets this long. */
const HOOK_HTTP_TIMEOUT_MS = 2000;
/**
 * SessionEnd holds no prompt up, and it is the agent's one chance to release its claimed work before
 * the stale TTL: its two calls get 4 s each, inside the 10 s Claude Code gives the hook (hooks.json).
 */
const SESSION_END_HTTP_TIMEOUT_MS = 4000;
const STDIN_LIMIT = 1024 * 1024;
const MONITOR_LOOK_EVERY_MS = 1000;
/** How often the monitor checks that Claude still holds the other end of its stdout. */
const STDOUT_PROBE_EVERY_MS = 1000;

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) return '';
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    size += (chunk as Buffer).length;
    if (size > STDIN_LIMIT) break;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function parseInput(raw: string): HookInput {
  const v = JSON.parse(raw) as Partial<HookInput>;
  if (typeof v.session_id !== 'string' || !v.session_id) throw new Error('hook input has no session_id');
  if (typeof v.cwd !== 'string' || !v.cwd) throw new Error('hook input has no cwd');
  return v as HookInput;
}

/** Write to Claude: false when it is gone (it was killed and its end of stdout closed). */
function printer(io: Io): (text: string) => Promise<boolean> {
  return io.outChecked ?? (async (text) => (io.out(text), true));
}

/**
 * `agent-relay hook <event>` for the Claude Code plugin: reads the hook's JSON on stdin, prints
 * what Claude should see, and always exits 0. When the relay is down it prints nothing and logs why.
 */
export const claudeCommands: CommandGroup = (program: Command, _run, io) => {
  const hook = program.command('hook').description('Claude Code plugin hooks (read hook JSON on stdin)');
  const events = {
    'session-start': async (input: HookInput, deps: HookDeps): Promise<HookResult> => ({
      stdout: await (await hooks()).sessionStart(input, deps),
      commit: async () => undefined,
      release: () => undefined,
    }),
    'user-prompt-submit': async (input: HookInput, deps: HookDeps) => (await hooks()).userPromptSubmit(input, deps),
    stop: async (input: HookInput, deps: HookDeps) => (await hooks()).stop(input, deps),
    'session-end': async (input: HookInput, deps: HookDeps): Promise<HookResult> => {
      await (await hooks()).sessionEnd(input, deps);
      return { stdout: '', commit: async () => undefined, release: () => undefined };
    },
  } as const;
  for (const [name, handler] of Object.entries(events)) {
    hook.command(name).action(async (_opts: unknown, command: Command) => {
      const opts = command.optsWithGlobals() as GlobalOptions;
      const home = relayHome(io.env);
      try {
        // Inside the try: a wrong relay address is logged like any other failure, never thrown at Claude.
        const deps: HookDeps = {
          http: new RelayHttpClient({ url: opts.url, ...(opts.token ? { token: opts.token } : {}), timeoutMs: name === 'session-end' ? SESSION_END_HTTP_TIMEOUT_MS : HOOK_HTTP_TIMEOUT_MS }),
          home,
          env: io.env,
          host: hostname(),
        };
        const input = parseInput(await readStdin());
        const { stdout, commit, release } = await handler(input, deps);
        // Killed with a hook running, Claude never reads this: then nothing is marked read.
        if (stdout && !(await printer(io)(stdout))) return release();
        await commit();
      } catch (err) {
        (await sessionState()).logHookProblem(home, name, err instanceof Error ? err.message : String(err));
      }
    });
  }

  program
    .command('claude-monitor')
    .description("Claude Code monitor: follow this session's agent (by CLAUDE_CODE_SESSION_ID, else the newest session in the cwd) and print a line per message")
    .option('--max-body <n>', 'clip bodies to this many characters', '200')
    .action(async (o: { maxBody: string }, command: Command) => {
      const ctx = new CliContext(command.optsWithGlobals() as GlobalOptions, io);
      // SIGKILLed, Claude Code 2.1.197 leaves its monitors running; their stdout is a socket whose other
      // end is then closed. Stop as on SIGTERM once that shows, rather than hold the agent's connection
      // (it would look online) until a line fails to print.
      const probe = setInterval(() => {
        if (!io.outClosed?.()) return;
        clearInterval(probe);
        process.kill(process.pid, 'SIGTERM');
      }, STDOUT_PROBE_EVERY_MS);
      probe.unref();
      // Claude Code gives the monitor CLAUDE_CODE_SESSION_ID (2.1.197): take --as, else the agent SessionStart
      // registered for that session, else (an older Claude without it) the newest session registered here.
      // It lives as long as the session, so it waits (cheaply) for SessionStart or a relay that starts later.
      const sessionId = io.env.CLAUDE_CODE_SESSION_ID || null;
      let id = ctx.opts.as ?? null;
      while (!id) {
        const state = await sessionState();
        id = sessionId ? (state.loadSession(ctx.home, sessionId)?.agentId ?? null) : (state.latestForCwd(ctx.home, process.cwd())?.agentId ?? null);
        if (!id) await new Promise((r) => setTimeout(r, MONITOR_LOOK_EVERY_MS));
      }
      const identity = id ? loadIdentity(ctx.home, id, ctx.http.url) : null;
      if (!identity) {
        (await sessionState()).logHookProblem(ctx.home, 'monitor', `no relay agent registered for ${process.cwd()} (is the relay running?)`);
        return;
      }
      // One path per message: print only what no hook handed over, and record what is printed so the hooks skip it.
      // A line that cannot be written (Claude was killed and its end of stdout closed; the monitor outlives
      // it) gives its claim back, so the next session's hooks deliver the message instead of skipping it.
      const state = await sessionState();
      await runMonitor(ctx, identity, Number(o.maxBody) || 200, {
        claim: (messageId) => state.claimDelivery(ctx.home, identity.id, messageId, 'monitor'),
        print: printer(io),
        release: (messageId) => state.releaseDelivery(ctx.home, identity.id, messageId, 'monitor'),
      });
    });
};
