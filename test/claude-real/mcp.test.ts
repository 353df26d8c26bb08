import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { mkdirSync, symlinkSync } from 'node:fs';
import net from 'node:net';
import { delimiter, join } from 'node:path';
import { childEnv, ROOT } from '../helpers/child.js';
import { startRelay } from '../helpers/relay.js';
import { waitFor } from '../helpers/wait.js';
import { connectAgent } from '../helpers/ws-client.js';
import { CLAUDE, NO_CLAUDE } from './harness.js';
import { README_RELAY_URL, testedBlock } from '../helpers/readme.js';

/**
 * The README's `claude mcp add` line, pasted into the real Claude Code (2.1.197): `claude mcp list`
 * starts the server, runs the MCP handshake and reports it connected; with the relay down it
 * reports a failure rather than waiting. Offline: nothing but the relay on 127.0.0.1 is reached
 * (`mcp list` asks no model).
 */

async function claude(t: Test, args: string[], env: NodeJS.ProcessEnv, cwd: string): Promise<{ code: number | null; out: string }> {
  const c = spawn(CLAUDE, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  c.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  c.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
  const timer = setTimeout(() => c.kill('SIGKILL'), 60_000);
  const code = await new Promise<number | null>((resolve) => c.once('close', resolve));
  clearTimeout(timer);
  t.comment(`claude ${args.join(' ')}: ${out.trim().split('\n').at(-1)}`);
  return { code, out };
}

/** A HOME with `agent-relay` on PATH (this checkout's bin, as `npm link` would put it). */
function session(t: Test): { env: (relayUrl: string) => NodeJS.ProcessEnv; cwd: string; dir: string } {
  // The test's one testdir: a second t.testdir() call would empty it.
  const dir = t.testdir();
  const bin = join(dir, 'bin');
  const cwd = join(dir, 'project');
  mkdirSync(bin);
  mkdirSync(cwd);
  symlinkSync(join(ROOT, 'bin', 'agent-relay.js'), join(bin, 'agent-relay'));
  return {
    cwd,
    dir,
    env: (relayUrl) =>
      childEnv(
        {
          HOME: join(dir, 'home'),
          CLAUDE_CONFIG_DIR: join(dir, 'config'),
          AGENT_RELAY_HOME: join(dir, 'relay-home'),
          DISABLE_AUTOUPDATER: '1',
          CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
          PATH: `${bin}${delimiter}${process.env.PATH ?? ''}`,
          // Not used by `mcp add`: the server gets the relay address from the -e the README gives.
          AGENT_RELAY_URL: relayUrl,
        },
        (k) => k.startsWith('CLAUDE_') || k.startsWith('ANTHROPIC_'),
      ),
  };
}

/** The README's `claude mcp add` line as arguments of `claude`, pointed at `relayUrl`. */
function readmeMcpAdd(relayUrl: string): string[] {
  const line = testedBlock('mcp-claude')
    .split('\n')
    .find((l) => l.startsWith('claude mcp add'));
  if (!line) throw new Error('the mcp-claude block has no `claude mcp add` line');
  return line.replace(README_RELAY_URL, relayUrl).split(/\s+/).slice(1);
}

t.test('the pasted `claude mcp add` line: Claude Code connects to the server, which joins the relay', { skip: NO_CLAUDE }, async (t) => {
  const s = session(t);
  const relay = await startRelay(t, {}, { dir: join(s.dir, 'relay') });
  const env = s.env('http://127.0.0.1:1');
  const add = await claude(t, readmeMcpAdd(relay.url), env, s.cwd);
  t.equal(add.code, 0, 'claude mcp add');
  const watcher = await connectAgent(t, relay.wsUrl, { id: 'watcher' });
  const list = await claude(t, ['mcp', 'list'], env, s.cwd);
  t.equal(list.code, 0, 'claude mcp list');
  t.match(list.out, /agent-relay: agent-relay mcp --client claude - ✔ Connected/, 'Claude Code reports the server connected');
  await waitFor(async () => (await watcher.rpc.call('agent/list', {})).agents.some((a: { client: string }) => a.client === 'claude-mcp'), 'the server registered on the relay');
  const agent = (await watcher.rpc.call('agent/list', {})).agents.find((a: { client: string }) => a.client === 'claude-mcp');
  t.match(agent.id, /-claude-project$/, 'as HOST-claude-FOLDER');
  await waitFor(async () => (await watcher.rpc.call('agent/list', { status: 'offline' })).agents.some((a: { id: string }) => a.id === agent.id), 'offline once Claude closed it');
});

t.test('with the relay down, claude mcp list reports the server failed, and returns', { skip: NO_CLAUDE }, async (t) => {
  const closedPort = await new Promise<number>((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
  const s = session(t);
  const env = s.env('http://127.0.0.1:1');
  t.equal((await claude(t, readmeMcpAdd(`http://127.0.0.1:${closedPort}`), env, s.cwd)).code, 0);
  const list = await claude(t, ['mcp', 'list'], env, s.cwd);
  t.match(list.out, /agent-relay: agent-relay mcp --client claude - ✘ Failed to connect/, 'reported as failed');
});
