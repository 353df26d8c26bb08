// What the real Claude Code tests share: the pinned binary, a fake Messages API on 127.0.0.1 that
// records every request, a throwaway Claude config (onboarded, the API key approved, the project
// trusted), the environment that keeps Claude offline, and the plugin installed from this checkout.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';
import { childEnv } from '../helpers/child.js';
import { PLUGIN_ROOT } from '../claude/fixtures/harness.js';

export const CLAUDE = fileURLToPath(new URL('../../node_modules/@anthropic-ai/claude-code/bin/claude.exe', import.meta.url));
export const API_KEY = 'sk-ant-api03-offline-test-key-0123456789abcdefghij';
/** tap's `skip` for tests that need the binary. */
export const NO_CLAUDE: string | false = existsSync(CLAUDE) ? false : 'npm ci did not install @anthropic-ai/claude-code';

export interface ModelRequest {
  path: string;
  body: any;
  raw: string;
}

/** The session's own turns carry tools; side requests (titles, summaries) carry none. */
export function isMain(r: ModelRequest): boolean {
  return Array.isArray(r.body.tools) && r.body.tools.length > 0;
}

/**
 * Answer a Messages API request, streamed (SSE) or plain JSON: text that ends the turn, or one Bash
 * tool call. With `hold`, a stream stops after its first event until `hold` resolves: the turn
 * stays open that long.
 */
export async function answer(res: ServerResponse, body: any, text: string, bash?: string, hold?: Promise<unknown>): Promise<void> {
  const message = {
    id: `msg_${randomUUID().slice(0, 8)}`,
    type: 'message',
    role: 'assistant',
    model: body.model ?? 'claude-sonnet-4-5',
    content: [] as unknown[],
    stop_reason: null,
    stop_sequence: null,
    usage: { input_tokens: 10, output_tokens: 0 },
  };
  const tool = bash ? { type: 'tool_use', id: `toolu_${randomUUID().replaceAll('-', '').slice(0, 20)}`, name: 'Bash', input: { command: bash, description: 'Run a relay command' } } : null;
  const stop = tool ? 'tool_use' : 'end_turn';
  if (!body.stream) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ ...message, content: [tool ?? { type: 'text', text }], stop_reason: stop, usage: { input_tokens: 10, output_tokens: 5 } }));
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  const ev = (type: string, data: object) => res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
  ev('message_start', { message });
  if (hold) await hold;
  ev('content_block_start', { index: 0, content_block: tool ? { ...tool, input: {} } : { type: 'text', text: '' } });
  ev('content_block_delta', { index: 0, delta: tool ? { type: 'input_json_delta', partial_json: JSON.stringify(tool.input) } : { type: 'text_delta', text } });
  ev('content_block_stop', { index: 0 });
  ev('message_delta', { delta: { stop_reason: stop, stop_sequence: null }, usage: { output_tokens: 5 } });
  ev('message_stop', {});
  res.end();
}

/**
 * A fake Messages API on 127.0.0.1: every /v1/messages request is recorded, then `respond` answers
 * it (count_tokens and other paths are answered here). Closed at teardown.
 */
export async function fakeMessagesApi(t: Test, respond: (r: ModelRequest, res: ServerResponse) => Promise<void> | void): Promise<{ url: string; requests: ModelRequest[] }> {
  const requests: ModelRequest[] = [];
  const server = createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8').on('data', (d: string) => (raw += d));
    req.on('end', () => {
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
      const r = { path, body, raw };
      requests.push(r);
      Promise.resolve(respond(r, res)).catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500);
        res.end(String(err));
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, requests };
}

/**
 * An HTTP(S) proxy on 127.0.0.1 that refuses everything (403, CONNECT included) and records the
 * hosts asked for: with HTTPS_PROXY/HTTP_PROXY pointing here an interactive session, which has
 * no CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC, still reaches nothing but the fake API (NO_PROXY).
 */
export async function refusingProxy(t: Test): Promise<{ url: string; asked: string[] }> {
  const asked: string[] = [];
  const server = createServer((req, res) => {
    asked.push(`${req.method} ${req.url}`);
    res.writeHead(403).end();
  });
  server.on('connect', (req, socket) => {
    asked.push(`CONNECT ${req.url}`);
    socket.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, asked };
}

/**
 * A throwaway HOME and CLAUDE_CONFIG_DIR: onboarding done, the API key approved, `cwd` trusted,
 * plus `extra` fields of `.claude.json`.
 */
export function claudeConfig(dir: string, cwd: string, extra: Record<string, unknown> = {}): { home: string; config: string } {
  const home = join(dir, 'home');
  const config = join(dir, 'claude-config');
  mkdirSync(home, { recursive: true });
  mkdirSync(config, { recursive: true });
  writeFileSync(
    join(config, '.claude.json'),
    JSON.stringify({ hasCompletedOnboarding: true, customApiKeyResponses: { approved: [API_KEY.slice(-20)], rejected: [] }, projects: { [cwd]: { hasTrustDialogAccepted: true } }, ...extra }),
  );
  return { home, config };
}

/**
 * The environment of a Claude session against the fake API and `relayUrl`, with no relay, Claude or
 * Anthropic setting from the developer's shell. `offline` keeps it from reaching anything else:
 * `essential` sets CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC (fine for -p; it also turns monitors
 * off), or a proxy URL that refuses everything.
 */
export function claudeEnv(o: { home: string; config: string; apiUrl: string; relayUrl: string; relayHome: string; offline: 'essential' | { proxy: string } }): NodeJS.ProcessEnv {
  const offline: Record<string, string> =
    o.offline === 'essential' ? { CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1' } : { HTTPS_PROXY: o.offline.proxy, HTTP_PROXY: o.offline.proxy, NO_PROXY: '127.0.0.1,localhost' };
  return childEnv(
    {
      HOME: o.home,
      CLAUDE_CONFIG_DIR: o.config,
      ANTHROPIC_BASE_URL: o.apiUrl,
      ANTHROPIC_API_KEY: API_KEY,
      DISABLE_AUTOUPDATER: '1',
      DISABLE_ERROR_REPORTING: '1',
      CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL: '1',
      AGENT_RELAY_URL: o.relayUrl,
      AGENT_RELAY_HOME: o.relayHome,
      NO_COLOR: '1',
      ...offline,
    },
    (k) => k.startsWith('AGENT_RELAY_') || k.startsWith('CLAUDE_') || k.startsWith('ANTHROPIC_') || /^(https?_proxy|no_proxy|all_proxy|DISABLE_TELEMETRY|DO_NOT_TRACK|DISABLE_GROWTHBOOK)$/i.test(k),
  );
}

/** `claude plugin install` from this checkout as a directory marketplace (2.1.197 runs it in place). */
export async function installPlugin(t: Test, env: NodeJS.ProcessEnv, cwd: string): Promise<void> {
  for (const args of [
    ['plugin', 'marketplace', 'add', join(PLUGIN_ROOT, '..', '..', '..')],
    ['plugin', 'install', 'agent-relay@agent-relay'],
  ]) {
    const c = spawn(CLAUDE, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    c.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
    t.equal(await new Promise<number | null>((resolve) => c.once('close', resolve)), 0, `claude ${args.join(' ')} (${out.trim().split('\n').at(-1)})`);
  }
}
