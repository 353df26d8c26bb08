import { readFileSync } from 'node:fs';
import { AppServerError, type AppServerConnection } from './app-server.js';
import { handoffFile, type CodexAdapterConfig } from './config.js';

export interface CodexThread {
  id: string;
  cwd?: string;
  status?: { type: string; activeFlags?: string[] };
  updatedAt?: number;
  turns?: CodexTurn[];
}

export interface CodexTurn {
  id: string;
  status?: string;
  /** Why a failed turn failed (0.171: the model's error, or Codex's own text for an HTTP error). */
  error?: { message?: string } | null;
  /** Unix seconds; null on a turn the app-server never finished (it died under it). */
  completedAt?: number | null;
  items?: Array<{ type: string; id?: string; text?: string; content?: Array<{ type: string; text?: string }> }>;
}

/** The thread is held by another app-server process: retrying will not help. */
export class ActiveWriterError extends Error {}

/**
 * A thread that never ran a turn: "no rollout found" (resume), "not materialized yet"
 * (turns/list), and, once any client asked it for `includeTurns` before its first turn, 0.171
 * answers both with -32601 "list_turns is not supported yet" until that turn (test/codex-real/fake-parity).
 */
const NO_TURN_YET = /no rollout found|not materialized|list_turns is not supported/i;
const ACTIVE_WRITER = /active writer/i;
const UNKNOWN_METHOD = /unknown variant/i;

/** The thread id a Codex SessionStart hook left for this cwd, if any. */
export function readHandoff(config: CodexAdapterConfig): string | undefined {
  try {
    const v = JSON.parse(readFileSync(handoffFile(config.handoffDir, config.cwd), 'utf8')) as { threadId?: unknown };
    return typeof v.threadId === 'string' && v.threadId ? v.threadId : undefined;
  } catch {
    return undefined;
  }
}

async function start(conn: AppServerConnection, config: CodexAdapterConfig): Promise<CodexThread> {
  const r = await conn.request<{ thread: CodexThread }>('thread/start', {
    cwd: config.cwd,
    ...(config.model ? { model: config.model } : {}),
    ...(config.approvalPolicy ? { approvalPolicy: config.approvalPolicy } : {}),
    ...(config.sandbox ? { sandbox: config.sandbox } : {}),
  });
  return r.thread;
}

/**
 * Resume (and subscribe to) a thread; null when it has no rollout yet (never ran a turn).
 * `excludeTurns`: 0.171 deprecates the full history in the answer; readWithTurns pages them.
 */
export async function resume(conn: AppServerConnection, threadId: string): Promise<CodexThread | null> {
  try {
    const r = await conn.request<{ thread: CodexThread }>('thread/resume', { threadId, excludeTurns: true });
    const { turns: _none, ...thread } = r.thread;
    return thread;
  } catch (err) {
    if (err instanceof AppServerError && NO_TURN_YET.test(err.message)) return null;
    if (err instanceof AppServerError && ACTIVE_WRITER.test(err.message)) {
      throw new ActiveWriterError(`thread ${threadId} is held by another Codex process (active writer); stop that process or use CODEX_THREAD_MODE=start`);
    }
    throw err;
  }
}

/** `auto`: the newest loaded thread whose cwd is ours; never an unrelated one. */
async function findLoadedForCwd(conn: AppServerConnection, cwd: string): Promise<CodexThread | null> {
  const loaded = await conn.request<{ data: string[] }>('thread/loaded/list', {});
  const mine: CodexThread[] = [];
  for (const id of loaded.data ?? []) {
    const r = await conn.request<{ thread: CodexThread }>('thread/read', { threadId: id });
    if (r.thread?.cwd === cwd) mine.push(r.thread);
  }
  mine.sort((a, b) => (b.updatedAt ?? 0) - (a.updatedAt ?? 0));
  return mine[0] ?? null;
}

/**
 * How the adapter holds its thread. `resumed`/`started`: subscribed (turn and item events come).
 * `unsubscribed`: a loaded thread that never ran a turn, which 0.171 cannot resume ("no rollout
 * found"); turns can still be started on it and its thread/status/changed still reaches the
 * socket that started them, so turn ends are read from the thread (the reconcile) until the
 * first turn gives it a rollout and the bridge resumes it.
 */
export type AttachHow = 'resumed' | 'started' | 'unsubscribed';

/** A thread resume refused: loaded but empty (read works), or unknown to this app-server. */
async function notResumable(conn: AppServerConnection, id: string): Promise<{ thread: CodexThread | null; why: string }> {
  try {
    const { thread } = await conn.request<{ thread: CodexThread }>('thread/read', { threadId: id });
    return { thread, why: `thread ${id} is loaded (${thread.status?.type ?? 'status unknown'}) but never ran a turn, so it has no rollout to resume` };
  } catch (err) {
    if (err instanceof AppServerError) return { thread: null, why: `thread ${id} is unknown to this app-server (no rollout, not loaded: ${err.message})` };
    throw err;
  }
}

