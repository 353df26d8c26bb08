/**
 * A protocol-faithful fake of `codex app-server --listen ws://127.0.0.1:PORT`, for adapter tests.
 *
 * What it models (see docs/INTEGRATIONS.md, "Codex app-server over WebSocket"):
 * - one node:http server answering GET /readyz and /healthz, refusing anything with an Origin
 *   header (403, upgrades included), and upgrading every other request to a WebSocket;
 * - one JSON message per text frame, never a `jsonrpc` member (tolerated when received),
 *   unparseable frames dropped without a reply, kinds told apart by their members;
 * - the per-connection handshake ("Not initialized" / "Already initialized");
 * - threads in SERVER scope (they outlive connections, and `restart()` keeps them), with
 *   subscriptions per connection: events and approval requests reach subscribed connections only;
 * - scripted turns that emit the real notification order (0.171: status idle BEFORE
 *   turn/completed, which carries the final agentMessage), a busy turn/start answered with the
 *   running turn's id (the text folds in; `phantomWhenBusy` brings back the older phantom id),
 *   steer, interrupt, approvals as server→client requests held until a valid answer, failures;
 * - 0.171's reads: `thread/read {includeTurns}` refused before the first turn and answered with
 *   a `deprecationNotice` after; `thread/turns/list` (paged, newest first, "not materialized yet"
 *   before the first turn); `thread/resume {excludeTurns}`; `emittedAtMs` on every notification;
 * - levers for what goes wrong in the field: turn/started before the turn/start response, a
 *   swallowed notification, overload (-32001), another process holding the thread ("active
 *   writer"), dropped connections, a listener that goes away and comes back.
 *
 * Every frame received and sent is recorded for assertions. Error codes: the real server answers
 * protocol misuse (handshake, unknown threads, bad params, resume/steer errors) with -32600
 * "invalid request" (unknown methods too); the fake does the same everywhere except overload
 * (-32001) and 0.171's "list_turns is not supported yet" (-32601). test/codex-real/fake-parity.test.ts
 * holds the fake to the real server's answers.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import WebSocket, { WebSocketServer } from 'ws';

// ---------------------------------------------------------------------------------------------
// Exported types
// ---------------------------------------------------------------------------------------------

export type ThreadStatus = { type: 'idle' | 'notLoaded' | 'systemError' } | { type: 'active'; activeFlags: string[] };
export type TurnStatus = 'inProgress' | 'completed' | 'interrupted' | 'failed';

/**
 * Server→client requests the fake can send. `unknown` is a method the client cannot know (the
 * client must answer it with a JSON-RPC error rather than stay silent).
 */
export type ApprovalKind = 'commandExecution' | 'fileChange' | 'permissions' | 'userInput' | 'elicitation' | 'unknown';

export const APPROVAL_METHODS: Record<ApprovalKind, string> = {
  commandExecution: 'item/commandExecution/requestApproval',
  fileChange: 'item/fileChange/requestApproval',
  permissions: 'item/permissions/requestApproval',
  userInput: 'item/tool/requestUserInput',
  elicitation: 'mcpServer/elicitation/request',
  unknown: 'item/fakeFuture/requestSomething',
};

/** The only decisions v2 accepts for command and file-change approvals (v1 words are wrong). */
export const VALID_DECISIONS = ['accept', 'acceptForSession', 'decline', 'cancel'] as const;

/**
 * What 0.171.0 lists for a command outside the exec policy (measured): accept, accept and add
 * the proposed rule (the command's argv) to the exec policy, cancel. No acceptForSession, no
 * decline.
 */
export function realAvailableDecisions(argv: string[]): unknown[] {
  return ['accept', { acceptWithExecpolicyAmendment: { execpolicy_amendment: argv } }, 'cancel'];
}

