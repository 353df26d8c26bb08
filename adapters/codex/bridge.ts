import { hostname } from 'node:os';
import { basename } from 'node:path';
import { reconnectDelay } from '../../clients/backoff.js';
import { RelayHttpClient } from '../../clients/http-client.js';
import { createRelayClient } from '../../clients/index.js';
import type { RelayClient } from '../../clients/relay-client.js';
import { AppServerConnection } from './app-server.js';
import { ApprovalDesk } from './approval-desk.js';
import { codexAgentId, type CodexAdapterConfig } from './config.js';
import { loadState, saveState, type AdapterState } from './state.js';
import { Deliverer } from './deliverer.js';
import { ServerNotices } from './server-notices.js';
import { ActiveWriterError, attachThread, resume } from './thread.js';

export interface BridgeLog {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

/**
 * Pipes relay messages into a live Codex app-server thread and the agent's answers back. The
 * bridge holds the two connections (relay, app-server) and the state file; deliveries are the
 * Deliverer's (deliverer.ts, deciding through pipeline.ts), approvals the ApprovalDesk's.
 */
export class CodexBridge {
  readonly agentId: string;
  private readonly state: AdapterState;
  private relay: RelayClient | null = null;
  private readonly http: RelayHttpClient;
  private conn: AppServerConnection | null = null;
  private threadId: string | null = null;
  /** Attached to a loaded thread that could not be resumed yet (see AttachHow in thread.ts). */
  private unsubscribed = false;
  private readonly delivery: Deliverer;
  private readonly approvals: ApprovalDesk;
  private readonly notices: ServerNotices;
  private reconcileTimer: NodeJS.Timeout | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private stopped = false;
  private ready = false;
  private fatal: ((err: Error) => void) | null = null;
  private stopResolve: (() => void) | null = null;

  constructor(
    private readonly config: CodexAdapterConfig,
    private readonly log: BridgeLog,
    private readonly version = '0.1.0',
  ) {
    this.agentId = codexAgentId(config);
    this.state = loadState(config.statePath);
    this.http = new RelayHttpClient({ url: config.relayUrl, ...(config.relayToken ? { token: config.relayToken } : {}) });
    this.delivery = new Deliverer({
      config,
      state: this.state,
      log,
      conn: () => this.conn,
      threadId: () => this.threadId,
      relay: () => this.relay,
      stopped: () => this.stopped,
      save: () => this.save(),
    });
    this.notices = new ServerNotices(log);
    this.approvals = new ApprovalDesk({
      config,
      state: this.state,
      log,
      agentId: this.agentId,
      relay: () => this.relay,
      threadId: () => this.threadId,
      sender: () => this.delivery.current?.messages[0]?.from,
      save: () => this.save(),
    });
  }

