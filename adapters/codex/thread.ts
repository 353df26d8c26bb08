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

const NO_ROLLOUT = /no rollout found/i;
const ACTIVE_WRITER = /active writer/i;

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
    if (err instanceof AppServerError && NO_ROLLOUT.test(err.message)) return null;
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
 * Attach to a thread by mode. `known` is the thread this adapter used before (its state file):
 * on a reconnect or restart it is resumed first, so the adapter keeps its conversation.
 */
export async function attachThread(
  conn: AppServerConnection,
  config: CodexAdapterConfig,
  known: string | null,
  log: (msg: string) => void,
): Promise<{ thread: CodexThread; how: 'resumed' | 'started' }> {
  if (known) {
    const t = await resume(conn, known);
    if (t) return { thread: t, how: 'resumed' };
    log(`thread ${known} has no rollout yet (no turn ran); attaching by mode ${config.threadMode}`);
  }
  if (config.threadMode === 'resume') {
    const id = config.threadId ?? readHandoff(config);
    if (!id) log('CODEX_THREAD_MODE=resume but no thread id was handed over (CODEX_THREAD_ID or the SessionStart hook); starting a thread');
    else {
      const t = await resume(conn, id);
      if (t) return { thread: t, how: 'resumed' };
      log(`thread ${id} has no rollout yet (no turn ran); starting a thread instead`);
    }
  } else if (config.threadMode === 'auto') {
    const loaded = await findLoadedForCwd(conn, config.cwd);
    if (loaded) {
      const t = await resume(conn, loaded.id);
      if (t) return { thread: t, how: 'resumed' };
    }
  }
  return { thread: await start(conn, config), how: 'started' };
}

/** The newest turns a read asks for: a delivery's turn is among the last few (recovery, reconcile). */
const TURNS_PAGE = 20;
const NOT_MATERIALIZED = /not materialized/i;

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
    if (err instanceof AppServerError && NOT_MATERIALIZED.test(err.message)) return [];
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
