import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeJsonAtomic } from '../../clients/atomic-json.js';

/** What the SessionStart hook leaves for the later hooks and the monitor of the same session. */
export interface ClaudeSession {
  sessionId: string;
  agentId: string;
  cwd: string;
  url: string;
  /** Message ids already handed to Claude by a hook (deliver each once). */
  handedOver: number[];
  /** Stop-hook blocks in a row; reset when a Stop passes without blocking. */
  consecutiveBlocks: number;
}

const KEEP_HANDED_OVER = 500;

export function claudeDir(home: string): string {
  return join(home, 'claude');
}

function sessionFile(home: string, sessionId: string): string {
  return join(claudeDir(home), 'sessions', `${encodeURIComponent(sessionId)}.json`);
}

/** The newest session started in a directory, for a monitor not told its session id (CLAUDE_CODE_SESSION_ID). */
function cwdFile(home: string, cwd: string): string {
  return join(claudeDir(home), 'by-cwd', `${createHash('sha256').update(cwd).digest('hex').slice(0, 32)}.json`);
}

export function loadSession(home: string, sessionId: string): ClaudeSession | null {
  try {
    return JSON.parse(readFileSync(sessionFile(home, sessionId), 'utf8')) as ClaudeSession;
  } catch {
    return null;
  }
}

/** Both files are replaced whole: the monitor and the next hook may read them while a hook writes. */
export function saveSession(home: string, s: ClaudeSession): void {
  writeJsonAtomic(sessionFile(home, s.sessionId), { ...s, handedOver: s.handedOver.slice(-KEEP_HANDED_OVER) }, { mode: 0o600 });
  writeJsonAtomic(cwdFile(home, s.cwd), { sessionId: s.sessionId, agentId: s.agentId }, { mode: 0o600 });
}

export function forgetSession(home: string, s: ClaudeSession): void {
  rmSync(sessionFile(home, s.sessionId), { force: true });
  const latest = latestForCwd(home, s.cwd);
  if (latest?.sessionId === s.sessionId) rmSync(cwdFile(home, s.cwd), { force: true });
}

export function latestForCwd(home: string, cwd: string): { sessionId: string; agentId: string } | null {
  try {
    return JSON.parse(readFileSync(cwdFile(home, cwd), 'utf8')) as { sessionId: string; agentId: string };
  } catch {
    return null;
  }
}

/** Hooks stay quiet on stdout when something fails; the reason goes here. */
export function logHookProblem(home: string, event: string, message: string): void {
  try {
    mkdirSync(claudeDir(home), { recursive: true, mode: 0o700 });
    appendFileSync(join(claudeDir(home), 'hooks.log'), `${new Date().toISOString()} ${event}: ${message}\n`);
  } catch {
    // Nowhere left to report; the hook must still not block Claude.
  }
}

function deliveredFile(home: string, agentId: string, messageId: number): string {
  return join(claudeDir(home), 'delivered', encodeURIComponent(agentId), String(messageId));
}

/**
 * One path per message: the monitor (a notification line) and the hooks (context) each claim a message
 * before giving it to Claude, and only the first claim wins (the file is created exclusively, so a
 * monitor and a hook racing for one message cannot both deliver it). False: already delivered.
 * When the claim cannot be written at all it returns true: better twice than never.
 */
export function claimDelivery(home: string, agentId: string, messageId: number, by: 'monitor' | 'hook'): boolean {
  const file = deliveredFile(home, agentId, messageId);
  try {
    mkdirSync(join(file, '..'), { recursive: true, mode: 0o700 });
    writeFileSync(file, by, { flag: 'wx', mode: 0o600 });
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'EEXIST';
  }
}

/** Whether the monitor or a hook already gave this message to Claude. */
export function wasDelivered(home: string, agentId: string, messageId: number): boolean {
  return existsSync(deliveredFile(home, agentId, messageId));
}