/** How 0.171.0 wraps a command for approval (measured): `/bin/bash -lc '<command>'`. */
export function shellString(command: string): string {
  return `/bin/bash -lc '${command.replace(/'/g, `'\\''`)}'`;
}

export interface ApprovalSpec {
  kind: ApprovalKind;
  /** commandExecution: the plain command (default "npm test"); sent wrapped as by 0.171.0. */
  command?: string;
  /**
   * commandExecution: the request's `availableDecisions` (default realAvailableDecisions of the
   * command's words); null sends none, as Codex before them did.
   */
  availableDecisions?: unknown[] | null;
  /** commandExecution: the older request shape: the plain command, no commandActions, no availableDecisions. */
  legacy?: boolean;
  reason?: string;
  /** fileChange: the root asked for session-scoped write access (default null). */
  grantRoot?: string | null;
  /** unknown: the method name to send (default APPROVAL_METHODS.unknown). */
  method?: string;
}

/** Per-turn context handed to `reply` and `turnScript`. */
export interface TurnContext {
  threadId: string;
  turnId: string;
  /** All text the turn received so far (start, folded, steered), joined with "\n". */
  text: string;
  inputs: string[];
  /** 0-based position of this turn in its thread. */
  index: number;
}

/** What one turn does; returned by `turnScript`, fields override the server options. */
export interface TurnPlan {
  /** The agent's final text (default: `reply(text, ctx)`). */
  reply?: string;
  /** Keep the turn running until `completeTurn(threadId)` (default: opts.holdTurns). */
  hold?: boolean;
  /** Server→client requests sent one after the other mid-turn; each must be answered. */
  approvals?: Array<ApprovalKind | ApprovalSpec>;
  /** Fail the turn with this message (`error` willRetry:false, then turn/completed failed). */
  fail?: string;
  /** Number of item/agentMessage/delta chunks (default: opts.deltaCount). */
  deltas?: number;
}

export interface FakeAppServerOptions {
  /** Port to listen on (default 0: ephemeral). `restart()` reuses the port first bound. */
  port?: number;
  /** Version inside userAgent (default FAKE_CODEX_VERSION). */
  version?: string;
  codexHome?: string;
  /** cwd of threads started without one (default process.cwd()). */
  defaultCwd?: string;
  defaultModel?: string;
  /** The agent's reply for a turn (default `echo: <text>`). */
  reply?: (text: string, ctx: TurnContext) => string;
  /** Turns keep running until `completeTurn(threadId)` (default false). */
  holdTurns?: boolean;
  /** Per-turn plan, called when the turn starts. */
  turnScript?: (ctx: TurnContext) => TurnPlan | undefined;
  /** Lever: send thread/status/changed + turn/started BEFORE the turn/start response. */
  turnStartedBeforeResponse?: boolean;
  /** Delta chunks per agent message (default 2). */
  deltaCount?: number;
  /** Pause between two notifications of a turn (default 0: one event-loop turn). */
  stepDelayMs?: number;
  /** Lever: the order 0.171 sent for 1 turn in 11: turn/completed, then the idle status. */
  completedBeforeIdle?: boolean;
  /** Lever: turn/completed this long after the idle status (a reconcile read lands in between). */
  completedDelayMs?: number;
  /** Lever: called before a request is handled (e.g. a person starts a turn right then). */
  beforeRequest?: (method: string, params: any) => void;
  /** Lever (pre-0.171 servers): no thread/turns/list; includeTurns works before the first turn, with no notice. */
  legacyReads?: boolean;
  /** Lever (pre-0.171 servers): a busy turn/start answers a phantom id that never starts. */
  phantomWhenBusy?: boolean;
}

/** One frame received. `msg` is null for an unparseable frame (dropped without reply). */
export interface Received {
  conn: number;
  msg: any;
  raw: string;
  at: number;
}

export interface Sent {
  conn: number;
  msg: any;
}

/** A text a thread received: the start of a turn, text folded into a running turn, or a steer. */
export interface InputRecord {
  threadId: string;
  /** The turn that carries the text (the running one for fold and steer). */
  turnId: string;
  text: string;
  via: 'start' | 'fold' | 'steer' | 'control';
  /** For `fold`: the id the turn/start answer carried (the running turn's, or a phantom). */
  answeredTurnId?: string;
  /** Connection that sent it (null for control calls). */
  conn: number | null;
}

/** How a server→client request ended. */
export interface ApprovalAnswer {
  requestId: number;
  method: string;
  threadId: string;
  turnId: string;
  /** `result.decision` (commandExecution, fileChange); undefined for the other kinds. */
  decision?: unknown;
  result?: any;
  /** Set when the client answered with a JSON-RPC error (the right answer to `unknown`). */
  error?: { code: number; message: string; data?: unknown };
  /** Connection whose answer counted. */
  conn?: number;
  /** True when the turn ended (interrupt, failure, close) before any valid answer. */
  cleared?: boolean;
}

/** A promise of the answer, with the request id known at once. */
export type ApprovalHandle = Promise<ApprovalAnswer> & { requestId: number };

/** An answer the fake refused (v1 words, wrong shape, unknown id...): the request stays pending. */
export interface InvalidAnswer {
  conn: number;
  requestId: unknown;
  method: string | null;
  msg: any;
  reason: string;
}

export interface PendingRequestInfo {
  requestId: number;
  method: string;
  kind: ApprovalKind;
  threadId: string;
  turnId: string;
  params: Record<string, unknown>;
}

/** Pre-create a thread (as if an earlier Codex session or another client made it). */
export interface AddThreadOptions {
  id?: string;
  cwd: string;
  /** In memory in this server (status idle) or only on disk (notLoaded). Default false. */
  loaded?: boolean;
  /** User texts of past completed turns; [] means it never ran a turn (not resumable, not listed). Default ["(earlier work)"]. */
  pastTurns?: string[];
  /** Unix seconds. Default now. */
  updatedAt?: number;
  createdAt?: number;
  preview?: string;
  model?: string;
  /** Status systemError (loaded). */
  systemError?: boolean;
  /** Another app-server process holds it: thread/resume fails "already has an active writer". */
  activeWriter?: boolean;
  /** A client already asked it for includeTurns before its first turn (0.171 then answers -32601). */
  askedForTurns?: boolean;
}

export interface ConnectionInfo {
  id: number;
  open: boolean;
  initialized: boolean;
  /** The client sent the `initialized` notification. */
  initializedNotified: boolean;
  clientInfo: unknown;
  headers: http.IncomingHttpHeaders;
}

// ---------------------------------------------------------------------------------------------
// Internal records
// ---------------------------------------------------------------------------------------------

interface Conn {
  id: number;
  ws: WebSocket;
  initialized: boolean;
  initializedNotified: boolean;
  clientInfo: unknown;
  optOut: Set<string>;
  headers: http.IncomingHttpHeaders;
}

interface TurnRec {
  id: string;
  threadId: string;
  index: number;
  status: TurnStatus;
  error: { message: string; codexErrorInfo: unknown; additionalDetails: unknown } | null;
  /** Unix seconds; completedAt stays null for a turn cut off by the process going away (0.171). */
  startedAt: number;
  completedAt: number | null;
  items: any[];
  inputs: string[];
  plan: TurnPlan;
  hold: boolean;
  released: boolean;
  /** False until turn/started and the userMessage items went out. */
  working: boolean;
  /** Server requests asked for before `working`: sent then, to keep the real order. */
  deferred: Array<() => void>;
  pending: Set<number>;
  wakers: Array<() => void>;
  done: Promise<void>;
  finish: () => void;
}

interface ThreadRec {
  id: string;
  cwd: string;
  model: string;
  approvalPolicy: unknown;
  sandbox: string;
  createdAt: number;
  updatedAt: number;
  /** Tie-breaker for updatedAt (seconds are coarse). */
  touchSeq: number;
  preview: string | null;
  loaded: boolean;
  systemError: boolean;
  activeWriter: boolean;
  turns: TurnRec[];
  active: TurnRec | null;
  subscribers: Set<Conn>;
  /** Asked for includeTurns before its first turn: 0.171 then refuses turns/list and resume with -32601 until that turn. */
  listTurnsRefused: boolean;
  /** Unsubscribed connections that started a turn here: 0.171 sends them status changes only. */
  watchers: Set<Conn>;
  /** Last status announced with thread/status/changed, to announce changes only. */
  lastAnnounced: string;
}

interface PendingRequest extends PendingRequestInfo {
  /** Item announced with item/started, completed after the answer (command, file change). */
  item: any | null;
  /** null if acceptable, else why the answer is refused. */
  validate: (result: any) => string | null;
  /** Decisions only: null if valid, else why it fails the item (the request is settled anyway). */
  invalidDecision?: (result: any) => string | null;
  resolve: (a: ApprovalAnswer) => void;
}

class RpcFailure extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/** The release the fake models (the pinned @openai/codex). */
export const FAKE_CODEX_VERSION = '0.171.0';
const INVALID_REQUEST = -32600;
const METHOD_NOT_FOUND = -32601;
const LIST_TURNS_UNSUPPORTED = 'list_turns is not supported yet';
const TURNS_DEPRECATED = 'Full-history hydration is deprecated for paginated threads; omit includeTurns or set it to false, then page with thread/turns/list and thread/items/list.';
const RESUME_TURNS_DEPRECATED = 'Full-history hydration is deprecated for paginated threads; use `excludeTurns: true`, then page with thread/turns/list and thread/items/list.';
const OVERLOADED = -32001;
const APPROVAL_POLICIES = ['untrusted', 'on-failure', 'on-request', 'never'];
const SANDBOX_MODES = ['read-only', 'workspace-write', 'danger-full-access'];

const nowSeconds = (): number => Math.floor(Date.now() / 1000);

/** A UUIDv7: 48-bit ms timestamp, version 7, variant 10, random rest (what Codex ids look like). */
export function uuidv7(): string {
  const b = randomBytes(16);
  let ms = Date.now();
  for (let i = 5; i >= 0; i--) {
    b[i] = ms % 256;
    ms = Math.floor(ms / 256);
  }
  b[6] = (b[6]! & 0x0f) | 0x70;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function textOf(input: unknown): string {
  if (!Array.isArray(input)) throw new RpcFailure(INVALID_REQUEST, 'Invalid request: missing field `input`');
  return input
    .filter((i) => i && typeof i === 'object' && (i as any).type === 'text')
    .map((i) => String((i as any).text ?? ''))
    .join('\n');
}

function splitChunks(text: string, n: number): string[] {
  if (!text) return [];
  const count = Math.max(1, Math.min(n, text.length));
  const size = Math.ceil(text.length / count);
  const out: string[] = [];
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size));
  return out;
}

/** The SandboxPolicy object the real server reports back for a sandbox mode string. */
function sandboxPolicy(mode: string, cwd: string): Record<string, unknown> {
  if (mode === 'danger-full-access') return { type: 'dangerFullAccess' };
  if (mode === 'read-only') return { type: 'readOnly', networkAccess: false };
  return { type: 'workspaceWrite', writableRoots: [cwd], networkAccess: false, excludeTmpdirEnvVar: false, excludeSlashTmp: false };
}

// ---------------------------------------------------------------------------------------------
// The fake
// ---------------------------------------------------------------------------------------------

export class FakeAppServer {
  /** Options, mutable mid-test (e.g. `fake.opts.holdTurns = true`). */
  readonly opts: FakeAppServerOptions;
  /** Every frame received, in order, with the connection id. */
  readonly received: Received[] = [];
  /** Every frame sent, in order. */
  readonly sent: Sent[] = [];
  /** Notifications swallowed by `dropNext` (method + params). */
  readonly dropped: Array<{ method: string; params: any }> = [];
  /** Valid answers to server→client requests. */
  readonly answers: ApprovalAnswer[] = [];
  /**
   * Answers refused (wrong shape, unknown or settled request id; the real server ignores those)
   * and invalid decisions (v1 words: like the real server, they settle the request and fail
   * the item).
   */
  readonly invalidAnswers: InvalidAnswer[] = [];
  /** The turn ids a turn/start on a busy thread was answered with (the running turn's, or phantoms). */
  readonly busyTurnStarts: string[] = [];
  /** Valid decisions the request did not list in `availableDecisions` (honoured, as 0.171.0 does). */
  readonly unofferedAnswers: ApprovalAnswer[] = [];
  /** Every text received by any thread, in order. */
  readonly inputs: InputRecord[] = [];

  private http: http.Server | null = null;
  private readonly wss = new WebSocketServer({ noServer: true });
  private readonly conns = new Map<number, Conn>();
  private readonly threads = new Map<string, ThreadRec>();
  private readonly serverRequests = new Map<number, PendingRequest>();
  private readonly dropCounts = new Map<string, number>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private waiters: Array<() => void> = [];
  private nextConnId = 1;
  /** Server→client request ids: integers from 0, server-wide (replays keep them). */
  private nextRequestId = 0;
  private overloadLeft = 0;
  private touchCounter = 0;
  private boundPort = 0;
  private closed = false;
  private totalConns = 0;

  constructor(opts: FakeAppServerOptions = {}) {
    this.opts = { ...opts };
  }

  // ------------------------------------------------------------------ lifecycle and transport

  /** Listen on 127.0.0.1 (the port first bound is reused by `restart()`). */
  async listen(): Promise<void> {
    if (this.http) return;
    const server = http.createServer((req, res) => this.onHttp(req, res));
    server.on('upgrade', (req, socket, head) => this.onUpgrade(req, socket, head));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.boundPort || this.opts.port || 0, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.http = server;
    this.boundPort = (server.address() as AddressInfo).port;
  }

  get port(): number {
    return this.boundPort;
  }

  get url(): string {
    return `ws://127.0.0.1:${this.boundPort}`;
  }

  /** Open WebSocket connections right now. */
  get connections(): number {
    return this.conns.size;
  }

  /** Connections accepted since start. */
  get totalConnections(): number {
    return this.totalConns;
  }

  get listening(): boolean {
    return this.http !== null;
  }

  /** GET /readyz and /healthz answer 200; a request carrying Origin is refused like the real one. */
  private onHttp(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (req.headers.origin !== undefined) {
      res.writeHead(403).end('Forbidden');
      return;
    }
    const path = (req.url ?? '').split('?')[0];
    if (req.method === 'GET' && (path === '/readyz' || path === '/healthz')) {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('OK');
      return;
    }
    res.writeHead(404).end('Not Found');
  }

  /** Upgrades carrying Origin get 403 (browsers send it; the adapter must not). */
  private onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    if (req.headers.origin !== undefined) {
      socket.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws, req));
  }

  private onConnection(ws: WebSocket, req: http.IncomingMessage): void {
    const conn: Conn = { id: this.nextConnId++, ws, initialized: false, initializedNotified: false, clientInfo: null, optOut: new Set(), headers: req.headers };
    this.conns.set(conn.id, conn);
    this.totalConns++;
    ws.on('message', (data, isBinary) => {
      if (isBinary) return; // text frames only
      this.onFrame(conn, data.toString());
    });
    ws.on('error', () => undefined); // 'close' follows
    ws.on('close', () => {
      this.conns.delete(conn.id);
      // Threads stay loaded (server scope); only the subscription goes.
      for (const t of this.threads.values()) {
        t.subscribers.delete(conn);
        t.watchers.delete(conn);
      }
      this.changed();
    });
    this.changed();
  }

  /**
   * Lever: cut every WebSocket. Default is an abrupt drop (no close frame, like a network
   * failure); `{graceful: true}` sends close 1001. Resolves once every socket is closed.
   */
  async dropConnections(opts: { graceful?: boolean } = {}): Promise<void> {
    const closing = [...this.conns.values()].map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.ws.readyState === WebSocket.CLOSED) return resolve();
          c.ws.once('close', () => resolve());
          if (opts.graceful) c.ws.close(1001, 'going away');
          else c.ws.terminate();
        }),
    );
    await Promise.all(closing);
  }

  /**
   * Lever: stop listening (connections dropped, new ones refused with ECONNREFUSED). Threads,
   * turns and pending approvals stay: the "server" is still there, just unreachable.
   */
  async stop(): Promise<void> {
    await this.dropConnections();
    const server = this.http;
    this.http = null;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /**
   * Listen again on the same port. `{fresh: true}` models a new app-server PROCESS: threads stay
   * on disk but none is loaded any more, running turns are lost and pending requests cleared.
   */
  async restart(opts: { fresh?: boolean } = {}): Promise<void> {
    await this.stop();
    if (opts.fresh) for (const t of this.threads.values()) this.unload(t, false);
    await this.listen();
  }

  /** Stop everything; safe to call twice. Pending approval promises resolve with `cleared`. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    for (const t of this.threads.values()) if (t.active) this.wake(t.active);
    for (const p of [...this.serverRequests.values()]) this.clearRequest(p);
    await this.stop();
    this.wss.close();
    this.changed();
  }

  // ------------------------------------------------------------------ framing

  private onFrame(conn: Conn, raw: string): void {
    let msg: any = null;
    try {
      msg = JSON.parse(raw);
    } catch {
      msg = null;
    }
    this.received.push({ conn: conn.id, msg, raw, at: Date.now() });
    this.changed();
    // Unparseable or not an object: dropped without a reply, as the real server does.
    if (!msg || typeof msg !== 'object' || Array.isArray(msg)) return;
    const hasId = msg.id !== undefined && msg.id !== null;
    if (typeof msg.method === 'string' && hasId) this.onRequest(conn, msg);
    else if (typeof msg.method === 'string') this.onClientNotification(conn, msg);
    else if (hasId && ('result' in msg || 'error' in msg)) this.onAnswer(conn, msg);
  }

  private send(conn: Conn, msg: Record<string, unknown>): void {
    if (conn.ws.readyState !== WebSocket.OPEN) return;
    this.sent.push({ conn: conn.id, msg });
    conn.ws.send(JSON.stringify(msg)); // never a `jsonrpc` member
  }

  private notify(conn: Conn, method: string, params: Record<string, unknown>): void {
    if (conn.optOut.has(method)) return;
    this.send(conn, { method, params, emittedAtMs: Date.now() });
  }

  /** A thread event to its subscribers, unless the drop lever swallows it. */
  private emit(thread: ThreadRec, method: string, params: Record<string, unknown>, also: Iterable<Conn> = []): void {
    const left = this.dropCounts.get(method) ?? 0;
    if (left > 0) {
      this.dropCounts.set(method, left - 1);
      this.dropped.push({ method, params });
      return;
    }
    for (const c of new Set([...thread.subscribers, ...also])) this.notify(c, method, params);
  }

  private onClientNotification(conn: Conn, msg: any): void {
    if (msg.method === 'initialized') conn.initializedNotified = true;
    // Other client notifications are accepted and ignored.
  }

  // ------------------------------------------------------------------ requests

  private readonly handlers: Record<string, (conn: Conn, params: any, respond: (result: unknown) => void) => void> = {
    initialize: (c, p, r) => this.initialize(c, p, r),
    'thread/start': (c, p, r) => this.threadStart(c, p, r),
    'thread/resume': (c, p, r) => this.threadResume(c, p, r),
    'thread/read': (c, p, r) => this.threadRead(c, p, r),
    'thread/turns/list': (_c, p, r) => this.turnsList(p, r),
    'thread/list': (_c, p, r) => this.threadList(p, r),
    'thread/loaded/list': (_c, _p, r) => r({ data: [...this.threads.values()].filter((t) => t.loaded).map((t) => t.id), nextCursor: null }),
    'thread/unsubscribe': (c, p, r) => this.threadUnsubscribe(c, p, r),
    'turn/start': (c, p, r) => this.turnStart(c, p, r),
    'turn/steer': (c, p, r) => this.turnSteer(c, p, r),
    'turn/interrupt': (_c, p, r) => this.turnInterrupt(p, r),
  };

  private onRequest(conn: Conn, msg: any): void {
    const id = msg.id;
    const fail = (code: number, message: string): void => this.send(conn, { id, error: { code, message } });
    // Overload is decided at ingress, before anything else (handshake included).
    if (this.overloadLeft > 0) {
      this.overloadLeft--;
      return fail(OVERLOADED, 'Server overloaded; retry later.');
    }
    if (msg.method !== 'initialize' && !conn.initialized) return fail(INVALID_REQUEST, 'Not initialized');
    this.opts.beforeRequest?.(msg.method, msg.params ?? {});
    const handler = this.opts.legacyReads && msg.method === 'thread/turns/list' ? undefined : this.handlers[msg.method];
    if (!handler) return fail(INVALID_REQUEST, `Invalid request: unknown variant \`${msg.method}\``);
    try {
      handler(conn, msg.params ?? {}, (result) => this.send(conn, { id, result }));
    } catch (err) {
      if (err instanceof RpcFailure) return fail(err.code, err.message);
      fail(-32603, `Internal error: ${(err as Error).message}`);
    }
  }

  private initialize(conn: Conn, params: any, respond: (r: unknown) => void): void {
    if (conn.initialized) throw new RpcFailure(INVALID_REQUEST, 'Already initialized');
    if (!params.clientInfo || typeof params.clientInfo.name !== 'string') throw new RpcFailure(INVALID_REQUEST, 'Invalid request: missing field `clientInfo`');
    conn.initialized = true;
    conn.clientInfo = params.clientInfo;
    for (const m of params.capabilities?.optOutNotificationMethods ?? []) conn.optOut.add(String(m));
    // 0.171: the client's own name first, its version at the end.
    const name = String(params.clientInfo.name);
    respond({
      userAgent: `${name}/${this.opts.version ?? FAKE_CODEX_VERSION} (Fake 1.0; x86_64) unknown (${name}; ${String(params.clientInfo.version ?? '')})`,
      codexHome: this.opts.codexHome ?? '/tmp/fake-codex-home',
      platformFamily: 'unix',
      platformOs: 'linux',
    });
  }

  /** Real enum checks: a wrong word (e.g. "workspaceWrite" for sandbox) is an invalid request. */
  private checkOverrides(params: any): void {
    const ap = params.approvalPolicy;
    if (ap !== undefined && ap !== null && typeof ap !== 'object' && !APPROVAL_POLICIES.includes(ap)) {
      throw new RpcFailure(INVALID_REQUEST, `Invalid request: unknown variant \`${ap}\`, expected one of ${APPROVAL_POLICIES.map((v) => `\`${v}\``).join(', ')}`);
    }
    const sb = params.sandbox;
    if (sb !== undefined && sb !== null && !SANDBOX_MODES.includes(sb)) {
      throw new RpcFailure(INVALID_REQUEST, `Invalid request: unknown variant \`${String(sb)}\`, expected one of ${SANDBOX_MODES.map((v) => `\`${v}\``).join(', ')}`);
    }
  }

  private applyOverrides(thread: ThreadRec, params: any): void {
    if (typeof params.cwd === 'string') thread.cwd = params.cwd;
    if (typeof params.model === 'string') thread.model = params.model;
    if (params.approvalPolicy != null) thread.approvalPolicy = params.approvalPolicy;
    if (params.sandbox != null) thread.sandbox = params.sandbox;
  }

  /** The shape shared by thread/start and thread/resume answers. */
  private sessionResult(thread: ThreadRec, includeTurns: boolean): Record<string, unknown> {
    return {
      thread: this.wireThread(thread, includeTurns),
      model: thread.model,
      modelProvider: 'openai',
      serviceTier: null,
      cwd: thread.cwd,
      approvalPolicy: thread.approvalPolicy,
      approvalsReviewer: 'user',
      sandbox: sandboxPolicy(thread.sandbox, thread.cwd),
      reasoningEffort: null,
    };
  }

  private threadStart(conn: Conn, params: any, respond: (r: unknown) => void): void {
    this.checkOverrides(params);
    const thread = this.newThread({ cwd: this.opts.defaultCwd ?? process.cwd(), loaded: true, pastTurns: [] });
    this.applyOverrides(thread, params);
    thread.subscribers.add(conn);
    respond(this.sessionResult(thread, false));
    this.notify(conn, 'thread/started', { thread: this.wireThread(thread, false) });
    this.changed();
  }

  private threadResume(conn: Conn, params: any, respond: (r: unknown) => void): void {
    const id = String(params.threadId ?? '');
    const thread = this.threads.get(id);
    // No rollout before the first turn: a thread that never ran one cannot be resumed.
    if (thread && thread.turns.length === 0 && thread.listTurnsRefused) throw new RpcFailure(METHOD_NOT_FOUND, LIST_TURNS_UNSUPPORTED);
    if (!thread || thread.turns.length === 0) throw new RpcFailure(INVALID_REQUEST, `no rollout found for thread id ${id}`);
    if (thread.activeWriter) throw new RpcFailure(INVALID_REQUEST, `thread ${id} already has an active writer`);
    this.checkOverrides(params);
    this.applyOverrides(thread, params);
    if (!thread.loaded) {
      thread.loaded = true;
      thread.lastAnnounced = JSON.stringify(this.statusOf(thread));
    }
    thread.subscribers.add(conn);
    respond(this.sessionResult(thread, !params.excludeTurns));
    if (!params.excludeTurns) this.notify(conn, 'deprecationNotice', { summary: RESUME_TURNS_DEPRECATED, details: null });
    // Rejoining a running thread replays what still waits for an answer, with the original ids.
    for (const p of this.serverRequests.values()) {
      if (p.threadId === thread.id && thread.active?.working) this.send(conn, { id: p.requestId, method: p.method, params: p.params });
    }
    this.changed();
  }

  private threadRead(conn: Conn, params: any, respond: (r: unknown) => void): void {
    const thread = this.requireThread(params.threadId);
    if (!params.includeTurns || this.opts.legacyReads) return respond({ thread: this.wireThread(thread, Boolean(params.includeTurns)) });
    // 0.171: full history only once there is a rollout to read, and deprecated then.
    if (thread.turns.length === 0) {
      thread.listTurnsRefused = true;
      throw new RpcFailure(METHOD_NOT_FOUND, LIST_TURNS_UNSUPPORTED);
    }
    respond({ thread: this.wireThread(thread, true) });
    this.notify(conn, 'deprecationNotice', { summary: TURNS_DEPRECATED, details: null });
  }

  /** Turns with their items, newest first (sortDirection "asc" for oldest first), paged by limit/cursor. */
  private turnsList(params: any, respond: (r: unknown) => void): void {
    const thread = this.requireThread(params.threadId);
    if (thread.turns.length === 0 && thread.listTurnsRefused) throw new RpcFailure(METHOD_NOT_FOUND, LIST_TURNS_UNSUPPORTED);
    if (thread.turns.length === 0) throw new RpcFailure(INVALID_REQUEST, `thread ${thread.id} is not materialized yet; thread/turns/list is unavailable before first user message`);
    const ordered = params.sortDirection === 'asc' ? [...thread.turns] : [...thread.turns].reverse();
    const start = typeof params.cursor === 'string' ? Number(JSON.parse(params.cursor).offset) || 0 : 0;
    const limit = typeof params.limit === 'number' && params.limit > 0 ? params.limit : ordered.length;
    const page = ordered.slice(start, start + limit);
    const cursor = (offset: number) => JSON.stringify({ requestedThreadId: thread.id, offset });
    respond({ data: page.map((t) => this.wireTurn(t, true)), nextCursor: start + limit < ordered.length ? cursor(start + limit) : null, backwardsCursor: cursor(start) });
  }

  /** Stored threads (those with a rollout, i.e. at least one turn), newest first. */
  private threadList(params: any, respond: (r: unknown) => void): void {
    const byUpdated = params.sortKey === 'updated_at';
    let list = [...this.threads.values()].filter((t) => t.turns.length > 0);
    if (typeof params.cwd === 'string') list = list.filter((t) => t.cwd === params.cwd);
    list.sort((a, b) => (byUpdated ? b.updatedAt - a.updatedAt || b.touchSeq - a.touchSeq : b.createdAt - a.createdAt || b.touchSeq - a.touchSeq));
    const start = typeof params.cursor === 'string' ? Number(params.cursor) || 0 : 0;
    const limit = typeof params.limit === 'number' && params.limit > 0 ? params.limit : list.length;
    const page = list.slice(start, start + limit);
    const next = start + limit < list.length ? String(start + limit) : null;
    respond({ data: page.map((t) => this.wireThread(t, false)), nextCursor: next });
  }

  private threadUnsubscribe(conn: Conn, params: any, respond: (r: unknown) => void): void {
    const thread = this.threads.get(String(params.threadId ?? ''));
    if (!thread?.loaded) return respond({ status: 'notLoaded' });
    respond({ status: thread.subscribers.delete(conn) ? 'unsubscribed' : 'notSubscribed' });
  }

  private requireThread(id: unknown): ThreadRec {
    const thread = this.threads.get(String(id ?? ''));
    if (!thread) throw new RpcFailure(INVALID_REQUEST, `thread not loaded: ${String(id)}`);
    return thread;
  }

  private requireLoaded(id: unknown): ThreadRec {
    const thread = this.requireThread(id);
    if (!thread.loaded) throw new RpcFailure(INVALID_REQUEST, `thread not loaded: ${thread.id}`);
    return thread;
  }

  private turnStart(conn: Conn, params: any, respond: (r: unknown) => void): void {
    const thread = this.requireLoaded(params.threadId);
    const text = textOf(params.input);
    // Overrides given to turn/start stick for later turns.
    if (typeof params.model === 'string') thread.model = params.model;
    if (params.approvalPolicy != null) thread.approvalPolicy = params.approvalPolicy;
    if (thread.active) {
      // Busy: the text joins the running turn, and the answer names that turn (0.171); older
      // servers answered a phantom id that never starts nor completes.
      const id = this.opts.phantomWhenBusy ? uuidv7() : thread.active.id;
      this.busyTurnStarts.push(id);
      this.addInput(thread.active, text, 'fold', conn.id, id);
      respond({ turn: { id, items: [], status: 'inProgress', error: null } });
      return;
    }
    if (!thread.subscribers.has(conn)) thread.watchers.add(conn);
    this.beginTurn(thread, text, 'start', conn.id, respond);
  }

  private turnSteer(conn: Conn, params: any, respond: (r: unknown) => void): void {
    const thread = this.requireLoaded(params.threadId);
    const text = textOf(params.input);
    const active = thread.active;
    if (!active) throw new RpcFailure(INVALID_REQUEST, 'no active turn to steer');
    if (params.expectedTurnId !== active.id) throw new RpcFailure(INVALID_REQUEST, `expected active turn id ${String(params.expectedTurnId)} but found ${active.id}`);
    this.addInput(active, text, 'steer', conn.id);
    respond({ turnId: active.id });
  }

  private turnInterrupt(params: any, respond: (r: unknown) => void): void {
    const thread = this.requireLoaded(params.threadId);
    const active = thread.active;
    if (!active) throw new RpcFailure(INVALID_REQUEST, 'no active turn to interrupt');
    if (params.turnId !== active.id) throw new RpcFailure(INVALID_REQUEST, `expected active turn id ${String(params.turnId)} but found ${active.id}`);
    respond({});
    this.endTurn(active, 'interrupted');
  }

  // ------------------------------------------------------------------ threads

  private newThread(o: AddThreadOptions): ThreadRec {
    const now = nowSeconds();
    const thread: ThreadRec = {
      id: o.id ?? uuidv7(),
      cwd: o.cwd,
      model: o.model ?? this.opts.defaultModel ?? 'gpt-5.1-codex',
      approvalPolicy: 'on-request',
      sandbox: 'workspace-write',
      createdAt: o.createdAt ?? o.updatedAt ?? now,
      updatedAt: o.updatedAt ?? now,
      touchSeq: ++this.touchCounter,
      preview: o.preview ?? null,
      loaded: Boolean(o.loaded),
      systemError: Boolean(o.systemError),
      activeWriter: Boolean(o.activeWriter),
      turns: [],
      active: null,
      subscribers: new Set(),
      watchers: new Set(),
      listTurnsRefused: Boolean(o.askedForTurns),
      lastAnnounced: '',
    };
    for (const text of o.pastTurns ?? []) {
      const turn = this.newTurn(thread, text);
      turn.status = 'completed';
      turn.completedAt = turn.startedAt;
      turn.items.push({ type: 'agentMessage', id: uuidv7(), text: `echo: ${text}` });
      turn.finish();
      thread.turns.push(turn);
      thread.preview ??= text;
    }
    thread.lastAnnounced = JSON.stringify(this.statusOf(thread));
    this.threads.set(thread.id, thread);
    return thread;
  }

  private statusOf(thread: ThreadRec): ThreadStatus {
    if (!thread.loaded) return { type: 'notLoaded' };
    if (thread.systemError) return { type: 'systemError' };
    if (!thread.active) return { type: 'idle' };
    const flags = new Set<string>();
    for (const id of thread.active.pending) {
      const kind = this.serverRequests.get(id)?.kind;
      flags.add(kind === 'userInput' || kind === 'elicitation' ? 'waitingOnUserInput' : 'waitingOnApproval');
    }
    return { type: 'active', activeFlags: [...flags] };
  }

  /** Announce the thread's status if it changed since the last announcement. */
  private announceStatus(thread: ThreadRec): void {
    const status = this.statusOf(thread);
    const key = JSON.stringify(status);
    if (key === thread.lastAnnounced) return;
    thread.lastAnnounced = key;
    this.emit(thread, 'thread/status/changed', { threadId: thread.id, status }, thread.watchers);
  }

  /** turn/completed's turn: a completed one carries only its final agentMessage ("summary"). */
  private completedTurn(turn: TurnRec): Record<string, unknown> {
    const last = turn.status === 'completed' ? turn.items.filter((i) => i.type === 'agentMessage').slice(-1) : [];
    return {
      id: turn.id,
      items: last.map((i) => ({ ...i })),
      itemsView: last.length ? 'summary' : 'notLoaded',
      status: turn.status,
      error: turn.error,
      startedAt: turn.startedAt,
      completedAt: turn.completedAt,
    };
  }

  private wireTurn(turn: TurnRec, withItems: boolean): Record<string, unknown> {
    return { id: turn.id, items: withItems ? turn.items.map((i) => ({ ...i })) : [], status: turn.status, error: turn.error, startedAt: turn.startedAt, completedAt: turn.completedAt };
  }

  private wireThread(thread: ThreadRec, includeTurns: boolean): Record<string, unknown> {
    return {
      id: thread.id,
      preview: thread.preview ?? '',
      ephemeral: false,
      modelProvider: 'openai',
      createdAt: thread.createdAt,
      updatedAt: thread.updatedAt,
      status: this.statusOf(thread),
      path: `/tmp/fake-codex-home/sessions/rollout-${thread.id}.jsonl`,
      cwd: thread.cwd,
      cliVersion: this.opts.version ?? FAKE_CODEX_VERSION,
      source: 'vscode',
      gitInfo: null,
      name: null,
      turns: includeTurns ? thread.turns.map((t) => this.wireTurn(t, true)) : [],
    };
  }

  private touch(thread: ThreadRec): void {
    thread.updatedAt = Math.max(thread.updatedAt, nowSeconds());
    thread.touchSeq = ++this.touchCounter;
  }

  /** Not loaded any more (process restart, idle unload); running work is lost. */
  private unload(thread: ThreadRec, announce: boolean): void {
    if (thread.active) {
      const turn = thread.active;
      for (const id of [...turn.pending]) this.clearRequest(this.serverRequests.get(id)!);
      turn.status = 'interrupted';
      thread.active = null;
      turn.finish();
      this.wake(turn);
    }
    if (announce && thread.loaded) {
      thread.loaded = false;
      this.announceStatus(thread);
      this.emit(thread, 'thread/closed', { threadId: thread.id });
    }
    thread.loaded = false;
    thread.lastAnnounced = JSON.stringify(this.statusOf(thread));
    thread.subscribers.clear();
    thread.watchers.clear();
  }

  // ------------------------------------------------------------------ turns

  private newTurn(thread: ThreadRec, text: string): TurnRec {
    let finish!: () => void;
    const done = new Promise<void>((resolve) => (finish = resolve));
    return {
      id: uuidv7(),
      threadId: thread.id,
      index: thread.turns.length,
      status: 'inProgress',
      error: null,
      startedAt: nowSeconds(),
      completedAt: null,
      items: [{ type: 'userMessage', id: uuidv7(), content: [{ type: 'text', text, text_elements: [] }] }],
      inputs: [text],
      plan: {},
      hold: false,
      released: false,
      working: false,
      deferred: [],
      pending: new Set(),
      wakers: [],
      done,
      finish,
    };
  }

  private ctx(turn: TurnRec): TurnContext {
    return { threadId: turn.threadId, turnId: turn.id, text: turn.inputs.join('\n'), inputs: [...turn.inputs], index: turn.index };
  }

  /** Start a turn now; `respond` (if any) is the turn/start answer, sent in the lever's order. */
  private beginTurn(thread: ThreadRec, text: string, via: InputRecord['via'], conn: number | null, respond?: (r: unknown) => void): TurnRec {
    const turn = this.newTurn(thread, text);
    thread.turns.push(turn);
    thread.active = turn;
    thread.preview ??= text;
    this.touch(thread);
    this.inputs.push({ threadId: thread.id, turnId: turn.id, text, via, conn });
    turn.plan = this.opts.turnScript?.(this.ctx(turn)) ?? {};
    turn.hold = turn.plan.hold ?? Boolean(this.opts.holdTurns);
    this.runTurn(thread, turn, respond).catch(() => undefined);
    this.changed();
    return turn;
  }

  /** Fold or steer text into a running turn: recorded, and shown as a userMessage item of that turn. */
  private addInput(turn: TurnRec, text: string, via: InputRecord['via'], conn: number | null, answeredTurnId?: string): void {
    const thread = this.threads.get(turn.threadId)!;
    turn.inputs.push(text);
    this.inputs.push({ threadId: turn.threadId, turnId: turn.id, text, via, conn, ...(answeredTurnId ? { answeredTurnId } : {}) });
    const item = { type: 'userMessage', id: uuidv7(), content: [{ type: 'text', text, text_elements: [] }] };
    turn.items.push(item);
    this.emit(thread, 'item/started', { threadId: thread.id, turnId: turn.id, item });
    this.emit(thread, 'item/completed', { threadId: thread.id, turnId: turn.id, item });
    this.touch(thread);
    this.changed();
  }

  /**
   * The scripted life of a turn, in the real order:
   * status active → turn/started → userMessage started/completed → [approvals] → [hold] →
   * agentMessage started → deltas → agentMessage completed → turn/completed → status idle.
   * Every await is a point where an interrupt, a failure or close may already have ended it.
   */
  private async runTurn(thread: ThreadRec, turn: TurnRec, respond?: (r: unknown) => void): Promise<void> {
    const early = Boolean(this.opts.turnStartedBeforeResponse);
    const answer = (): void => respond?.({ turn: { id: turn.id, items: [], status: 'inProgress', error: null } });
    const announceStart = (): void => {
      this.announceStatus(thread);
      this.emit(thread, 'turn/started', { threadId: thread.id, turn: this.wireTurn(turn, false) });
    };
    if (early) {
      announceStart();
      answer();
    } else {
      answer();
      await this.step();
      if (this.over(turn)) return;
      announceStart();
    }
    const userItem = turn.items[0];
    await this.step();
    if (this.over(turn)) return;
    this.emit(thread, 'item/started', { threadId: thread.id, turnId: turn.id, item: userItem });
    this.emit(thread, 'item/completed', { threadId: thread.id, turnId: turn.id, item: userItem });
    turn.working = true;
    for (const send of turn.deferred.splice(0)) send();

    for (const a of turn.plan.approvals ?? []) {
      await this.step();
      if (this.over(turn)) return;
      const spec = typeof a === 'string' ? { kind: a } : a;
      await this.sendServerRequest(thread, turn, spec);
      if (this.over(turn)) return;
    }

    // Held until released by completeTurn() and until every server request is answered.
    await this.until(turn, () => turn.pending.size === 0 && (!turn.hold || turn.released));
    if (this.over(turn)) return;
    await this.step();
    if (this.over(turn)) return;
    if (turn.plan.fail !== undefined) return this.failTurnNow(turn, turn.plan.fail);

    const ctx = this.ctx(turn);
    const text = turn.plan.reply ?? (this.opts.reply ? this.opts.reply(ctx.text, ctx) : `echo: ${ctx.text}`);
    const item = { type: 'agentMessage', id: uuidv7(), text: '' };
    this.emit(thread, 'item/started', { threadId: thread.id, turnId: turn.id, item: { ...item } });
    for (const delta of splitChunks(text, turn.plan.deltas ?? this.opts.deltaCount ?? 2)) {
      await this.step();
      if (this.over(turn)) return;
      item.text += delta;
      this.emit(thread, 'item/agentMessage/delta', { threadId: thread.id, turnId: turn.id, itemId: item.id, delta });
    }
    await this.step();
    // A request sent by a control call after the hold point still holds the turn.
    await this.until(turn, () => turn.pending.size === 0);
    if (this.over(turn)) return;
    item.text = text;
    turn.items.push({ ...item });
    this.emit(thread, 'item/completed', { threadId: thread.id, turnId: turn.id, item: { ...item } });
    this.endTurn(turn, 'completed');
  }

  private over(turn: TurnRec): boolean {
    return this.closed || turn.status !== 'inProgress';
  }

  /** One notification apart: an event-loop turn, or stepDelayMs. */
  private step(): Promise<void> {
    const ms = this.opts.stepDelayMs ?? 0;
    if (ms <= 0) return new Promise((resolve) => setImmediate(resolve));
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        resolve();
      }, ms);
      this.timers.add(timer);
    });
  }

  private async until(turn: TurnRec, cond: () => boolean): Promise<void> {
    while (!cond() && !this.over(turn)) await new Promise<void>((resolve) => turn.wakers.push(resolve));
  }

  private wake(turn: TurnRec): void {
    const w = turn.wakers;
    turn.wakers = [];
    for (const f of w) f();
  }

  /** End a turn once: pending requests are cleared, then turn/completed, serverRequest/resolved, idle. */
  private endTurn(turn: TurnRec, status: Exclude<TurnStatus, 'inProgress'>, error: TurnRec['error'] = null): void {
    if (turn.status !== 'inProgress') return;
    const thread = this.threads.get(turn.threadId)!;
    const sent = turn.working ? [...turn.pending] : []; // a deferred request was never sent
    for (const id of [...turn.pending]) this.clearRequest(this.serverRequests.get(id)!);
    turn.status = status;
    turn.error = error;
    turn.completedAt = nowSeconds();
    if (thread.active === turn) thread.active = null;
    this.touch(thread);
    // 0.171: idle first (10 of 11 real turns), then turn/completed with the final items.
    const completed = { threadId: thread.id, turn: this.completedTurn(turn) };
    const sendCompleted = (): void => {
      this.emit(thread, 'turn/completed', completed);
      // After turn/completed, as 0.171.0 does on interrupt (measured); only requests subscribers saw.
      for (const requestId of sent) this.emit(thread, 'serverRequest/resolved', { threadId: thread.id, requestId });
    };
    if (this.opts.completedBeforeIdle) {
      sendCompleted();
      this.announceStatus(thread);
    } else {
      this.announceStatus(thread);
      const delay = this.opts.completedDelayMs ?? 0;
      if (delay <= 0) sendCompleted();
      else {
        const timer = setTimeout(() => {
          this.timers.delete(timer);
          sendCompleted();
        }, delay);
        this.timers.add(timer);
      }
    }
    turn.finish();
    this.wake(turn);
    this.changed();
  }

  private failTurnNow(turn: TurnRec, message: string): void {
    const thread = this.threads.get(turn.threadId)!;
    const error = { message, codexErrorInfo: 'other', additionalDetails: null };
    this.emit(thread, 'error', { error, willRetry: false, threadId: thread.id, turnId: turn.id });
    this.endTurn(turn, 'failed', error);
  }

  // ------------------------------------------------------------------ server → client requests

  /** Send a request to every subscriber and resolve when a valid answer arrives (or the turn ends). */
  private sendServerRequest(thread: ThreadRec, turn: TurnRec, spec: ApprovalSpec): ApprovalHandle {
    const requestId = this.nextRequestId++;
    const itemId = uuidv7();
    const base = { threadId: thread.id, turnId: turn.id };
    let params: Record<string, unknown>;
    let item: any = null;
    let validate: (r: any) => string | null;
    let invalid: ((r: any) => string | null) | undefined;
    const decisionCheck = (r: any): string | null =>
      r && (VALID_DECISIONS as readonly string[]).includes(r.decision) ? null : `invalid decision ${JSON.stringify(r?.decision)} (expected ${VALID_DECISIONS.join(' | ')})`;
    switch (spec.kind) {
      case 'commandExecution': {
        const plain = spec.command ?? 'npm test';
        const argv = plain.split(/\s+/).filter(Boolean);
        const command = spec.legacy ? plain : shellString(plain);
        const commandActions = spec.legacy ? [] : [{ type: 'unknown', command: plain }];
        const available = spec.legacy ? null : spec.availableDecisions === undefined ? realAvailableDecisions(argv) : spec.availableDecisions;
        item = { type: 'commandExecution', id: itemId, command, cwd: thread.cwd, status: 'inProgress', commandActions, aggregatedOutput: null, exitCode: null, durationMs: null };
        // 0.171.0's keys, in its order; reason only when there is one.
        params = spec.legacy
          ? { ...base, itemId, command, cwd: thread.cwd, reason: spec.reason ?? 'needs to run a command outside the sandbox', commandActions }
          : {
              kind: 'command',
              ...base,
              itemId,
              startedAtMs: Date.now(),
              environmentId: 'local',
              command,
              cwd: thread.cwd,
              ...(spec.reason ? { reason: spec.reason } : {}),
              commandActions,
              proposedExecpolicyAmendment: argv,
              ...(available ? { availableDecisions: available } : {}),
            };
        validate = (r) => (r && 'decision' in r ? null : 'expected {decision}');
        // v2 also accepts the policy-amendment object forms for commands.
        invalid = (r) => (r.decision && typeof r.decision === 'object' && ('acceptWithExecpolicyAmendment' in r.decision || 'applyNetworkPolicyAmendment' in r.decision) ? null : decisionCheck(r));
        break;
      }
      case 'fileChange':
        item = { type: 'fileChange', id: itemId, changes: [{ path: `${thread.cwd}/README.md`, kind: { type: 'update', move_path: null }, diff: '+hello\n' }], status: 'inProgress' };
        params = { ...base, itemId, reason: spec.reason ?? 'wants to edit files', grantRoot: spec.grantRoot ?? null };
        validate = (r) => (r && 'decision' in r ? null : 'expected {decision}');
        invalid = decisionCheck;
        break;
      case 'permissions':
        params = { ...base, itemId, reason: spec.reason ?? 'needs write access', permissions: { fileSystem: { write: [thread.cwd] } } };
        validate = (r) =>
          r?.permissions && typeof r.permissions === 'object' && (r.scope === undefined || r.scope === null || r.scope === 'turn' || r.scope === 'session') ? null : 'expected {permissions, scope?}';
        break;
      case 'userInput':
        params = {
          ...base,
          itemId,
          questions: [
            {
              id: 'q1',
              header: 'Choice',
              question: spec.reason ?? 'Which option?',
              isOther: false,
              isSecret: false,
              options: [
                { label: 'A', description: 'first' },
                { label: 'B', description: 'second' },
              ],
            },
          ],
        };
        validate = (r) => (r?.answers && typeof r.answers === 'object' ? null : 'expected {answers}');
        break;
      case 'elicitation':
        params = { ...base, serverName: 'fake-mcp', mode: 'form', message: spec.reason ?? 'Provide a value', requestedSchema: { type: 'object', properties: { value: { type: 'string' } } } };
        validate = (r) => (r && ['accept', 'decline', 'cancel'].includes(r.action) ? null : 'expected {action, content}');
        break;
      case 'unknown':
        params = { ...base, itemId };
        validate = () => null; // any answer ends it; the right one is an error
        break;
    }
    const method = spec.kind === 'unknown' ? (spec.method ?? APPROVAL_METHODS.unknown) : APPROVAL_METHODS[spec.kind];
    let resolve!: (a: ApprovalAnswer) => void;
    const promise = new Promise<ApprovalAnswer>((r) => (resolve = r));
    const pending: PendingRequest = { requestId, method, kind: spec.kind, threadId: thread.id, turnId: turn.id, params, item, validate, ...(invalid ? { invalidDecision: invalid } : {}), resolve };
    this.serverRequests.set(requestId, pending);
    turn.pending.add(requestId);
    const sendNow = (): void => {
      if (!this.serverRequests.has(requestId)) return; // cleared meanwhile
      if (item) this.emit(thread, 'item/started', { ...base, item: { ...item } });
      this.announceStatus(thread); // active + waitingOnApproval / waitingOnUserInput
      // A request, not a notification: never swallowed by dropNext, sent to every subscriber.
      for (const c of thread.subscribers) this.send(c, { id: requestId, method, params });
      this.changed();
    };
    // Asked for before the turn got going (turn/started, userMessage): sent right after those.
    if (turn.working) sendNow();
    else turn.deferred.push(sendNow);
    return Object.assign(promise, { requestId });
  }

  private onAnswer(conn: Conn, msg: any): void {
    const p = typeof msg.id === 'number' ? this.serverRequests.get(msg.id) : undefined;
    const refuse = (reason: string): void => {
      this.invalidAnswers.push({ conn: conn.id, requestId: msg.id, method: p?.method ?? null, msg, reason });
      this.changed();
    };
    if (!p) return refuse('no pending server request with this id');
    if ('error' in msg && msg.error) {
      // An error is the right answer only to a method the client cannot know.
      if (p.kind !== 'unknown') return refuse(`error answer to ${p.method}`);
      return this.resolveRequest(p, { error: msg.error, conn: conn.id });
    }
    const why = p.validate(msg.result);
    if (why) return refuse(why);
    // A decision outside the enum is no error on the real server: it settles the request and
    // fails the item ("approval request failed" to the model), and the turn goes on.
    const bad = p.invalidDecision?.(msg.result) ?? null;
    if (bad) refuse(bad);
    this.resolveRequest(p, { result: msg.result, conn: conn.id, invalid: bad !== null });
  }

  /** A valid answer: serverRequest/resolved, item/completed, status back to active; cancel interrupts. */
  private resolveRequest(p: PendingRequest, a: { result?: any; error?: any; conn: number; invalid?: boolean }): void {
    const thread = this.threads.get(p.threadId)!;
    const turn = thread.turns.find((t) => t.id === p.turnId)!;
    this.serverRequests.delete(p.requestId);
    turn.pending.delete(p.requestId);
    const decision = p.kind === 'commandExecution' || p.kind === 'fileChange' ? a.result?.decision : undefined;
    // To every subscriber, the answering client too (measured), then status, then the item.
    this.emit(thread, 'serverRequest/resolved', { threadId: thread.id, requestId: p.requestId });
    if (decision !== 'cancel') this.announceStatus(thread);
    if (p.item) {
      const accepted = !a.invalid && (decision === 'accept' || decision === 'acceptForSession' || (decision && typeof decision === 'object'));
      const status = a.invalid ? 'failed' : accepted ? 'completed' : 'declined';
      const done = { ...p.item, status, ...(p.kind === 'commandExecution' && accepted ? { aggregatedOutput: '', exitCode: 0, durationMs: 1 } : {}) };
      turn.items.push(done);
      this.emit(thread, 'item/completed', { threadId: thread.id, turnId: turn.id, item: done });
    }
    const answer: ApprovalAnswer = { requestId: p.requestId, method: p.method, threadId: p.threadId, turnId: p.turnId, conn: a.conn };
    if (decision !== undefined) answer.decision = decision;
    if (a.result !== undefined) answer.result = a.result;
    if (a.error !== undefined) answer.error = a.error;
    this.answers.push(answer);
    const listed = Array.isArray(p.params.availableDecisions) ? (p.params.availableDecisions as unknown[]) : null;
    const name = typeof decision === 'string' ? decision : decision && typeof decision === 'object' ? Object.keys(decision)[0] : undefined;
    if (listed && !a.invalid && name !== undefined && !listed.some((d) => (typeof d === 'string' ? d : Object.keys(d as object)[0]) === name)) this.unofferedAnswers.push(answer);
    p.resolve(answer);
    if (decision === 'cancel' && !a.invalid) this.endTurn(turn, 'interrupted');
    else this.wake(turn);
    this.changed();
  }

  /** The turn ended first: resolve the handle as cleared (endTurn tells the subscribers). */
  private clearRequest(p: PendingRequest): void {
    this.serverRequests.delete(p.requestId);
    const thread = this.threads.get(p.threadId);
    const turn = thread?.turns.find((t) => t.id === p.turnId);
    turn?.pending.delete(p.requestId);
    p.resolve({ requestId: p.requestId, method: p.method, threadId: p.threadId, turnId: p.turnId, cleared: true });
  }

  // ------------------------------------------------------------------ control API (tests)

  /**
   * Send a server→client request on the thread's running turn (to every subscribed connection).
   * The turn does not complete until a valid answer arrives. Resolves with the answer.
   */
  requestApproval(threadId: string, kind: ApprovalKind = 'commandExecution', spec: Omit<ApprovalSpec, 'kind'> = {}): ApprovalHandle {
    const thread = this.mustThread(threadId);
    if (!thread.active) throw new Error(`fake app-server: thread ${threadId} has no running turn to ask approval for`);
    return this.sendServerRequest(thread, thread.active, { ...spec, kind });
  }

  /** Release a held turn (holdTurns / plan.hold); resolves when that turn has ended. */
  async completeTurn(threadId: string): Promise<void> {
    const turn = this.mustThread(threadId).active;
    if (!turn) throw new Error(`fake app-server: thread ${threadId} has no running turn`);
    turn.released = true;
    this.wake(turn);
    await turn.done;
  }

  /** Lever: fail the running turn now (`error` willRetry:false, then turn/completed failed). */
  failTurn(threadId: string, message = 'fake upstream failure'): void {
    const turn = this.mustThread(threadId).active;
    if (!turn) throw new Error(`fake app-server: thread ${threadId} has no running turn`);
    this.failTurnNow(turn, message);
  }

  /** Lever: a transient error the server retries itself (`error` willRetry:true; the turn goes on). */
  retryableError(threadId: string, message = 'stream disconnected; retrying'): void {
    const thread = this.mustThread(threadId);
    const turn = thread.active;
    if (!turn) throw new Error(`fake app-server: thread ${threadId} has no running turn`);
    this.emit(thread, 'error', { error: { message, codexErrorInfo: 'responseStreamDisconnected', additionalDetails: null }, willRetry: true, threadId, turnId: turn.id });
  }

  /** Interrupt the running turn as another client would (turn/completed interrupted). */
  interruptTurn(threadId: string): void {
    const turn = this.mustThread(threadId).active;
    if (turn) this.endTurn(turn, 'interrupted');
  }

  /** Start a turn as another client (a human in the TUI) would: subscribers see it, nobody got a response. */
  startTurn(threadId: string, text: string): string {
    const thread = this.mustThread(threadId);
    if (!thread.loaded) throw new Error(`fake app-server: thread ${threadId} is not loaded`);
    if (thread.active) {
      this.addInput(thread.active, text, 'control', null);
      return thread.active.id;
    }
    return this.beginTurn(thread, text, 'control', null).id;
  }

  /** Pre-create a thread; returns its id. */
  addThread(o: AddThreadOptions): string {
    return this.newThread({ pastTurns: ['(earlier work)'], ...o }).id;
  }

  /** Lever: another app-server process holds (or releases) the thread. */
  setActiveWriter(threadId: string, held = true): void {
    this.mustThread(threadId).activeWriter = held;
  }

  /** Unload a thread as the idle timer would: status notLoaded + thread/closed to subscribers. */
  unloadThread(threadId: string): void {
    this.unload(this.mustThread(threadId), true);
    this.changed();
  }

  /** Lever: swallow the next `count` broadcasts of a notification method (state still changes). */
  dropNext(method: string, count = 1): void {
    this.dropCounts.set(method, (this.dropCounts.get(method) ?? 0) + count);
  }

  /** Lever: answer the next `n` requests (any method) with -32001 "Server overloaded; retry later.". */
  overload(n: number): void {
    this.overloadLeft += n;
  }

  // ------------------------------------------------------------------ inspection

  /** Requests received (optionally of one method), in order. */
  requests(method?: string): Received[] {
    return this.received.filter((r) => r.msg && typeof r.msg.method === 'string' && r.msg.id !== undefined && r.msg.id !== null && (!method || r.msg.method === method));
  }

  /** Notifications received from clients (e.g. "initialized"). */
  clientNotifications(method?: string): Received[] {
    return this.received.filter((r) => r.msg && typeof r.msg.method === 'string' && (r.msg.id === undefined || r.msg.id === null) && (!method || r.msg.method === method));
  }

  /** Texts a thread received, in order: each started turn, then folded and steered texts. */
  turnInputs(threadId: string): string[] {
    return this.inputs.filter((i) => i.threadId === threadId).map((i) => i.text);
  }

  /** The wire thread object (with turns and items), as thread/read includeTurns would show it. */
  thread(threadId: string): any {
    return this.wireThread(this.mustThread(threadId), true);
  }

  threadIds(): string[] {
    return [...this.threads.keys()];
  }

  /** Id of the running turn, or null. */
  activeTurnId(threadId: string): string | null {
    return this.mustThread(threadId).active?.id ?? null;
  }

  /** Server→client requests still waiting for an answer. */
  pendingRequests(threadId?: string): PendingRequestInfo[] {
    return [...this.serverRequests.values()]
      .filter((p) => !threadId || p.threadId === threadId)
      .map(({ requestId, method, kind, threadId: th, turnId, params }) => ({ requestId, method, kind, threadId: th, turnId, params }));
  }

  /** Connection ids subscribed to a thread. */
  subscribers(threadId: string): number[] {
    return [...this.mustThread(threadId).subscribers].map((c) => c.id);
  }

  connectionInfo(): ConnectionInfo[] {
    return [...this.conns.values()].map((c) => ({
      id: c.id,
      open: c.ws.readyState === WebSocket.OPEN,
      initialized: c.initialized,
      initializedNotified: c.initializedNotified,
      clientInfo: c.clientInfo,
      headers: c.headers,
    }));
  }

  /** Wait (bounded) until `cond()` holds; re-checked on every frame and state change. */
  async waitFor(cond: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!cond()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`fake app-server: timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.min(left, 250));
        function done(): void {
          clearTimeout(timer);
          resolve();
        }
        this.waiters.push(done);
      });
    }
  }

  private changed(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private mustThread(threadId: string): ThreadRec {
    const t = this.threads.get(threadId);
    if (!t) throw new Error(`fake app-server: no thread ${threadId}`);
    return t;
  }
}

/** Start a fake app-server listening on ws://127.0.0.1:<ephemeral>. Close it with `fake.close()`. */
export async function startFakeAppServer(opts: FakeAppServerOptions = {}): Promise<FakeAppServer> {
  const fake = new FakeAppServer(opts);
  await fake.listen();
  return fake;
}