  /** Run until stop() or a fatal error (a thread held by another writer, a refused agent token). */
  run(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.stopResolve = resolve;
      this.fatal = (err) => {
        this.stopResolve = null; // a fatal stop rejects instead
        void this.stop().then(() => reject(err));
      };
      void this.startRelay().then(
        () => this.connectAppServer(),
        (err: Error) => this.fatal?.(err),
      );
    });
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of [this.reconcileTimer, this.pollTimer]) if (t) clearTimeout(t);
    this.delivery.stop();
    this.approvals.stop();
    this.conn?.close();
    if (this.relay) {
      await this.relay.call('agent/update', { ready: false }, { timeoutMs: 2000 }).catch(() => undefined);
      await this.relay.close();
    }
    this.stopResolve?.();
  }

  // ---- relay side ----

  private async startRelay(): Promise<void> {
    const resumeFrom = this.state.agentToken ? { since: this.state.cursor } : {};
    const relay = createRelayClient({
      url: this.config.relayUrl,
      ...(this.config.relayToken ? { token: this.config.relayToken } : {}),
      agent: {
        id: this.agentId,
        // The relay caps a label at 128 and a tag at 64 characters and refuses the registration
        // otherwise: a long directory name or host name must not keep the adapter off the relay.
        label: `codex ${basename(this.config.cwd)}`.slice(0, 128),
        tags: [...new Set(['codex', this.config.rig, basename(this.config.cwd)].map((t) => t.toLowerCase().slice(0, 64)).filter(Boolean))],
        capabilities: this.config.capabilities,
        client: 'codex-live',
        host: hostname(),
        cwd: this.config.cwd,
        rig: this.config.rig,
        ready: false,
      },
      ...(this.state.agentToken ? { agentToken: this.state.agentToken } : {}),
      ...resumeFrom,
      observe: ['tasks'],
      heartbeatMs: this.config.heartbeatIntervalMs,
      reconnect: { initialMs: this.config.reconnectInitialMs, maxMs: this.config.reconnectMaxMs },
      waitForRelay: true,
    });
    this.relay = relay;
    relay.on('message', (m) => this.delivery.enqueue(m));
    relay.on('task', ({ task, event }) => this.approvals.onTaskUpdate(task, event));
    relay.on('ready', () => {
      this.stopPolling();
      if (relay.agentToken && relay.agentToken !== this.state.agentToken) {
        this.state.agentToken = relay.agentToken;
        this.save();
      }
      // Readiness follows the thread, on every (re)connect to the relay.
      void this.setReady(this.ready, true);
      void this.approvals.recheck();
    });
    relay.on('disconnected', (d) => {
      if (d.willReconnect) this.startPolling();
    });
    relay.on('closed', (reason) => {
      if (reason && !this.stopped) this.fatal?.(new Error(`relay refused the adapter: ${reason.message}`));
    });
    await relay.connect();
    this.log.info(`relay agent ${this.agentId} connected at ${this.config.relayUrl}`);
  }

  private async setReady(ready: boolean, force = false): Promise<void> {
    if (this.ready === ready && !force) return;
    this.ready = ready;
    if (!this.relay?.connected) return;
    await this.relay.call('agent/update', { ready }, { timeoutMs: 5000 }).catch((err: Error) => this.log.warn(`could not set ready=${ready}: ${err.message}`));
  }

  /** Fallback while the relay WebSocket is down: poll the inbox over HTTP (same dedupe). */
  private startPolling(): void {
    if (this.pollTimer || this.stopped) return;
    const tick = async () => {
      this.pollTimer = null;
      if (this.stopped || this.relay?.connected) return;
      const token = this.state.agentToken;
      if (token) {
        try {
          const since = Math.max(this.state.cursor, ...this.delivery.queue.map((m) => m.id));
          const r = await this.http.inbox({ agentId: this.agentId, agentToken: token }, { since });
          for (const m of r.messages) this.delivery.enqueue(m);
        } catch {
          // the relay is down altogether: keep trying on the interval
        }
      }
      if (!this.stopped && !this.relay?.connected) this.pollTimer = setTimeout(() => void tick(), this.config.pollIntervalMs);
    };
    this.pollTimer = setTimeout(() => void tick(), this.config.pollIntervalMs);
  }

  private stopPolling(): void {
    if (this.pollTimer) clearTimeout(this.pollTimer);
    this.pollTimer = null;
  }

  // ---- app-server side ----

  private async connectAppServer(): Promise<void> {
    for (let attempt = 0; !this.stopped; attempt++) {
      let conn: AppServerConnection | null = null;
      try {
        conn = await AppServerConnection.connect(this.config.appServerUrl);
        conn.on('notification', (method, params) => {
          // Per socket, like requests: a request id means something only on its own process.
          if (method === 'serverRequest/resolved') this.approvals.onResolved(conn!, params);
          this.onNotification(method, params);
        });
        // Requests are answered on the socket they came on: a resume replays pending approvals
        // right after its answer (measured), possibly before attachThread returns and this.conn
        // is the new socket.
        conn.on('request', (req) => void this.approvals.onServerRequest(conn!, req));
        this.notices.handshake((await conn.handshake(this.version)).userAgent);
        // Keep the thread across reconnects and restarts; otherwise attach by mode.
        const previous = this.threadId ?? (this.config.threadMode === 'start' ? this.state.threadId : null);
        const { thread, how } = await attachThread(conn, this.config, previous, (m) => this.log.info(m));
        if (this.stopped) return conn.close();
        this.conn = conn;
        conn.once('close', (reason) => this.onAppServerClosed(conn!, reason));
        this.threadId = thread.id;
        this.unsubscribed = how === 'unsubscribed';
        if (this.state.threadId !== thread.id) {
          this.state.threadId = thread.id;
          this.save();
        }
        this.log.info(`${how} Codex thread ${thread.id} (${this.config.threadMode} mode)`);
        // No delivery and no reconcile until the in-flight turn is settled: either could act on
        // a message recovery is about to account for (a duplicate turn, a second reply).
        this.delivery.attached(thread.status?.type === 'active');
        try {
          await this.delivery.recoverInFlight(thread);
        } finally {
          this.delivery.recovered();
        }
        await this.setReady(true);
        this.startReconcile();
        this.delivery.schedule();
        return;
      } catch (err) {
        conn?.close();
        if (err instanceof ActiveWriterError) {
          this.log.error(err.message);
          this.fatal?.(err);
          return;
        }
        const delay = reconnectDelay(attempt, { initialMs: this.config.reconnectInitialMs, maxMs: this.config.reconnectMaxMs, random: Math.random });
        this.log.warn(`Codex app-server not ready (${(err as Error).message}); retrying in ${delay} ms`);
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  private onAppServerClosed(conn: AppServerConnection, reason: string): void {
    if (conn !== this.conn) return;
    this.conn = null;
    this.delivery.detached();
    if (this.stopped) return;
    this.log.warn(`${reason}; reconnecting`);
    void this.setReady(false);
    void this.connectAppServer();
  }

  // ---- app-server notifications ----

  private onNotification(method: string, p: Record<string, any>): void {
    if (p.threadId !== undefined && p.threadId !== this.threadId) return;
    if (this.notices.onNotification(method, p)) return;
    if (method === 'thread/status/changed' && p.status?.type === 'idle' && this.unsubscribed) void this.subscribe();
    if (method === 'thread/closed') {
      // The app-server unloaded our thread: this socket is no longer subscribed and turn/start
      // fails "not loaded" until it is resumed. Reconnecting resumes it (and settles the turn
      // in flight); before this the adapter retried turn/start forever.
      const conn = this.conn;
      if (!conn) return;
      this.log.warn(`Codex thread ${this.threadId} was unloaded by the app-server; re-attaching`);
      conn.close();
      return;
    }
    this.delivery.onNotification(method, p);
  }

  /** An unsubscribed thread went idle: a turn ran, so it may have a rollout now; resume it. */
  private async subscribe(): Promise<void> {
    const conn = this.conn;
    const threadId = this.threadId;
    if (!conn || !threadId) return;
    const t = await resume(conn, threadId).catch(() => null);
    if (!t || conn !== this.conn || !this.unsubscribed) return;
    this.unsubscribed = false;
    this.log.info(`subscribed to Codex thread ${threadId} (its first turn gave it a rollout)`);
  }

  private startReconcile(): void {
    if (this.reconcileTimer) clearInterval(this.reconcileTimer);
    this.reconcileTimer = setInterval(() => void this.delivery.reconcile(), this.config.reconcileIntervalMs);
    this.reconcileTimer.unref();
  }

  private save(): void {
    try {
      saveState(this.config.statePath, this.state);
    } catch (err) {
      this.log.error(`cannot write state file ${this.config.statePath}: ${(err as Error).message}`);
    }
  }
}
