/**
 * The real `codex app-server` (the @openai/codex devDependency, pinned) for the Codex adapter's
 * tests, fully offline: per test a throwaway CODEX_HOME whose config.toml points the model
 * provider at a fake Responses API in this process (node:http on 127.0.0.1), the app-server on a
 * free loopback port behind a recording WebSocket proxy (every frame both ways, to report what the
 * real server sent), a real relay in-process and the real adapter process (bin/codex-relay.js,
 * started by test/codex/harness.ts spawnAdapter). Everything is stopped at teardown.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';
import WebSocket, { WebSocketServer } from 'ws';
import { codexAgentId, loadConfig } from '../../adapters/codex/config.js';
import { TESTED_CODEX_VERSION } from '../../adapters/codex/server-notices.js';
import { agentRecord, relayClients, spawnAdapter, type ChildAdapter } from '../codex/harness.js';
import { ROOT, spawnChild, type TsChild } from '../helpers/child.js';
import { startRelay, type TestRelay } from '../helpers/relay.js';
import type { WsRpc } from '../helpers/ws-client.js';
import { waitFor } from '../helpers/wait.js';

export { agentRecord };

/** The pinned version (package.json devDependencies); the tests print it. */
export const CODEX_VERSION = TESTED_CODEX_VERSION;
const NATIVE: Record<string, [string, string]> = {
  'linux-x64': ['@openai/codex-linux-x64', 'x86_64-unknown-linux-musl'],
  'linux-arm64': ['@openai/codex-linux-arm64', 'aarch64-unknown-linux-musl'],
  'darwin-x64': ['@openai/codex-darwin-x64', 'x86_64-apple-darwin'],
  'darwin-arm64': ['@openai/codex-darwin-arm64', 'aarch64-apple-darwin'],
};

/**
 * How to run codex: the native binary the platform's optional dependency ships (`codex --version`
 * in ~5 ms), else node_modules/@openai/codex/bin/codex.js, which finds and execs the same file
 * after ~250 ms of Node start-up.
 */
export function codexCommand(): { command: string; args: string[] } {
  const native = NATIVE[`${process.platform}-${process.arch}`];
  if (native) {
    const bin = join(ROOT, 'node_modules', native[0], 'vendor', native[1], 'bin', 'codex');
    if (existsSync(bin)) return { command: bin, args: [] };
  }
  const js = join(ROOT, 'node_modules/@openai/codex/bin/codex.js');
  if (!existsSync(js)) throw new Error('@openai/codex is not installed (npm ci installs it as a devDependency)');
  return { command: process.execPath, args: [js] };
}

// ---------------------------------------------------------------------------------------------
// The fake model: POST /v1/responses answered with a Responses API SSE stream.

export interface ModelStep {
  /** The assistant text (default `mock answer N`). */
  text?: string;
  /** Hold the stream open this long after the first delta (the turn stays running). */
  delayMs?: number;
  /** Hold the stream open until this settles. */
  gate?: Promise<unknown>;
  /** Answer with this HTTP status and a JSON error body instead of a stream. */
  status?: number;
  /** Stream a `response.failed` event with this error message instead of completing. */
  failMessage?: string;
  /** Answer with a function call (a tool Codex offers, e.g. exec_command {cmd}) instead of text. */
  call?: { name: string; arguments: Record<string, unknown>; namespace?: string };
}

export interface ModelRequest {
  method: string;
  url: string;
  body: any;
  /** The text of every user message item in `input`, in order. */
  userTexts: string[];
  at: number;
}

export interface FakeModel {
  url: string;
  requests: ModelRequest[];
  /** Requests to POST /v1/responses only. */
  responses(): ModelRequest[];
  /** Queue what the next POST /v1/responses answers (else the default text). */
  next(step: ModelStep): void;
  close(): Promise<void>;
}

function userTextsOf(body: any): string[] {
  const out: string[] = [];
  for (const item of Array.isArray(body?.input) ? body.input : []) {
    if (item?.type !== 'message' || item.role !== 'user') continue;
    for (const c of item.content ?? []) if (typeof c?.text === 'string') out.push(c.text);
  }
  return out;
}

function sse(res: ServerResponse, type: string, data: Record<string, unknown>): void {
  res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
}

