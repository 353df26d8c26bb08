import type { Message } from '../../protocol/common.js';
import type { RelayClient } from '../../clients/relay-client.js';
import { AppServerError, type AppServerConnection } from './app-server.js';
import type { CodexAdapterConfig } from './config.js';
import { initialPipeline, mayArm, reconcileVerdict, recoveryVerdict, sendPlan, snapshot, step, type Delivery, type Pipeline, type PipelineEvent } from './pipeline.js';
import type { AdapterState } from './state.js';
import { finalAgentText, readWithTurns, turnCarries, type CodexThread, type CodexTurn } from './thread.js';

const OVERLOADED = -32001;

/** What the deliverer needs from the bridge: the sockets it holds and the persisted state. */
export interface DelivererHost {
  readonly config: CodexAdapterConfig;
  readonly state: AdapterState;
  readonly log: { info(msg: string): void; warn(msg: string): void; error(msg: string): void };
  conn(): AppServerConnection | null;
  threadId(): string | null;
  relay(): RelayClient | null;
  stopped(): boolean;
  save(): void;
}

/**
 * Puts relay messages into Codex turns and the turns' answers back as replies. The decisions
 * (when to send, which turn is ours, what a read says) are pipeline.ts's; this class does the
 * requests and the relay bookkeeping around them.
 *
 * Delivery rules: messages that arrive within the coalesce window go in one turn; while a turn
 * runs they wait and go in one turn when it ends (or steer it, when configured); turn/start is
 * never sent while the thread is busy (it would answer with a phantom turn id). A message is
 * marked read on the relay only once the turn carrying it was accepted, and the state file
 * records it, so a restart neither loses nor repeats a delivery.
 */
export class Deliverer {
  /** The delivery pipeline's state: changed only through apply(). */
  private pipe: Pipeline = initialPipeline();
  /** Messages waiting for a turn (ids above the cursor, none in the delivery in flight). */
  readonly queue: Message[] = [];
  /** The handle of pipe.wake (the coalesce window or the retry delay). */
  private wakeTimer: NodeJS.Timeout | null = null;
  private readonly agentTextByTurn = new Map<string, string>();
  /** The last reconcile failure logged (not repeated every interval). */
  private reconcileError: string | null = null;

  constructor(private readonly host: DelivererHost) {}

  /** The delivery in flight (approvals go to its sender). */
  get current(): Delivery | null {
    return this.pipe.delivery;
  }

  /** A socket attached to the thread (recovery follows), or the socket dropped. */
  attached(active: boolean): void {
    this.apply({ type: 'attached', active });
  }

  recovered(): void {
    this.apply({ type: 'recovered' });
  }

  detached(): void {
    this.apply({ type: 'detached' });
  }

  stop(): void {
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
  }

  /**
   * After a (re)attach, settle the turn that was in flight when the socket dropped or the adapter
   * stopped: if the thread carries it, it was delivered (answer it if it finished); if not, the
   * messages go out again.
   */
  async recoverInFlight(thread: CodexThread): Promise<void> {
    const saved = this.host.state.inFlight;
    const current = this.pipe.delivery;
    if (!current && !saved) return;
    const marker = current?.marker ?? saved!.marker;
    const knownTurnId = current ? current.turnId : saved!.turnId;
    // Always read: thread/start and thread/resume {excludeTurns} carry no turns.
    const turns = (await readWithTurns(this.host.conn()!, thread.id)).turns;
    // The marker as rendered, brackets included: "relay#1" alone would also match "[relay#12]".
    const turn = (turns ?? []).find((t) => (knownTurnId !== null && t.id === knownTurnId) || turnCarries(t, `[${marker}]`));
    if (!turn) {
      // Never reached the thread: deliver those messages again (they were not marked read; after
      // a restart the relay replays them, as the cursor never moved past them).
      this.requeue(current?.messages ?? []);
      return;
    }
    const ids = current?.messages.map((m) => m.id) ?? saved!.messageIds;
    const verdict = recoveryVerdict(
      turn,
      finalAgentText(turn) !== null,
      ids.some((id) => this.host.state.redelivered.includes(id)),
    );
    if (verdict === 'redeliver') {
      this.host.log.warn(
        `Codex turn ${turn.id} was cut off (interrupted, never completed, no answer: the app-server went away); delivering ${ids.map((id) => `#${id}`).join(', ')} again in a new turn (once)`,
      );
      this.host.state.redelivered.push(...ids);
      this.requeue(current?.messages ?? (await this.fetchMessages(ids)));
      return;
    }
    // Adopt the turn as THE in-flight delivery (one object: see Delivery in pipeline.ts) before
    // the acceptance's relay calls: its turn/completed may come meanwhile and must find it.
    const delivery: Delivery = current ?? { messages: await this.fetchMessages(saved!.messageIds), marker, turnId: saved!.turnId, started: false };
    const unanswered = delivery.turnId === null; // turn/start's answer never came: accept it now
    this.apply({ type: 'inFlight', delivery });
    this.apply({ type: 'adopted', delivery, turnId: turn.id, running: verdict === 'running' });
    if (unanswered) await this.accepted(delivery, turn.id);
    if (verdict === 'ended') await this.complete(delivery, turn.status!, finalAgentText(turn), turn.error?.message);
  }

