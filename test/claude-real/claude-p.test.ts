// A real `claude -p` session (the pinned @anthropic-ai/claude-code devDependency), offline: a fake
// Messages API on 127.0.0.1 in this test, the plugin loaded with --plugin-dir, a real relay. Checks
// that the plugin's hooks fire and that a relay message reaches the model's requests exactly once.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import t from 'tap';
import { childEnv, trackChild, untrackChild } from '../helpers/child.js';
import { startRelay } from '../helpers/relay.js';
import { connectAgent, WsRpc } from '../helpers/ws-client.js';
import { expectedAgentId, logLines, PLUGIN_ROOT, projectDir } from '../claude/fixtures/harness.js';
import { waitFor } from '../helpers/wait.js';
import { answer, CLAUDE, claudeConfig, claudeEnv, fakeMessagesApi, installPlugin, isMain, NO_CLAUDE } from './harness.js';

for (const mode of ['--plugin-dir', 'installed'] as const)
  t.test(`claude -p with the plugin (${mode}): hooks fire, a relay message handed over by Stop reaches the model once`, { skip: NO_CLAUDE }, async (t) => {
    const relay = await startRelay(t);
    const dir = t.testdir();
    const observer = await WsRpc.connect(t, relay.wsUrl);
    const lead = await connectAgent(t, relay.wsUrl, { id: 'lead' });
    const cwd = projectDir(dir, 'real-proj');
    const sessionId = randomUUID();
    const agentId = expectedAgentId(cwd, sessionId);
    const token = `RELAY-TOKEN-${randomUUID().slice(0, 8)}`;

    // The fake Messages API records every request. On the first turn's request the test sends the
    // relay message (SessionStart has registered the agent by then), so it can only reach the model
    // through a hook: Stop, after the first answer.
    let sent: { id: number } | null = null;
    const { url: apiUrl, requests } = await fakeMessagesApi(t, async (r, res) => {
      const main = isMain(r);
      const firstMain = main && !sent;
      if (firstMain) sent = (await lead.rpc.call('message/send', { to: agentId, body: `please check the build ${token}` })).message;
      // The first answer runs the context block's kind of command in Bash: `agent-relay` must resolve
      // through the plugin's bin/ on the Bash tool's PATH (nothing else provides it here).
      await answer(res, r.body, main ? 'Done.' : 'Title', firstMain ? `agent-relay agents` : undefined);
    });
    const relayHome = join(dir, 'relay-home');
    const env = claudeEnv({ ...claudeConfig(dir, cwd), apiUrl, relayUrl: relay.url, relayHome, offline: 'essential' });
    if (mode === 'installed') await installPlugin(t, env, cwd);
    const started = Date.now();
    const pluginArgs = mode === '--plugin-dir' ? ['--plugin-dir', PLUGIN_ROOT] : [];
    const child = spawn(CLAUDE, ['-p', 'Say done.', ...pluginArgs, '--session-id', sessionId, '--output-format', 'json', '--allowedTools', 'Bash(agent-relay:*)'], {
      cwd,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    if (child.pid !== undefined) trackChild(child.pid);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
      child.once('close', (c) => {
        clearTimeout(timer);
        if (child.pid !== undefined) untrackChild(child.pid);
        resolve(c);
      });
    });
    t.comment(`claude -p ran ${Date.now() - started} ms; ${requests.length} Messages API requests`);
    t.equal(code, 0, `claude -p exits 0 (stderr: ${stderr.trim().slice(0, 500) || 'none'})`);

    const agent = (await observer.call('agent/list', {})).agents.find((a: any) => a.id === agentId);
    t.ok(agent, `SessionStart registered ${agentId}`);
    t.equal(agent?.client, 'claude');
    t.equal(agent?.meta?.sessionId, sessionId, 'with the session id Claude gave the hook');
    await waitFor(async () => (await observer.call('agent/list', {})).agents.find((a: any) => a.id === agentId)?.status === 'offline', 'SessionEnd to mark the agent offline', 10_000, 100);
    t.pass('SessionEnd marked the agent offline');

    const main = requests.filter(isMain);
    // The Bash call's result (in the second request) lists this session's agent: bin/agent-relay ran the CLI.
    const toolResult = JSON.stringify((main[1]?.body.messages ?? []).flatMap((m: any) => (Array.isArray(m.content) ? m.content : [])).filter((c: any) => c.type === 'tool_result'));
    t.ok(toolResult.includes(agentId) && toolResult.includes('lead'), `agent-relay in the Bash tool ran without npm link (tool result: ${toolResult.slice(0, 300)})`);
    t.ok(sent, 'the relay message was sent during the first turn');
    t.notOk(main[0]?.raw.includes(token), 'the first request does not have it yet');
    const first = main.findIndex((r) => r.raw.includes(token));
    t.ok(first > 0, `a later request carries the message (request ${first + 1} of ${main.length})`);
    if (first > 0) {
      const occurrences = main[first]!.raw.split(token).length - 1;
      // Under -p a `decision: "block"` reason also arrived once (checked by hand): the doubling seen on
      // screen was in an interactive session (monitor.test.ts drives those, with Stop's additionalContext).
      t.equal(occurrences, 1, 'exactly once in that request');
      t.match(main[first]!.raw, `#${sent!.id} from lead`, 'with its id and sender');
    }
    t.equal(main.at(-1)!.raw.split(token).length - 1, main[first]?.raw.split(token).length - 1, 'and no later request repeats it');
    t.equal((await observer.call('message/get', { id: sent!.id })).deliveries.find((d: any) => d.agentId === agentId)?.state, 'read', 'marked read after the hand-over');
    t.same(logLines(relayHome), [], 'no hook problem was logged');
    if (code !== 0) t.comment(stdout.slice(0, 2000));
  });

t.test('claude plugin validate --strict passes the plugin and the marketplace', { skip: NO_CLAUDE }, async (t) => {
  const dir = t.testdir();
  const env = childEnv(
    { HOME: dir, CLAUDE_CONFIG_DIR: join(dir, 'config'), DISABLE_AUTOUPDATER: '1', CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1' },
    (k) => k.startsWith('CLAUDE_') || k.startsWith('ANTHROPIC_'),
  );
  for (const target of [PLUGIN_ROOT, join(PLUGIN_ROOT, '..', '..', '..')]) {
    const child = spawn(CLAUDE, ['plugin', 'validate', '--strict', target], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
    t.equal(code, 0, `${target}: validate --strict passes (${out.trim().split('\n').slice(-3).join(' / ')})`);
  }
});
