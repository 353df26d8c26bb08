// An interactive program under tmux for the real Claude Code tests: its own tmux server (a socket in
// a fresh temporary directory, so no other tmux is touched), one session per program, keys sent with
// send-keys and the screen read with capture-pane. The session is killed by name, then the server,
// at teardown.
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { waitFor } from '../helpers/wait.js';

const TMUX_CALL_MS = 10_000;

/** tap's `skip` for tests that need tmux. */
export const NO_TMUX: string | false = spawnSync('tmux', ['-V']).status === 0 ? false : 'tmux is not installed (the interactive sessions run under it)';

function quote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** Every process below `pid`, from /proc (Linux). */
export function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // The parent is the 2nd field after the parenthesised command name.
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // exited meanwhile
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const c of children.get(p) ?? []) {
      out.push(c);
      walk(c);
    }
  };
  walk(pid);
  return out;
}

export interface TmuxSession {
  name: string;
  /** The program's pid (the pane's process). */
  pid: number;
  /** The pane's text now (trailing blank lines dropped). */
  screen(): Promise<string>;
  /** tmux send-keys: key names (`Enter`, `Escape`) or, with `literal`, text typed as is. */
  keys(keys: string[], literal?: boolean): Promise<void>;
  /** Wait until the screen matches, naming `what` on timeout (with the screen). */
  waitScreen(re: RegExp, what: string, timeoutMs?: number): Promise<string>;
  /** The pane's process (the program) is still running. */
  alive(): Promise<boolean>;
}

export async function tmuxSession(t: Test, o: { dir: string; name: string; cwd: string; env: NodeJS.ProcessEnv; argv: string[]; width?: number; height?: number }): Promise<TmuxSession> {
  // A socket path must fit in 108 bytes; the test's directory can be longer.
  const sockDir = mkdtempSync(join(tmpdir(), 'relay-tmux-'));
  const socket = join(sockDir, 's');
  const tmux = (args: string[]) =>
    new Promise<string>((resolve, reject) =>
      execFile('tmux', ['-S', socket, ...args], { timeout: TMUX_CALL_MS, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', TERM: 'xterm-256color' } }, (err, stdout) =>
        err ? reject(err) : resolve(stdout),
      ),
    );
  // The program's exact environment goes through a script (tmux would add its own server's).
  const script = join(o.dir, `${o.name}.sh`);
  const vars = Object.entries(o.env)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => quote(`${k}=${v}`));
  writeFileSync(script, `#!/bin/sh\ncd ${quote(o.cwd)} || exit 1\nexec env -i ${vars.join(' ')} TERM=xterm-256color ${o.argv.map(quote).join(' ')} 2>>${quote(join(o.dir, `${o.name}.stderr`))}\n`, {
    mode: 0o700,
  });
  await tmux(['new-session', '-d', '-s', o.name, '-x', String(o.width ?? 200), '-y', String(o.height ?? 50), `sh ${quote(script)}`]);
  // Keep the last screen readable after the program exits (a crash shows its message).
  await tmux(['set-option', '-t', o.name, 'remain-on-exit', 'on']);
  const pid = Number((await tmux(['display-message', '-p', '-t', o.name, '#{pane_pid}'])).trim());
  t.teardown(async () => {
    // What the program started (Claude's monitors) may outlive it: find it first, kill it after.
    const left = descendants(pid);
    await tmux(['kill-session', '-t', o.name]).catch(() => undefined);
    for (const p of left) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // gone
      }
    }
    await tmux(['kill-server']).catch(() => undefined);
    rmSync(sockDir, { recursive: true, force: true });
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone with its session
    }
  });
  const screen = async () => (await tmux(['capture-pane', '-p', '-t', o.name])).replace(/\s+$/, '');
  return {
    name: o.name,
    pid,
    screen,
    keys: async (keys, literal = false) => {
      await tmux(['send-keys', '-t', o.name, ...(literal ? ['-l'] : []), ...keys]);
    },
    waitScreen: async (re, what, timeoutMs = 30_000) => {
      let last = '';
      try {
        await waitFor(async () => re.test((last = await screen())), what, timeoutMs, 200);
      } catch (err) {
        throw new Error(`${(err as Error).message}; the screen:\n${last}`);
      }
      return last;
    },
    alive: async () => (await tmux(['display-message', '-p', '-t', o.name, '#{pane_dead}']).catch(() => '1')).trim() === '0',
  };
}