  /** Back to the front of the queue: the delivery in flight did not (or will not) answer them. */
  private requeue(messages: Message[]): void {
    this.apply({ type: 'dropped' });
    this.host.state.inFlight = null;
    this.queue.unshift(...messages.filter((m) => !this.queue.some((q) => q.id === m.id)));
    this.host.save();
  }

  private async fetchMessages(ids: number[]): Promise<Message[]> {
    const out: Message[] = [];
    for (const id of ids) {
      const r = await this.host
        .relay()!
        .call('message/get', { id })
        .catch(() => null);
      if (r) out.push(r.message);
    }
    return out;
  }

  enqueue(m: Message): void {
    if (m.id <= this.host.state.cursor || this.host.state.delivered.includes(m.id)) return;
    if (this.queue.some((q) => q.id === m.id) || this.pipe.delivery?.messages.some((q) => q.id === m.id)) return;
    this.queue.push(m);
    this.schedule();
  }

  /** Start the coalesce window (once): everything that arrives within it goes in one turn. */
  schedule(): void {
    if (this.host.stopped() || !this.host.conn() || !this.host.threadId() || !mayArm(this.pipe, this.queue.length, this.host.config.steer)) return;
    this.arm('coalesce', this.host.config.coalesceWindowMs, () => void this.deliver());
  }

  private async deliver(): Promise<void> {
    const conn = this.host.conn();
    const threadId = this.host.threadId();
    if (!conn || !threadId || this.queue.length === 0 || this.pipe.gate !== 'open') return;
    this.apply({ type: 'sendBegan' });
    try {
      const plan = sendPlan(this.pipe, this.host.config.steer);
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
      this.host.state.inFlight = { turnId: null, messageIds: batch.map((m) => m.id), marker };
      this.host.save();
      let turnId: string;
      try {
        const r = await conn.request<{ turn: { id: string } }>('turn/start', { threadId, input: [{ type: 'text', text: renderTurn(batch, marker), text_elements: [] }] });
        turnId = r.turn.id;
      } catch (err) {
        if (!conn.isOpen) return; // recoverInFlight decides after the reconnect
        this.apply({ type: 'dropped' });
        this.host.state.inFlight = null;
        this.queue.unshift(...batch);
        this.host.save();
        this.retryLater(err);
        return;
      }
      this.apply({ type: 'started', delivery, turnId });
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
      this.host.log.info(`steer refused (${(err as Error).message}); the messages wait for the next turn`);
      return;
    }
    // Steered text joins the running turn: its answer covers these messages too. A turn we did
    // not start (a person's, in the TUI) is adopted as the delivery, or its end would answer no
    // one and the steered messages would never get a reply.
    const ids = batch.map((m) => m.id);
    const d = this.pipe.delivery ?? { messages: [], marker, turnId: expectedTurnId, started: true };
    d.messages.push(...batch);
    this.apply({ type: 'inFlight', delivery: d });
    this.markDelivered(ids, { turnId: d.turnId, messageIds: [...new Set([...(this.host.state.inFlight?.messageIds ?? []), ...d.messages.map((m) => m.id)])], marker: d.marker });
    await this.markRead(ids);
  }

  private retryLater(err: unknown): void {
    const overloaded = err instanceof AppServerError && err.code === OVERLOADED;
    this.host.log.warn(`delivery postponed: ${(err as Error).message}${overloaded ? ' (app-server overloaded)' : ''}`);
    if (this.pipe.wake === 'retry') return;
    this.arm('retry', this.host.config.reconnectInitialMs, () => this.schedule());
  }

  /** The turn carrying these messages was accepted: record it, then mark them read on the relay. */
  private async accepted(delivery: Delivery, turnId: string): Promise<void> {
    delivery.turnId = turnId;
    const ids = delivery.messages.length ? delivery.messages.map((m) => m.id) : (this.host.state.inFlight?.messageIds ?? []);
    if (!delivery.done) this.apply({ type: 'inFlight', delivery });
    this.markDelivered(ids, delivery.done ? null : { turnId, messageIds: ids, marker: delivery.marker });
    await this.markRead(ids);
  }

