/**
 * Shared set-up for the Codex adapter's end-to-end tests: a real relay in-process, the fake
 * app-server, and the real CodexBridge in-process (or as a child process), all on 127.0.0.1 and
 * all stopped at teardown. Every wait is bounded and waits for a condition, never for a time.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';
import { CodexBridge } from '../../adapters/codex/bridge.js';
import { codexAgentId, loadConfig, type CodexAdapterConfig } from '../../adapters/codex/config.js';
import { startFakeAppServer, type FakeAppServer, type FakeAppServerOptions } from '../fakes/codex-app-server.js';
import { ROOT, trackChild, untrackChild } from '../helpers/child.js';
import { startRelay, type TestRelay } from '../helpers/relay.js';
import { connectAgent, WsRpc } from '../helpers/ws-client.js';
import { waitFor } from '../helpers/wait.js';

export { ROOT };

/** Poll `cond` every 20 ms until it holds; fail after `timeoutMs` naming `what`. */

/** Resolve after the adapter had a chance to (wrongly) act: used only before "nothing happened" checks. */
export function settle(ms = 400): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** `p`'s value, or `fallback` when it has not settled within `ms` (the timer does not linger). */
export async function within<T, F>(p: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<F>((r) => (timer = setTimeout(() => r(fallback), ms)));
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The delivery state of message `id` for `agentId`, as message/get reports it. */
export async function deliveryState(rpc: WsRpc, id: number, agentId: string): Promise<string | undefined> {
  const r = await rpc.call('message/get', { id });
  return r.deliveries.find((d: any) => d.agentId === agentId)?.state;
}

export interface BridgeHandle {
  bridge: CodexBridge;
  config: CodexAdapterConfig;
  logs: string[];
  /** run()'s outcome: 'stopped', or the fatal error. */
  outcome: Promise<'stopped' | Error>;
  stop(): Promise<void>;
}

export interface Setup {
  relay: TestRelay;
  fake: FakeAppServer;
  dir: string;
  cwd: string;
  home: string;
  statePath: string;
  /** The environment a bridge of this set-up is started with (override per bridge). */
  env: NodeJS.ProcessEnv;
  agentId: string;
  /** Start a CodexBridge in-process; stopped at teardown. */
  startBridge(extra?: NodeJS.ProcessEnv): BridgeHandle;
  /** A relay agent sending to the adapter (it receives the replies). */
  sender(id?: string): Promise<{ rpc: WsRpc; id: string; token: string }>;
  /** An observer connection to query the relay. */
  observer(): Promise<WsRpc>;
  /** The adapter's thread once attached. */
  threadId(): Promise<string>;
  /** Wait until the adapter is attached and ready on the relay. */
  ready(): Promise<string>;
}

export async function setup(t: Test, o: { fake?: FakeAppServerOptions; env?: NodeJS.ProcessEnv; cwdName?: string } = {}): Promise<Setup> {
  const dir = t.testdir();
  const relay = await startRelay(t, {}, { dir: join(dir, 'relay') });
  const fake = await startFakeAppServer({ defaultCwd: '/nowhere', ...o.fake });
  const cwd = join(dir, o.cwdName ?? 'proj');
  mkdirSync(cwd, { recursive: true });
  const home = join(dir, 'home');
  const statePath = join(dir, 'state', 'codex-state.json');
  const env: NodeJS.ProcessEnv = {
    AGENT_RELAY_URL: relay.url,
    AGENT_RELAY_HOME: home,
    CODEX_APP_SERVER_URL: fake.url,
    CODEX_LIVE_CWD: cwd,
    CODEX_LIVE_RIG: 'testrig',
    CODEX_LIVE_STATE_PATH: statePath,
    CODEX_LIVE_COALESCE_WINDOW_MS: '150',
    CODEX_LIVE_RECONNECT_INITIAL_MS: '100',
    CODEX_LIVE_RECONNECT_MAX_MS: '300',
    CODEX_LIVE_RECONCILE_INTERVAL_MS: '500',
    CODEX_LIVE_POLL_INTERVAL_MS: '300',
    CODEX_LIVE_HEARTBEAT_INTERVAL_MS: '5000',
    ...o.env,
  };
  const bridges: BridgeHandle[] = [];
  const clients = relayClients(t, relay.wsUrl);
  // One teardown, in this order: adapters first (they talk to both), then the fake; the relay
  // closes with its own teardown.
  t.teardown(async () => {
    for (const b of bridges) await b.stop();
    await clients.closeAll();
    await fake.close();
  });
  const s: Setup = {
    relay,
    fake,
    dir,
    cwd,
    home,
    statePath,
    env,
    agentId: codexAgentId(loadConfig(env)),
    startBridge(extra = {}) {
      const logs: string[] = [];
      const config = loadConfig({ ...env, ...extra }, (w) => logs.push(`config warn: ${w}`));
      const bridge = new CodexBridge(config, {
        info: (m) => logs.push(`info: ${m}`),
        warn: (m) => logs.push(`warn: ${m}`),
        error: (m) => logs.push(`error: ${m}`),
      });
      const outcome = bridge.run().then(
        () => 'stopped' as const,
        (err: Error) => err,
      );
      const h: BridgeHandle = { bridge, config, logs, outcome, stop: () => bridge.stop() };
      bridges.push(h);
      return h;
    },
    sender: clients.sender,
    observer: clients.observer,
    async threadId() {
      let id: string | undefined;
      await waitFor(() => {
        id = fake.threadIds().find((x) => fake.subscribers(x).length > 0);
        return id !== undefined;
      }, 'the adapter to subscribe to a thread');
      return id!;
    },
    async ready() {
      const obs = await s.observer();
      await waitFor(async () => {
        const { agents } = await obs.call('agent/list', {});
        return agents.some((a: any) => a.id === s.agentId && a.ready);
      }, 'the adapter agent to be ready');
      return s.threadId();
    },
  };
  return s;
}

/** The relay agent record of the adapter, as an observer sees it. */
export async function agentRecord(rpc: WsRpc, id: string): Promise<Record<string, any> | undefined> {
  const { agents } = await rpc.call('agent/list', {});
  return agents.find((a: any) => a.id === id);
}

/** How many texts the thread received that carry message `id` (as "Message #id from"). */
export function occurrences(fake: FakeAppServer, threadId: string, id: number): number {
  return fake.turnInputs(threadId).filter((text) => text.includes(`Message #${id} from`)).length;
}

/** Messages the sender received that reply to `id`. */
export function repliesTo(rpc: WsRpc, id: number): Array<Record<string, any>> {
  return rpc.messages().filter((m) => m.replyTo === id);
}

export interface ChildAdapter {
  child: ChildProcess;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill9(): Promise<void>;
}

/** Run `node bin/codex-relay.js` with `env` (a real process, for kill -9). */
export function spawnAdapter(t: Test, env: NodeJS.ProcessEnv): ChildAdapter {
  const child = spawn(process.execPath, [join(ROOT, 'bin/codex-relay.js')], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const kill9 = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  };
  t.teardown(kill9);
  trackUntilExit(child);
  return { child, stderr: () => err, exited, kill9 };
}

/** Kill the child with the test process if it is still running then. */
function trackUntilExit(child: ChildProcess): void {
  const pid = child.pid;
  if (pid === undefined) return;
  trackChild(pid);
  child.once('exit', () => untrackChild(pid));
}

export interface WsProxy {
  url: string;
  /** The next client→server frame matching `match` is swallowed and both sockets cut at once. */
  cutOn(match: (msg: any) => boolean, then?: () => void): void;
  close(): Promise<void>;
}

/**
 * A message-level WebSocket proxy in front of the fake app-server, to lose one frame on its way
 * (a request the server never receives, as when a network drop eats it).
 */
export async function startWsProxy(t: Test, target: () => string): Promise<WsProxy> {
  const { WebSocketServer, default: WebSocket } = await import('ws');
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  let rule: { match: (msg: any) => boolean; then?: (() => void) | undefined } | null = null;
  const pairs = new Set<{ client: InstanceType<typeof WebSocket>; upstream: InstanceType<typeof WebSocket> }>();
  wss.on('connection', (client) => {
    const upstream = new WebSocket(target());
    const pair = { client, upstream };
    pairs.add(pair);
    const early: string[] = [];
    const cut = () => {
      pairs.delete(pair);
      client.terminate();
      upstream.terminate();
    };
    upstream.on('open', () => {
      for (const m of early.splice(0)) upstream.send(m);
    });
    upstream.on('message', (d) => client.readyState === WebSocket.OPEN && client.send(d.toString()));
    upstream.on('close', cut);
    upstream.on('error', cut);
    client.on('close', cut);
    client.on('error', cut);
    client.on('message', (d) => {
      const text = d.toString();
      let msg: any = null;
      try {
        msg = JSON.parse(text);
      } catch {
        // forwarded as is
      }
      if (rule && msg && rule.match(msg)) {
        const then = rule.then;
        rule = null;
        cut();
        then?.();
        return;
      }
      if (upstream.readyState === WebSocket.OPEN) upstream.send(text);
      else early.push(text);
    });
  });
  const close = async () => {
    for (const p of pairs) {
      p.client.terminate();
      p.upstream.terminate();
    }
    await new Promise<void>((r) => wss.close(() => r()));
  };
  t.teardown(close);
  return {
    url: `ws://127.0.0.1:${(wss.address() as import('node:net').AddressInfo).port}`,
    cutOn(match, then) {
      rule = { match, then };
    },
    close,
  };
}

/** Release a held turn and wait (bounded) until it has ended. */
export async function completeTurn(fake: FakeAppServer, threadId: string, timeoutMs = 8000): Promise<void> {
  const r = await within(
    fake.completeTurn(threadId).then(() => 'done' as const),
    timeoutMs,
    'timeout' as const,
  );
  if (r === 'timeout') throw new Error(`the turn of ${threadId} did not end within ${timeoutMs} ms (an approval left unanswered?)`);
}

/** The relay clients a setup hands its test (a sender agent, an observer), closed by `closeAll`. */
export function relayClients(t: Test, wsUrl: string) {
  const rpcs: WsRpc[] = [];
  return {
    async sender(id = 'alice') {
      const a = await connectAgent(t, wsUrl, { id });
      rpcs.push(a.rpc);
      return a;
    },
    async observer() {
      const rpc = await WsRpc.connect(t, wsUrl);
      rpcs.push(rpc);
      return rpc;
    },
    async closeAll() {
      for (const r of rpcs) await r.close();
    },
  };
}