export async function startFakeModel(t: Test): Promise<FakeModel> {
  const requests: ModelRequest[] = [];
  const script: ModelStep[] = [];
  const open = new Set<ServerResponse>();
  let n = 0;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (raw += d));
    req.on('end', () => {
      let body: any = null;
      try {
        body = raw ? JSON.parse(raw) : null;
      } catch {
        body = raw;
      }
      requests.push({ method: req.method ?? '', url: req.url ?? '', body, userTexts: userTextsOf(body), at: Date.now() });
      if (req.method !== 'POST' || !req.url?.startsWith('/v1/responses')) {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"message":"not here"}}');
        return;
      }
      void answer(res, script.shift() ?? {});
    });
  });
  async function answer(res: ServerResponse, step: ModelStep): Promise<void> {
    n += 1;
    const id = `resp_${n}`;
    if (step.status) {
      res.writeHead(step.status, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: `fake model error ${step.status}`, type: 'server_error' } }));
      return;
    }
    open.add(res);
    res.on('close', () => open.delete(res));
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    if (step.call) {
      const item = {
        type: 'function_call',
        id: `fc_${n}`,
        call_id: `call_${n}`,
        name: step.call.name,
        ...(step.call.namespace ? { namespace: step.call.namespace } : {}),
        arguments: JSON.stringify(step.call.arguments),
        status: 'completed',
      };
      sse(res, 'response.created', { response: { id, object: 'response', status: 'in_progress', output: [] } });
      sse(res, 'response.output_item.added', { output_index: 0, item: { ...item, arguments: '', status: 'in_progress' } });
      sse(res, 'response.output_item.done', { output_index: 0, item });
      sse(res, 'response.completed', {
        response: {
          id,
          object: 'response',
          status: 'completed',
          output: [item],
          usage: { input_tokens: 10, input_tokens_details: { cached_tokens: 0 }, output_tokens: 5, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 15 },
        },
      });
      res.end();
      return;
    }
    const text = step.text ?? `mock answer ${n}`;
    const msgId = `msg_${n}`;
    sse(res, 'response.created', { response: { id, object: 'response', status: 'in_progress', output: [] } });
    sse(res, 'response.output_item.added', { output_index: 0, item: { type: 'message', id: msgId, role: 'assistant', status: 'in_progress', content: [] } });
    sse(res, 'response.content_part.added', { item_id: msgId, output_index: 0, content_index: 0, part: { type: 'output_text', text: '', annotations: [] } });
    sse(res, 'response.output_text.delta', { item_id: msgId, output_index: 0, content_index: 0, delta: text });
    if (step.delayMs) await new Promise((r) => setTimeout(r, step.delayMs));
    if (step.gate) await step.gate.catch(() => undefined);
    if (res.destroyed) return;
    if (step.failMessage) {
      sse(res, 'response.failed', { response: { id, object: 'response', status: 'failed', error: { code: 'server_error', message: step.failMessage }, output: [] } });
      res.end();
      return;
    }
    const item = { type: 'message', id: msgId, role: 'assistant', status: 'completed', content: [{ type: 'output_text', text, annotations: [] }] };
    sse(res, 'response.output_item.done', { output_index: 0, item });
    sse(res, 'response.completed', {
      response: {
        id,
        object: 'response',
        status: 'completed',
        output: [item],
        usage: { input_tokens: 10, input_tokens_details: { cached_tokens: 0 }, output_tokens: 5, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 15 },
      },
    });
    res.end();
  }
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const close = async () => {
    for (const r of open) r.destroy();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  };
  t.teardown(close);
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    requests,
    responses: () => requests.filter((r) => r.method === 'POST' && r.url.startsWith('/v1/responses')),
    next: (step) => script.push(step),
    close,
  };
}

// ---------------------------------------------------------------------------------------------
// The real app-server.