  private markDelivered(ids: number[], inFlight: AdapterState['inFlight']): void {
    // A restarted adapter may already hold these again: the relay replayed them (the cursor had
    // not moved past them) before recovery found the turn carrying them.
    for (let i = this.queue.length - 1; i >= 0; i--) if (ids.includes(this.queue[i]!.id)) this.queue.splice(i, 1);
    this.host.state.cursor = Math.max(this.host.state.cursor, ...ids);
    this.host.state.delivered.push(...ids);
    this.host.state.inFlight = inFlight;
    this.host.save();
  }

  private async markRead(ids: number[]): Promise<void> {
    const relay = this.host.relay();
    if (!ids.length || !relay) return;
    for (const id of ids) await relay.call('message/ack', { id, state: 'injected' }).catch(() => undefined);
    await relay.call('message/read', { ids }).catch((err: Error) => this.host.log.warn(`could not mark ${ids.join(',')} read: ${err.message}`));
  }

  /**
   * The turn ended: send its final answer back as a reply in each thread it answered. A turn that
   * did not complete says so, with Codex's reason when it gave one (turn.error.message).
   */
  private async complete(delivery: Delivery, status: string, text: string | null, reason?: string): Promise<void> {
    // Once: turn/completed, a reconcile and a recovery can all see the same turn end.
    if (delivery.done) return;
    this.apply({ type: 'settled', delivery });
    this.host.state.inFlight = null;
    this.host.save();
    if (delivery.turnId) this.agentTextByTurn.delete(delivery.turnId);
    const detail = [reason, text].filter(Boolean).join(' — ');
    const body = status === 'completed' ? text : `(Codex turn ${status}${detail ? `: ${detail}` : ''})`;
    const relay = this.host.relay();
    if (!body || !relay) return;
    // One reply per relay thread, to the last message of that thread in the turn.
    const lastByThread = new Map<number, Message>();
    for (const m of delivery.messages) lastByThread.set(m.threadId, m);
    for (const m of lastByThread.values()) {
      await relay.call('message/send', { to: m.from, body, replyTo: m.id }).catch((err: Error) => this.host.log.warn(`reply to #${m.id} failed: ${err.message}`));
    }
  }

  /** The notifications that move a turn along (the bridge filters them to our thread). */
  onNotification(method: string, p: Record<string, any>): void {
    switch (method) {
      case 'turn/started':
        this.apply({ type: 'turnStarted', turnId: p.turn?.id ?? null });
        this.schedule(); // with steer, what waits can go into the turn now that it has an id
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
      await this.complete(effect.delivery, turn.status ?? 'completed', text, turn.error?.message);
    }
    this.agentTextByTurn.delete(turn.id);
    this.schedule();
  }

  /** The final agent text of a turn, read from the thread (null when it cannot be read). */
  private async readFinalText(turnId: string): Promise<string | null> {
    const conn = this.host.conn();
    const threadId = this.host.threadId();
    if (!conn || !threadId) return null;
    try {
      const thread = await readWithTurns(conn, threadId);
      return finalAgentText((thread.turns ?? []).find((t) => t.id === turnId));
    } catch {
      return null;
    }
  }

  /** Trust the thread, not one notification: a missed turn/completed must not block delivery. */
  async reconcile(): Promise<void> {
    const conn = this.host.conn();
    const threadId = this.host.threadId();
    if (!conn || !threadId || this.pipe.gate === 'recovering') return;
    try {
      const asOf = snapshot(this.pipe);
      const thread = await readWithTurns(conn, threadId);
      const active = thread?.status?.type === 'active';
      const d = this.pipe.delivery;
      const verdict = reconcileVerdict(d, active, thread.turns ?? [], asOf);
      // A turn started while this read was on its way: it is older than the turn (the next status
      // change reconciles again). Taken as truth it called that turn a phantom and lost its reply.
      if (verdict?.kind === 'stale') return;
      this.apply({ type: 'statusRead', active });
      if (d && verdict?.kind === 'ended')
        await this.complete(d, verdict.turn.status ?? 'completed', this.agentTextByTurn.get(verdict.turn.id) ?? finalAgentText(verdict.turn), verdict.turn.error?.message);
      else if (d && verdict?.kind === 'phantom') await this.complete(d, 'completed', null); // folded into a turn we already answered
      this.schedule();
      this.reconcileError = null;
    } catch (err) {
      // A dropped socket: the reconnect path takes over. Anything else was swallowed silently
      // (0.171 refused every read before the first turn): say it, once per text.
      const text = (err as Error).message;
      if (conn.isOpen && text !== this.reconcileError) this.host.log.warn(`reconcile failed: ${text}`);
      this.reconcileError = text;
    }
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
