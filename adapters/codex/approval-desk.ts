import type { RelayEvent, Task } from '../../protocol/common.js';
import type { RelayClient } from '../../clients/relay-client.js';
import type { AppServerConnection, ServerRequest } from './app-server.js';
import { APPROVAL_TASK_KIND } from '../../protocol/approvals.js';
import { answerLine, choicesOf, describeApproval, isApprovalRequest, plainCommand, UNATTENDED_ANSWERS } from './approvals.js';
import { answerFor, decide, decisionOf } from './decisions.js';
import type { CodexAdapterConfig } from './config.js';
import type { AdapterState } from './state.js';

interface Log {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

/**
 * One approval request on its way to a person and back. Its life: forwarded (taskId set once the
 * relay task exists) → decided (decision set; answered at once if its socket is open, else when
 * the server replays the request after a resume) → answered (removed). A timeout refuses it
 * (decline, mapped to cancel where decline is not offered).
 * `serverRequest/resolved` (another client answered, or the turn ended) removes it unanswered.
 */
interface PendingApproval {
  request: ServerRequest;
  /** The socket the request (or its replay) came on: the answer goes back on it. */
  conn: AppServerConnection;
  taskId: number | null;
  timer: NodeJS.Timeout | null;
  /** What the person chose (a choice word; mapped to an offered one when sent). */
  decision: string | null;
  /** Set by serverRequest/resolved while the task was being created: close it once it exists. */
  resolved: boolean;
}

/** What the desk needs from the bridge: the relay, the persisted state, and who asked. */
export interface DeskContext {
  readonly config: CodexAdapterConfig;
  readonly state: AdapterState;
  readonly log: Log;
  readonly agentId: string;
  relay(): RelayClient | null;
  threadId(): string | null;
  /** The sender of the delivery in flight: approvals go to them unless a target is configured. */
  sender(): string | undefined;
  save(): void;
}

/**
 * Server requests from the app-server: approvals become relay tasks and their decisions go back
 * as answers; every other request gets an answer at once (a silent one stalls the turn).
 */
export class ApprovalDesk {
  private readonly pending = new Map<string, PendingApproval>();

  constructor(private readonly ctx: DeskContext) {}

  stop(): void {
    for (const a of this.pending.values()) if (a.timer) clearTimeout(a.timer);
  }

  async onServerRequest(conn: AppServerConnection, req: ServerRequest): Promise<void> {
    const { ctx } = this;
    if (!isApprovalRequest(req.method)) {
      // Never leave a server request unanswered: a silent one stalls the turn. An error answer
      // stalls a known one too (the server keeps waiting), so those get a valid empty answer.
      const unattended = UNATTENDED_ANSWERS[req.method];
      if (unattended) {
        ctx.log.warn(`${req.method} cannot be put to anyone over the relay: answered ${JSON.stringify(unattended)}`);
        conn.respond(req.id, unattended);
      } else conn.respondError(req.id, -32601, `the Agent Relay adapter does not handle ${req.method}`);
      return;
    }
    const key = approvalKey(req);
    const known = this.pending.get(key);
    if (known) {
      // Replayed after a resume: answer now if the decision is in, else keep waiting.
      known.request = req;
      known.conn = conn;
      if (known.decision) this.answer(key, known.decision);
      return;
    }
    const pending: PendingApproval = { request: req, conn, taskId: ctx.state.approvals[key] ?? null, timer: null, decision: null, resolved: false };
    this.pending.set(key, pending);
    pending.timer = setTimeout(() => this.timeOut(key), ctx.config.approvalTimeoutMs);
    if (pending.taskId === null) {
      try {
        pending.taskId = await this.createTask(req);
        // Settled while the task was being made: by Codex (resolved), or by the timeout.
        if (pending.resolved) return this.closeTask(pending.taskId, RESOLVED_NOTE);
        if (this.pending.get(key) !== pending) return this.closeTask(pending.taskId, `no answer in time: ${pending.decision ?? 'declined'}`);
        ctx.state.approvals[key] = pending.taskId;
        ctx.save();
      } catch (err) {
        if (pending.resolved) return;
        ctx.log.error(`could not forward approval ${req.method} to the relay (${(err as Error).message}): declining`);
        this.answer(key, 'decline');
      }
    } else {
      await this.recheck();
    }
  }