/** A free loopback port (bound and released: the app-server binds it right after). */
export async function freePort(): Promise<number> {
  const s = createNetServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** The offline config.toml measured to work with 0.171 (see docs/INTEGRATIONS.md). */
export function codexConfigToml(modelBaseUrl: string, approvalPolicy: string = 'never'): string {
  return `model = "mock-model"
model_provider = "mock"
approval_policy = "${approvalPolicy}"
sandbox_mode = "read-only"
check_for_update_on_startup = false
web_search = "disabled"

[model_providers.mock]
name = "Mock"
base_url = "${modelBaseUrl}"
wire_api = "responses"
env_key = "MOCK_API_KEY"
request_max_retries = 0
stream_max_retries = 0
supports_websockets = false

[analytics]
enabled = false

# Without these the app-server reaches for github.com and chatgpt.com.
[features]
plugins = false
remote_plugin = false
plugin_sharing = false
apps = false
in_app_updates = false
tool_suggest = false
image_generation = false
browser_use = false
browser_use_external = false
computer_use = false
skill_mcp_dependency_install = false
shell_snapshot = false
`;
}

export interface Frame {
  dir: 'in' | 'out'; // in: app-server → adapter; out: adapter → app-server
  /** Which proxied connection (1, 2, ...): JSON-RPC ids restart on each. */
  conn: number;
  msg: any;
  at: number;
}

export interface RealAppServer {
  /** The URL the adapter connects to (the recording proxy). */
  url: string;
  /** The app-server's own listen URL. */
  directUrl: string;
  readonly child: TsChild;
  /** SIGKILL the app-server (its threads survive as rollouts in CODEX_HOME). */
  kill(): Promise<void>;
  /** Start it again on the same port and CODEX_HOME. */
  start(): Promise<void>;
  codexHome: string;
  /** Milliseconds from spawn to /readyz 200. */
  startupMs: number;
  /** Every JSON-RPC frame through the proxy, both ways. */
  frames: Frame[];
  /** Notifications the app-server sent, by method. */
  notifications(method?: string): any[];
  /** The app-server's answer to the adapter's request(s) `method`. */
  answers(method: string): Array<{ request: any; response: any }>;
}

export async function startRealAppServer(t: Test, model: FakeModel, o: { approvalPolicy?: string } = {}): Promise<RealAppServer> {
  const dir = t.testdir();
  const codexHome = join(dir, 'codex-home');
  mkdirSync(codexHome, { recursive: true });
  writeFileSync(join(codexHome, 'config.toml'), codexConfigToml(model.url, o.approvalPolicy));
  let port = await freePort();
  let directUrl = `ws://127.0.0.1:${port}`;
  const started = Date.now();
  const spawnServer = async (): Promise<TsChild> => {
    const codex = codexCommand();
    const child = spawnChild(t, codex.command, [...codex.args, 'app-server', '--listen', directUrl], {
      // Whatever the app-server starts (a command's shell) is killed with it.
      group: true,
      cwd: dir,
      env: { PATH: process.env.PATH, HOME: dir, CODEX_HOME: codexHome, MOCK_API_KEY: 'mock-key', RUST_LOG: 'warn', NO_COLOR: '1' },
    });
    let gone = false;
    void child.exited.then(() => (gone = true));
    await waitFor(
      async () => {
        if (gone) throw new Error(`codex app-server exited before /readyz: ${child.stderr().slice(-2000)}`);
        try {
          return (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200;
        } catch {
          return false;
        }
      },
      'codex app-server /readyz',
      20_000,
      50,
    );
    return child;
  };
  // freePort releases the port before the app-server binds it: another test file may take it
  // in between. Only then (the bind failed) start again on another port.
  let child: TsChild;
  for (let attempt = 1; ; attempt++) {
    try {
      child = await spawnServer();
      break;
    } catch (err) {
      if (attempt >= 3 || !/in use/i.test(String(err))) throw err;
      port = await freePort();
      directUrl = `ws://127.0.0.1:${port}`;
    }
  }
  const startupMs = Date.now() - started;
  const frames: Frame[] = [];
  const proxyUrl = await recordingProxy(t, directUrl, frames);
  const answerOf = (req: Frame) => frames.find((f) => f.dir === 'in' && f.conn === req.conn && f.msg?.id === req.msg.id && f.msg.method === undefined)?.msg;
  return {
    url: proxyUrl,
    directUrl,
    get child() {
      return child;
    },
    async kill() {
      child.kill('SIGKILL');
      await child.exited;
    },
    async start() {
      child = await spawnServer();
    },
    codexHome,
    startupMs,
    frames,
    notifications: (method) => frames.filter((f) => f.dir === 'in' && f.msg?.method && f.msg.id === undefined && (!method || f.msg.method === method)).map((f) => f.msg),
    answers: (method) => frames.filter((f) => f.dir === 'out' && f.msg?.method === method && f.msg.id !== undefined).map((f) => ({ request: f.msg, response: answerOf(f) })),
  };
}

/** A WebSocket proxy that records every JSON frame both ways (the adapter sends no Origin, nor does this). */
async function recordingProxy(t: Test, target: string, frames: Frame[]): Promise<string> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  const sockets = new Set<WebSocket>();
  let conns = 0;
  wss.on('connection', (client) => {
    const conn = ++conns;
    const record = (dir: Frame['dir'], text: string) => {
      let msg: any = text;
      try {
        msg = JSON.parse(text);
      } catch {
        // kept as text
      }
      frames.push({ dir, conn, msg, at: Date.now() });
    };
    const upstream = new WebSocket(target);
    sockets.add(client).add(upstream);
    const early: string[] = [];
    const cut = () => {
      client.terminate();
      upstream.terminate();
    };
    upstream.on('open', () => {
      for (const m of early.splice(0)) upstream.send(m);
    });
    upstream.on('message', (d) => {
      const text = d.toString();
      record('in', text);
      if (client.readyState === WebSocket.OPEN) client.send(text);
    });
    client.on('message', (d) => {
      const text = d.toString();
      record('out', text);
      if (upstream.readyState === WebSocket.OPEN) upstream.send(text);
      else early.push(text);
    });
    for (const s of [client, upstream]) {
      s.on('close', cut);
      s.on('error', cut);
    }
  });
  t.teardown(async () => {
    for (const s of sockets) s.terminate();
    await new Promise<void>((r) => wss.close(() => r()));
  });
  return `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;
}

// ---------------------------------------------------------------------------------------------
// The whole rig: fake model, real app-server, relay, adapter process.

export interface RealSetup {
  model: FakeModel;
  app: RealAppServer;
  relay: TestRelay;
  /** The adapter process started last. */
  readonly adapter: ChildAdapter;
  /** Its environment (CODEX_LIVE_*, CODEX_THREAD_*): a restart uses the same. */
  env: NodeJS.ProcessEnv;
  /** Start an adapter process (again, after a kill9: same state file). */
  startAdapter(extra?: NodeJS.ProcessEnv): ChildAdapter;
  agentId: string;
  cwd: string;
  sender(id?: string): Promise<{ rpc: WsRpc; id: string; token: string }>;
  observer(): Promise<WsRpc>;
  /** Wait until the adapter's agent is ready on the relay; the ms it took from the adapter's start. */
  ready(): Promise<number>;
}

/** `deferAdapter`: no adapter process until startAdapter() (prepare threads first). */
export async function realSetup(t: Test, o: { env?: NodeJS.ProcessEnv; approvalPolicy?: string; deferAdapter?: boolean } = {}): Promise<RealSetup> {
  const dir = t.testdir();
  const model = await startFakeModel(t);
  const app = await startRealAppServer(t, model, o);
  const relay = await startRelay(t, {}, { dir: join(dir, 'relay') });
  const cwd = join(dir, 'proj');
  mkdirSync(cwd, { recursive: true });
  const env: NodeJS.ProcessEnv = {
    AGENT_RELAY_URL: relay.url,
    AGENT_RELAY_HOME: join(dir, 'relay-home'),
    CODEX_APP_SERVER_URL: app.url,
    CODEX_LIVE_CWD: cwd,
    CODEX_LIVE_RIG: 'realrig',
    CODEX_LIVE_STATE_PATH: join(dir, 'state', 'codex-state.json'),
    CODEX_LIVE_COALESCE_WINDOW_MS: '300',
    CODEX_LIVE_RECONNECT_INITIAL_MS: '100',
    CODEX_LIVE_RECONNECT_MAX_MS: '300',
    CODEX_LIVE_RECONCILE_INTERVAL_MS: '1000',
    CODEX_LIVE_POLL_INTERVAL_MS: '300',
    CODEX_LIVE_HEARTBEAT_INTERVAL_MS: '5000',
    ...o.env,
  };
  let adapterStart = Date.now();
  let adapter: ChildAdapter | null = null;
  const clients = relayClients(t, relay.wsUrl);
  t.teardown(() => clients.closeAll());
  const s: RealSetup = {
    model,
    app,
    relay,
    get adapter() {
      if (!adapter) throw new Error('no adapter started yet');
      return adapter;
    },
    env,
    startAdapter(extra = {}) {
      adapterStart = Date.now();
      adapter = spawnAdapter(t, { ...env, ...extra });
      return adapter;
    },
    agentId: codexAgentId(loadConfig(env)),
    cwd,
    sender: clients.sender,
    observer: clients.observer,
    async ready() {
      const obs = await s.observer();
      await waitFor(async () => (await agentRecord(obs, s.agentId))?.ready === true, 'the adapter agent to be ready', 20_000).catch((err: Error) => {
        throw new Error(`${err.message} (adapter stderr: ${s.adapter.stderr().slice(-2000)})`);
      });
      return Date.now() - adapterStart;
    },
  };
  if (!o.deferAdapter) s.startAdapter();
  return s;
}

/** A compact, printable trace of the app-server conversation (methods, ids, errors, statuses). */
export function trace(app: RealAppServer, from = 0): string {
  return app.frames
    .slice(from)
    .map((f) => {
      const m = f.msg;
      if (m?.method) {
        const p = m.params ?? {};
        const extra = p.status
          ? ` status=${JSON.stringify(p.status)}`
          : p.turn?.status
            ? ` turn.status=${p.turn.status}${p.turn.error ? ` error=${JSON.stringify(p.turn.error)}` : ''}`
            : p.item?.type
              ? ` item=${p.item.type}`
              : '';
        return `${f.dir === 'out' ? '→' : '←'} ${m.method}${m.id !== undefined ? `#${m.id}` : ''}${extra}`;
      }
      if (m?.error) return `${f.dir === 'out' ? '→' : '←'} error#${m.id} ${m.error.code} ${m.error.message}`;
      return `${f.dir === 'out' ? '→' : '←'} result#${m?.id}`;
    })
    .join('\n');
}
