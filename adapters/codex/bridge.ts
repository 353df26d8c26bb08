import { hostname } from 'node:os';
import { basename } from 'node:path';
import type { Message } from '../../protocol/common.js';
import { reconnectDelay } from '../../clients/backoff.js';
import { RelayHttpClient } from '../../clients/http-client.js';
import { createRelayClient } from '../../clients/index.js';
import type { RelayClient } from '../../clients/relay-client.js';
import { AppServerConnection, AppServerError } from './app-server.js';
import { ApprovalDesk } from './approval-desk.js';
import { codexAgentId, type CodexAdapterConfig } from './config.js';
import { loadState, saveState, type AdapterState } from './state.js';
import { initialPipeline, mayArm, reconcileVerdict, sendPlan, step, type Delivery, type Pipeline, type PipelineEvent } from './pipeline.js';
import { ActiveWriterError, attachThread, finalAgentText, turnCarries, type CodexThread, type CodexTurn } from './thread.js';

export interface BridgeLog {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

const OVERLOADED = -32001;

/**
 * Pipes relay messages into a live Codex app-server thread and the agent's answers back.
 *
 * Delivery rules: messages that arrive within the coalesce window go in one turn; while a turn
 * runs they wait and go in one turn when it ends (or steer it, when configured); turn/start is
 * never sent while the thread is busy (it would answer with a phantom turn id). A message is
 * marked read on the relay only once the turn carrying it was accepted, and the state file
 * records it, so a restart neither loses nor repeats a delivery.
 */
export class CodexBridge {
  readonly agentId: string;
  private readonly state: AdapterState;
  private relay: RelayClient | null = null;
  private readonly http: RelayHttpClient;
  private conn: AppServerConnection | null = null;
  private threadId: string | null = null;
  /** The delivery pipeline's state (pipeline.ts): changed only through apply(). */
  private pipe: Pipeline = initialPipeline();
  private readonly queue: Message[] = [];
  /** The handle of pipe.wake (the coalesce window or the retry delay). */
  private wakeTimer: NodeJS.Timeout | null = null;
  private readonly agentTextByTurn = new Map<string, string>();
  private readonly approvals: ApprovalDesk;
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
    this.approvals = new ApprovalDesk({
      config,
      state: this.state,
      log,
      agentId: this.agentId,
      relay: () => this.relay,
      threadId: () => this.threadId,
      sender: () => this.pipe.delivery?.messages[0]?.from,
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
    for (const t of [this.wakeTimer, this.reconcileTimer, this.pollTimer]) if (t) clearTimeout(t);
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
    relay.on('message', (m) => this.enqueue(m));
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
          const since = Math.max(this.state.cursor, ...this.queue.map((m) => m.id));
          const r = await this.http.inbox({ agentId: this.agentId, agentToken: token }, { since });
          for (const m of r.messages) this.enqueue(m);
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
        conn.on('notification', (method, params) => this.onNotification(method, params));
        // Requests are answered on the socket they came on: a resume replays pending approvals
        // before attachThread returns, i.e. before this.conn is the new socket.
        conn.on('request', (req) => void this.approvals.onServerRequest(conn!, req));
        await conn.handshake(this.version);
        // Keep the thread across reconnects and restarts; otherwise attach by mode.
        const previous = this.threadId ?? (this.config.threadMode === 'start' ? this.state.threadId : null);
        const { thread, how } = await attachThread(conn, this.config, previous, (m) => this.log.info(m));
        if (this.stopped) return conn.close();
        this.conn = conn;
        conn.once('close', (reason) => this.onAppServerClosed(conn!, reason));
        this.threadId = thread.id;
        if (this.state.threadId !== thread.id) {
          this.state.threadId = thread.id;
          this.save();
        }
        this.log.info(`${how} Codex thread ${thread.id} (${this.config.threadMode} mode)`);
        // No delivery and no reconcile until the in-flight turn is settled: either could act on
        // a message recovery is about to account for (a duplicate turn, a second reply).
        this.apply({ type: 'attached', active: thread.status?.type === 'active' });
        try {
          await this.recoverInFlight(thread);
        } finally {
          this.apply({ type: 'recovered' });
        }
        await this.setReady(true);
        this.startReconcile();
        this.schedule();
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
    this.apply({ type: 'detached' });
    if (this.stopped) return;
    this.log.warn(`${reason}; reconnecting`);
    void this.setReady(false);
    void this.connectAppServer();
  }

  /**
   * After a (re)attach, settle the turn that was in flight when the socket dropped or the adapter
   * stopped: if the thread carries it, it was delivered (answer it if it finished); if not, the
   * messages go out again.
   */
  private async recoverInFlight(thread: CodexThread): Promise<void> {
    const saved = this.state.inFlight;
    const current = this.pipe.delivery;
    if (!current && !saved) return;
    const marker = current?.marker ?? saved!.marker;
    const knownTurnId = current ? current.turnId : saved!.turnId;
    let turns = thread.turns;
    if (!turns) turns = (await this.conn!.request<{ thread: CodexThread }>('thread/read', { threadId: thread.id, includeTurns: true })).thread.turns;
    // The marker as rendered, brackets included: "relay#1" alone would also match "[relay#12]".
    const turn = (turns ?? []).find((t) => (knownTurnId !== null && t.id === knownTurnId) || turnCarries(t, `[${marker}]`));
    if (!turn) {
      // Never reached the thread: deliver those messages again (they were not marked read; after
      // a restart the relay replays them, as the cursor never moved past them).
      const messages = current?.messages ?? [];
      this.apply({ type: 'dropped' });
      this.state.inFlight = null;
      this.queue.unshift(...messages.filter((m) => !this.queue.some((q) => q.id === m.id)));
      this.save();
      return;
    }
    // Adopt the turn as THE in-flight delivery (one object: see Delivery in pipeline.ts).
    const delivery: Delivery = current ?? { messages: await this.fetchMessages(saved!.messageIds), marker, turnId: saved!.turnId, started: false };
    this.apply({ type: 'inFlight', delivery });
    if (delivery.turnId === null) await this.accepted(delivery, turn.id);
    const ended = !!turn.status && turn.status !== 'inProgress';
    this.apply({ type: 'adopted', delivery, turnId: turn.id, running: !ended });
    if (ended) await this.complete(delivery, turn.status!, finalAgentText(turn));
  }

  private async fetchMessages(ids: number[]): Promise<Message[]> {
    const out: Message[] = [];
    for (const id of ids) {
      const r = await this.relay!.call('message/get', { id }).catch(() => null);
      if (r) out.push(r.message);
    }
    return out;
  }

  // ---- delivery ----

  private enqueue(m: Message): void {
    if (m.id <= this.state.cursor || this.state.delivered.includes(m.id)) return;
    if (this.queue.some((q) => q.id === m.id) || this.pipe.delivery?.messages.some((q) => q.id === m.id)) return;
    this.queue.push(m);
    this.schedule();
  }

  /** Start the coalesce window (once): everything that arrives within it goes in one turn. */
  private schedule(): void {
    if (this.stopped || !this.conn || !this.threadId || !mayArm(this.pipe, this.queue.length, this.config.steer)) return;
    this.arm('coalesce', this.config.coalesceWindowMs, () => void this.deliver());
  }

  private async deliver(): Promise<void> {
    const conn = this.conn;
    const threadId = this.threadId;
    if (!conn || !threadId || this.queue.length === 0 || this.pipe.gate !== 'open') return;
    this.apply({ type: 'sendBegan' });
    try {
      const plan = sendPlan(this.pipe, this.config.steer);
      if (plan.kind === 'steer') {
        await this.steer(conn, threadId, plan.turnId);
        return;
      }
      if (plan.kind === 'wait') return;
      // A turn another client started would turn ours into a phantom: look before starting.
      const read = await conn.request<{ thread: CodexThread }>('thread/read', { threadId });
      if (read.thread?.status?.type === 'active') {
        this.apply({ type: 'statusRead', active: true });
        return;
      }
      const batch = this.queue.splice(0);
      const marker = `relay#${batch.map((m) => m.id).join(',')}`;
      const delivery: Delivery = { messages: batch, marker, turnId: null, started: false };
      this.apply({ type: 'inFlight', delivery });
      this.state.inFlight = { turnId: null, messageIds: batch.map((m) => m.id), marker };
      this.save();
      let turnId: string;
      try {
        const r = await conn.request<{ turn: { id: string } }>('turn/start', { threadId, input: [{ type: 'text', text: renderTurn(batch, marker), text_elements: [] }] });
        turnId = r.turn.id;
      } catch (err) {
        if (!conn.isOpen) return; // recoverInFlight decides after the reconnect
        this.apply({ type: 'dropped' });
        this.state.inFlight = null;
        this.queue.unshift(...batch);
        this.save();
        this.retryLater(err);
        return;
      }
      this.apply({ type: 'started', delivery });
      await this.accepted(delivery, turnId);
    } catch (err) {
      if (conn.isOpen) this.retryLater(err);
    } finally {
      this.apply({ type: 'sendEnded' });
      this.schedule();
    }
  }

  private async steer(conn: AppServerConnection, threadId: string, expectedTurnId: string): Promise<void> {
    const batch = this.queue.splice(0);
    const marker = `relay#${batch.map((m) => m.id).join(',')}`;
    try {
      await conn.request('turn/steer', { threadId, expectedTurnId, input: [{ type: 'text', text: renderTurn(batch, marker), text_elements: [] }] });
    } catch (err) {
      // The turn ended or changed under us: wait for it and deliver as a new turn.
      this.queue.unshift(...batch);
      this.log.info(`steer refused (${(err as Error).message}); the messages wait for the next turn`);
      return;
    }
    // Steered text joins the running turn: its answer covers these messages too. A turn we did
    // not start (a person's, in the TUI) is adopted as the delivery, or its end would answer no
    // one and the steered messages would never get a reply.
    const ids = batch.map((m) => m.id);
    const d = this.pipe.delivery ?? { messages: [], marker, turnId: expectedTurnId, started: true };
    d.messages.push(...batch);
    this.apply({ type: 'inFlight', delivery: d });
    this.markDelivered(ids, { turnId: d.turnId, messageIds: [...new Set([...(this.state.inFlight?.messageIds ?? []), ...d.messages.map((m) => m.id)])], marker: d.marker });
    await this.markRead(ids);
  }

  private retryLater(err: unknown): void {
    const overloaded = err instanceof AppServerError && err.code === OVERLOADED;
    this.log.warn(`delivery postponed: ${(err as Error).message}${overloaded ? ' (app-server overloaded)' : ''}`);
    if (this.pipe.wake === 'retry') return;
    this.arm('retry', this.config.reconnectInitialMs, () => this.schedule());
  }

  /** The turn carrying these messages was accepted: record it, then mark them read on the relay. */
  private async accepted(delivery: Delivery, turnId: string): Promise<void> {
    delivery.turnId = turnId;
    const ids = delivery.messages.length ? delivery.messages.map((m) => m.id) : (this.state.inFlight?.messageIds ?? []);
    if (!delivery.done) this.apply({ type: 'inFlight', delivery });
    this.markDelivered(ids, delivery.done ? null : { turnId, messageIds: ids, marker: delivery.marker });
    await this.markRead(ids);
  }

  private markDelivered(ids: number[], inFlight: AdapterState['inFlight']): void {
    // A restarted adapter may already hold these again: the relay replayed them (the cursor had
    // not moved past them) before recovery found the turn carrying them.
    for (let i = this.queue.length - 1; i >= 0; i--) if (ids.includes(this.queue[i]!.id)) this.queue.splice(i, 1);
    this.state.cursor = Math.max(this.state.cursor, ...ids);
    this.state.delivered.push(...ids);
    this.state.inFlight = inFlight;
    this.save();
  }

  private async markRead(ids: number[]): Promise<void> {
    if (!ids.length || !this.relay) return;
    for (const id of ids) await this.relay.call('message/ack', { id, state: 'injected' }).catch(() => undefined);
    await this.relay.call('message/read', { ids }).catch((err: Error) => this.log.warn(`could not mark ${ids.join(',')} read: ${err.message}`));
  }

  /** The turn ended: send its final answer back as a reply in each thread it answered. */
  private async complete(delivery: Delivery, status: string, text: string | null): Promise<void> {
    // Once: turn/completed, a reconcile and a recovery can all see the same turn end.
    if (delivery.done) return;
    this.apply({ type: 'settled', delivery });
    this.state.inFlight = null;
    this.save();
    if (delivery.turnId) this.agentTextByTurn.delete(delivery.turnId);
    const body = status === 'completed' ? text : `(Codex turn ${status}${text ? `: ${text}` : ''})`;
    if (!body || !this.relay) return;
    // One reply per relay thread, to the last message of that thread in the turn.
    const lastByThread = new Map<number, Message>();
    for (const m of delivery.messages) lastByThread.set(m.threadId, m);
    for (const m of lastByThread.values()) {
      await this.relay.call('message/send', { to: m.from, body, replyTo: m.id }).catch((err: Error) => this.log.warn(`reply to #${m.id} failed: ${err.message}`));
    }
  }

  // ---- app-server notifications ----

  private onNotification(method: string, p: Record<string, any>): void {
    if (p.threadId !== undefined && p.threadId !== this.threadId) return;
    switch (method) {
      case 'turn/started':
        this.apply({ type: 'turnStarted', turnId: p.turn?.id ?? null });
        return;
      case 'item/completed':
        if (p.item?.type === 'agentMessage' && typeof p.item.text === 'string' && p.turnId) this.agentTextByTurn.set(p.turnId, p.item.text);
        return;
      case 'turn/completed':
        void this.onTurnEnded(p.turn as CodexTurn);
        return;
      case 'thread/status/changed':
        for (const effect of this.apply({ type: 'statusChanged', active: p.status?.type === 'active' })) if (effect.kind === 'reconcile') void this.reconcile();
        return;
      case 'thread/closed': {
        // The app-server unloaded our thread: this socket is no longer subscribed and turn/start
        // fails "not loaded" until it is resumed. Reconnecting resumes it (and settles the turn
        // in flight); before this the adapter retried turn/start forever.
        const conn = this.conn;
        if (!conn) return;
        this.log.warn(`Codex thread ${this.threadId} was unloaded by the app-server; re-attaching`);
        conn.close();
        return;
      }
      default:
    }
  }

  private async onTurnEnded(turn: CodexTurn): Promise<void> {
    for (const effect of this.apply({ type: 'turnEnded', turn })) {
      if (effect.kind !== 'answer') continue;
      let text = this.agentTextByTurn.get(turn.id) ?? finalAgentText(turn);
      // turn/completed carries no items: when the agentMessage item/completed went missing, the
      // answer is only in the thread. Without this the sender got no reply at all.
      if (text === null && (turn.status ?? 'completed') === 'completed') text = await this.readFinalText(turn.id);
      await this.complete(effect.delivery, turn.status ?? 'completed', text);
    }
    this.agentTextByTurn.delete(turn.id);
    this.schedule();
  }

  /** The final agent text of a turn, read from the thread (null when it cannot be read). */
  private async readFinalText(turnId: string): Promise<string | null> {
    if (!this.conn || !this.threadId) return null;
    try {
      const r = await this.conn.request<{ thread: CodexThread }>('thread/read', { threadId: this.threadId, includeTurns: true });
      return finalAgentText((r.thread.turns ?? []).find((t) => t.id === turnId));
    } catch {
      return null;
    }
  }

  /** Trust the thread, not one notification: a missed turn/completed must not block delivery. */
  private async reconcile(): Promise<void> {
    const conn = this.conn;
    if (!conn || !this.threadId || this.pipe.gate === 'recovering') return;
    try {
      const r = await conn.request<{ thread: CodexThread }>('thread/read', { threadId: this.threadId, includeTurns: true });
      const active = r.thread?.status?.type === 'active';
      this.apply({ type: 'statusRead', active });
      const d = this.pipe.delivery;
      const verdict = reconcileVerdict(d, active, r.thread.turns ?? []);
      if (d && verdict?.kind === 'ended') await this.complete(d, verdict.turn.status ?? 'completed', this.agentTextByTurn.get(verdict.turn.id) ?? finalAgentText(verdict.turn));
      else if (d && verdict?.kind === 'phantom') await this.complete(d, 'completed', null); // folded into a turn we already answered
      this.schedule();
    } catch {
      // the socket dropped: the reconnect path takes over
    }
  }

  private startReconcile(): void {
    if (this.reconcileTimer) clearInterval(this.reconcileTimer);
    this.reconcileTimer = setInterval(() => void this.reconcile(), this.config.reconcileIntervalMs);
    this.reconcileTimer.unref();
  }

  /** Run one transition of the pipeline; the caller carries out the effects it returns. */
  private apply(event: PipelineEvent) {
    const { state, effects } = step(this.pipe, event);
    this.pipe = state;
    return effects;
  }

  /** Arm the one wake-up timer (pipe.wake says which it is). */
  private arm(wake: 'coalesce' | 'retry', ms: number, then: () => void): void {
    this.apply({ type: 'armed', wake });
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = null;
      this.apply({ type: 'woke' });
      then();
    }, ms);
  }

  private save(): void {
    try {
      saveState(this.config.statePath, this.state);
    } catch (err) {
      this.log.error(`cannot write state file ${this.config.statePath}: ${(err as Error).message}`);
    }
  }
}

/** One turn's text: each message with its sender and id, so the agent can address them. */
export function renderTurn(messages: Message[], marker: string): string {
  const parts = messages.map((m) => {
    const where = m.channel ? ` in ${m.channel}` : '';
    const subject = m.subject ? ` (subject: ${m.subject})` : '';
    return `Message #${m.id} from ${m.from}${where}${subject}:\n${m.body}`;
  });
  const head = messages.length === 1 ? 'A relay message arrived.' : `${messages.length} relay messages arrived.`;
  return `${head} Your final answer in this turn is sent back to the sender as a reply.\n\n${parts.join('\n\n')}\n\n[${marker}]`;
}