/** Resume `id`, else hold it unsubscribed when it is loaded but empty; null (and why) otherwise. */
async function attachTo(conn: AppServerConnection, id: string, log: (msg: string) => void, what: string): Promise<{ thread: CodexThread; how: AttachHow } | { why: string }> {
  const t = await resume(conn, id);
  if (t) return { thread: t, how: 'resumed' };
  const { thread, why } = await notResumable(conn, id);
  if (!thread) return { why };
  log(`${what}: ${why}; using it unsubscribed (turn ends read from the thread) until its first turn makes it resumable`);
  return { thread, how: 'unsubscribed' };
}

/**
 * Attach to a thread by mode. `known` is the thread this adapter used before (its state file):
 * on a reconnect or restart it is resumed first, so the adapter keeps its conversation.
 */
export async function attachThread(conn: AppServerConnection, config: CodexAdapterConfig, known: string | null, log: (msg: string) => void): Promise<{ thread: CodexThread; how: AttachHow }> {
  if (known) {
    const r = await attachTo(conn, known, log, 'the thread this adapter used before');
    if ('thread' in r) return r;
    log(`${r.why}; attaching by mode ${config.threadMode}`);
  }
  if (config.threadMode === 'resume') {
    const id = config.threadId ?? readHandoff(config);
    if (!id) log('CODEX_THREAD_MODE=resume but no thread id was handed over (CODEX_THREAD_ID or the SessionStart hook); starting a thread');
    else {
      const r = await attachTo(conn, id, log, 'CODEX_THREAD_MODE=resume');
      if ('thread' in r) return r;
      log(`CODEX_THREAD_MODE=resume: ${r.why}; starting a thread instead`);
    }
  } else if (config.threadMode === 'auto') {
    const loaded = await findLoadedForCwd(conn, config.cwd);
    if (!loaded) log(`CODEX_THREAD_MODE=auto: no loaded thread of ${config.cwd} on this app-server; starting a thread`);
    else {
      const r = await attachTo(conn, loaded.id, log, `CODEX_THREAD_MODE=auto (the newest loaded thread of ${config.cwd})`);
      if ('thread' in r) return r;
      log(`CODEX_THREAD_MODE=auto: ${r.why}; starting a thread instead`);
    }
  }
  return { thread: await start(conn, config), how: 'started' };
}

/** The newest turns a read asks for: a delivery's turn is among the last few (recovery, reconcile). */
const TURNS_PAGE = 20;

/**
 * The thread with its recent turns, oldest first: the one place that asks for turns. 0.171
 * refuses `thread/read {includeTurns:true}` before the first turn (-32601) and deprecates it
 * after (a `deprecationNotice` per call), so: `thread/read {threadId}` for the status and
 * `thread/turns/list` (newest first, paged by `limit`/`cursor`) for the turns. turns/list
 * refuses a thread before its first user message ("not materialized yet"): that is no turns.
 */
export async function readWithTurns(conn: AppServerConnection, threadId: string): Promise<CodexThread> {
  const { thread } = await conn.request<{ thread: CodexThread }>('thread/read', { threadId });
  return { ...thread, turns: await listTurns(conn, threadId) };
}

async function listTurns(conn: AppServerConnection, threadId: string): Promise<CodexTurn[]> {
  try {
    const r = await conn.request<{ data: CodexTurn[] }>('thread/turns/list', { threadId, limit: TURNS_PAGE });
    return [...(r.data ?? [])].reverse();
  } catch (err) {
    if (err instanceof AppServerError && NO_TURN_YET.test(err.message)) return [];
    // Before 0.171 there is no thread/turns/list; includeTurns was the way, and worked early.
    if (err instanceof AppServerError && UNKNOWN_METHOD.test(err.message)) {
      return (await conn.request<{ thread: CodexThread }>('thread/read', { threadId, includeTurns: true })).thread.turns ?? [];
    }
    throw err;
  }
}

/** The agent's final text in a turn: its last agentMessage item. */
export function finalAgentText(turn: CodexTurn | undefined): string | null {
  const items = turn?.items ?? [];
  for (let i = items.length - 1; i >= 0; i--) {
    const item = items[i]!;
    if (item.type === 'agentMessage' && typeof item.text === 'string' && item.text) return item.text;
  }
  return null;
}

/** Whether a turn's user input contains `marker` (recognising our own delivery after a drop). */
export function turnCarries(turn: CodexTurn, marker: string): boolean {
  for (const item of turn.items ?? []) {
    if (item.type !== 'userMessage') continue;
    const texts = [item.text ?? '', ...(item.content ?? []).map((c) => c.text ?? '')];
    if (texts.some((t) => t.includes(marker))) return true;
  }
  return false;
}