  /**
   * `serverRequest/resolved {threadId, requestId}`: the request is settled without us (another
   * client answered it, or its turn ended; the real server also sends it after our own answer,
   * which has removed the entry by then). Matched on this socket's process (request ids count per
   * app-server process, shared by its connections) and the thread: the params carry no turn id.
   * The relay task is closed `canceled`, so nobody's later answer is sent stale.
   */
  onResolved(conn: AppServerConnection, p: Record<string, unknown>): void {
    for (const [key, a] of this.pending) {
      if (a.conn !== conn || String(a.request.id) !== String(p.requestId)) continue;
      if (p.threadId !== undefined && a.request.params.threadId !== undefined && a.request.params.threadId !== p.threadId) continue;
      a.resolved = true;
      this.drop(key);
      this.ctx.log.info(`approval ${key} was resolved in Codex before an answer came through the relay${a.taskId === null ? '' : `: task #${a.taskId} canceled`}`);
      if (a.taskId !== null) this.closeTask(a.taskId, RESOLVED_NOTE);
    }
  }

  onTaskUpdate(task: Task, event: RelayEvent): void {
    for (const [key, a] of this.pending) {
      if (a.taskId !== task.id || a.decision) continue;
      const decision = decisionOf(task, event);
      if (decision) this.answer(key, decision);
    }
  }

  /** After a reconnect notifications may have been missed: read the approval tasks directly. */
  async recheck(): Promise<void> {
    for (const [key, a] of this.pending) {
      const relay = this.ctx.relay();
      if (a.decision || a.taskId === null || !relay) continue;
      const r = await relay.call('task/get', { id: a.taskId }).catch(() => null);
      const closing = r?.events.filter((e) => e.kind === 'task.closed').at(-1);
      if (r && closing) {
        const decision = decisionOf(r.task, closing);
        if (decision) this.answer(key, decision);
      }
    }
  }

  private async createTask(req: ServerRequest): Promise<number> {
    const { ctx } = this;
    const { title, body } = describeApproval(req);
    const choices = choicesOf(req);
    const target = ctx.config.approvalTarget ?? ctx.sender() ?? 'broadcast';
    const command = req.method === 'item/commandExecution/requestApproval';
    const r = await ctx.relay()!.call('task/create', {
      title,
      body: `${body}\n\n${answerLine(choices)}`,
      target,
      dedupeKey: `codex-approval:${approvalKey(req)}`,
      meta: {
        kind: APPROVAL_TASK_KIND,
        method: req.method,
        requestId: String(req.id),
        threadId: req.params.threadId ?? ctx.threadId(),
        turnId: req.params.turnId ?? null,
        // As sent: on 0.171.0 the shell string that runs; the title shows plainCommand.
        command: req.params.command ?? null,
        plainCommand: command ? plainCommand(req.params) : null,
        cwd: req.params.cwd ?? null,
        reason: req.params.reason ?? null,
        choices,
        availableDecisions: req.params.availableDecisions ?? null,
        agentId: ctx.agentId,
      },
    });
    ctx.log.info(`approval ${req.method} forwarded as task #${r.task.id} to ${target}`);
    return r.task.id;
  }

  /** Send the offered choice closest to `decision`; the choice sent, or null while the socket is down. */
  private answer(key: string, decision: string): string | null {
    const a = this.pending.get(key);
    if (!a) return null;
    a.decision = decision;
    // Only on the socket the request (or its replay) came on: another socket may be a new
    // app-server process whose own request carries the same id.
    if (!a.conn.isOpen) return null; // answered when the server replays the request after resume
    const sent = decide(a.request, decision);
    if (!sent.offered) this.ctx.log.error(`approval ${key}: "${decision}" is not offered and nor is any refusal (offered: ${choicesOf(a.request).join(', ')}); answering "decline"`);
    else if (sent.mapped) this.ctx.log.warn(`approval ${key}: "${decision}" is not offered (offered: ${choicesOf(a.request).join(', ')}); answering "${sent.choice}"`);
    a.conn.respond(a.request.id, answerFor(a.request, sent.choice));
    this.drop(key);
    this.ctx.log.info(`approval ${key} answered: ${sent.choice}`);
    return sent.choice;
  }

  /** Forget a pending approval: its timer, its entry and its persisted task id. */
  private drop(key: string): void {
    const a = this.pending.get(key);
    if (a?.timer) clearTimeout(a.timer);
    this.pending.delete(key);
    if (key in this.ctx.state.approvals) {
      delete this.ctx.state.approvals[key];
      this.ctx.save();
    }
  }

  private closeTask(taskId: number, note: string): void {
    void this.ctx
      .relay()
      ?.call('task/update', { id: taskId, status: 'canceled', note })
      .catch(() => undefined);
  }

  private timeOut(key: string): void {
    const a = this.pending.get(key);
    if (!a || a.decision) return;
    this.ctx.log.warn(`approval ${key} got no answer within ${this.ctx.config.approvalTimeoutMs} ms: declining`);
    const taskId = a.taskId;
    const sent = this.answer(key, 'decline') ?? 'decline';
    if (taskId !== null) this.closeTask(taskId, `no answer in time: ${sent === 'decline' ? 'declined' : sent}`);
  }
}

/**
 * The closing note of a task whose request was settled in Codex. `canceled`, not `done`: nobody
 * decided through the relay, and `done` would read as "accept" (decisionOf).
 */
export const RESOLVED_NOTE = 'answered in Codex (by another client, or the turn ended) before an answer came through the relay';

/**
 * Who an approval request is: its id with the thread and turn it stalls. The id alone is not
 * enough: a new app-server process numbers its requests from 0 again, and keyed by id its first
 * request was taken for the old one (no new task, the old task's decision answered it).
 */
export function approvalKey(req: ServerRequest): string {
  return `${String(req.params.threadId ?? '')}/${String(req.params.turnId ?? '')}/${String(req.id)}`;
}
