// A real `claude -p` session (the pinned @anthropic-ai/claude-code devDependency), offline: a fake
// Messages API on 127.0.0.1 in this test, the plugin loaded with --plugin-dir, a real relay. Checks
// that the plugin's hooks fire and that a relay message reaches the model's requests exactly once.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { childEnv, trackChild, untrackChild } from '../helpers/child.js';
import { startRelay } from '../helpers/relay.js';
import { connectAgent, WsRpc } from '../helpers/ws-client.js';
import { expectedAgentId, logLines, PLUGIN_ROOT, projectDir } from '../claude/fixtures/harness.js';
import { waitFor } from '../helpers/wait.js';

const CLAUDE = fileURLToPath(new URL('../../node_modules/@anthropic-ai/claude-code/bin/claude.exe', import.meta.url));
const API_KEY = 'sk-ant-api03-offline-test-key-0123456789abcdefghij';

interface ModelRequest {
  path: string;
  body: any;
  raw: string;
}

/** A streamed (SSE) or plain JSON Messages API answer: text that ends the turn, or one Bash tool call. */
function answer(req: IncomingMessage, res: ServerResponse, body: any, text: string, bash?: string): void {
  const message = { id: `msg_${randomUUID().slice(0, 8)}`, type: 'message', role: 'assistant', model: body.model ?? 'claude-sonnet-4-5', content: [] as unknown[], stop_reason: null, stop_sequence: null, usage: { input_tokens: 10, output_tokens: 0 } };
  const tool = bash ? { type: 'tool_use', id: `toolu_${randomUUID().replaceAll('-', '').slice(0, 20)}`, name: 'Bash', input: { command: bash, description: 'List relay agents' } } : null;
  const stop = tool ? 'tool_use' : 'end_turn';
  if (!body.stream) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ ...message, content: [tool ?? { type: 'text', text }], stop_reason: stop, usage: { input_tokens: 10, output_tokens: 5 } }));
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  const ev = (type: string, data: unknown) => res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...(data as object) })}\n\n`);
  ev('message_start', { message });
  if (tool) {
    ev('content_block_start', { index: 0, content_block: { ...tool, input: {} } });
    ev('content_block_delta', { index: 0, delta: { type: 'input_json_delta', partial_json: JSON.stringify(tool.input) } });
  } else {
    ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
    ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text } });
  }
  ev('content_block_stop', { index: 0 });
  ev('message_delta', { delta: { stop_reason: stop, stop_sequence: null }, usage: { output_tokens: 5 } });
  ev('message_stop', {});
  res.end();
}

for (const mode of ['--plugin-dir', 'installed'] as const)
t.test(`claude -p with the plugin (${mode}): hooks fire, a relay message handed over by Stop reaches the model once`, { skip: existsSync(CLAUDE) ? false : 'npm ci did not install @anthropic-ai/claude-code' }, async (t) => {
  const relay = await startRelay(t);
  const dir = t.testdir();
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const lead = await connectAgent(t, relay.wsUrl, { id: 'lead' });
  const cwd = projectDir(dir, 'real-proj');
  const sessionId = randomUUID();
  const agentId = expectedAgentId(cwd, sessionId);
  const token = `RELAY-TOKEN-${randomUUID().slice(0, 8)}`;

  // The fake Messages API: every /v1/messages request is recorded. On the first turn's request the
  // test sends the relay message (SessionStart has registered the agent by then), so it can only
  // reach the model through a hook: Stop, after the first answer.
  const requests: ModelRequest[] = [];
  let sent: { id: number } | null = null;
  const server = createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8').on('data', (d: string) => (raw += d));
    req.on('end', async () => {
      const path = req.url ?? '';
      let body: any = {};
      try {
        body = JSON.parse(raw || '{}');
      } catch {
        // not JSON
      }
      if (path.startsWith('/v1/messages/count_tokens')) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ input_tokens: 10 }));
        return;
      }
      if (!path.startsWith('/v1/messages')) {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ type: 'error', error: { type: 'not_found_error', message: path } }));
        return;
      }
      requests.push({ path, body, raw });
      // Side requests (titles, summaries) carry no tools; answer them plainly.
      const main = Array.isArray(body.tools) && body.tools.length > 0;
      const firstMain = main && !sent;
      if (firstMain) sent = (await lead.rpc.call('message/send', { to: agentId, body: `please check the build ${token}` })).message;
      // The first answer runs the context block's kind of command in Bash: `agent-relay` must resolve
      // through the plugin's bin/ on the Bash tool's PATH (nothing else provides it here).
      answer(req, res, body, main ? 'Done.' : 'Title', firstMain ? `agent-relay agents` : undefined);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const apiUrl = `http://127.0.0.1:${(server.address() as { port: number }).port}`;

  const home = join(dir, 'home');
  const config = join(dir, 'claude-config');
  const relayHome = join(dir, 'relay-home');
  mkdirSync(home, { recursive: true });
  mkdirSync(config, { recursive: true });
  writeFileSync(
    join(config, '.claude.json'),
    JSON.stringify({ hasCompletedOnboarding: true, customApiKeyResponses: { approved: [API_KEY.slice(-20)], rejected: [] }, projects: { [cwd]: { hasTrustDialogAccepted: true } } }),
  );
  const env = childEnv(
    {
      HOME: home,
      CLAUDE_CONFIG_DIR: config,
      ANTHROPIC_BASE_URL: apiUrl,
      ANTHROPIC_API_KEY: API_KEY,
      DISABLE_AUTOUPDATER: '1',
      DISABLE_ERROR_REPORTING: '1',
      CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL: '1',
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
      AGENT_RELAY_URL: relay.url,
      AGENT_RELAY_HOME: relayHome,
      NO_COLOR: '1',
    },
    (k) => k.startsWith('AGENT_RELAY_') || k.startsWith('CLAUDE_') || k.startsWith('ANTHROPIC_'),
  );
  if (mode === 'installed') {
    // `claude plugin install` from this checkout as a directory marketplace (2.1.197 runs it in place).
    for (const args of [['plugin', 'marketplace', 'add', join(PLUGIN_ROOT, '..', '..', '..')], ['plugin', 'install', 'agent-relay@agent-relay']]) {
      const c = spawn(CLAUDE, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      c.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
      c.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
      t.equal(await new Promise<number | null>((resolve) => c.once('close', resolve)), 0, `claude ${args.join(' ')} (${out.trim().split('\n').at(-1)})`);
    }
  }
  const started = Date.now();
  const pluginArgs = mode === '--plugin-dir' ? ['--plugin-dir', PLUGIN_ROOT] : [];
  const child = spawn(CLAUDE, ['-p', 'Say done.', ...pluginArgs, '--session-id', sessionId, '--output-format', 'json', '--allowedTools', 'Bash(agent-relay:*)'], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
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

  const main = requests.filter((r) => Array.isArray(r.body.tools) && r.body.tools.length > 0);
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
    // screen was in an interactive session, which this test does not drive.
    t.equal(occurrences, 1, 'exactly once in that request');
    t.match(main[first]!.raw, `#${sent!.id} from lead`, 'with its id and sender');
  }
  t.equal(main.at(-1)!.raw.split(token).length - 1, main[first]?.raw.split(token).length - 1, 'and no later request repeats it');
  t.equal((await observer.call('message/get', { id: sent!.id })).deliveries.find((d: any) => d.agentId === agentId)?.state, 'read', 'marked read after the hand-over');
  t.same(logLines(relayHome), [], 'no hook problem was logged');
  if (code !== 0) t.comment(stdout.slice(0, 2000));
});

t.test('claude plugin validate --strict passes the plugin and the marketplace', { skip: existsSync(CLAUDE) ? false : 'npm ci did not install @anthropic-ai/claude-code' }, async (t) => {
  const dir = t.testdir();
  const env = childEnv({ HOME: dir, CLAUDE_CONFIG_DIR: join(dir, 'config'), DISABLE_AUTOUPDATER: '1', CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1' }, (k) => k.startsWith('CLAUDE_') || k.startsWith('ANTHROPIC_'));
  for (const target of [PLUGIN_ROOT, join(PLUGIN_ROOT, '..', '..', '..')]) {
    const child = spawn(CLAUDE, ['plugin', 'validate', '--strict', target], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
    t.equal(code, 0, `${target}: validate --strict passes (${out.trim().split('\n').slice(-3).join(' / ')})`);
  }
});
