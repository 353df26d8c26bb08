import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
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

function claimsDir(home: string, agentId: string): string {
  return join(claudeDir(home), 'delivered', encodeURIComponent(agentId));
}

function deliveredFile(home: string, agentId: string, messageId: number): string {
  return join(claimsDir(home, agentId), String(messageId));
}

/**
 * One path per message: the monitor (a notification line) and the hooks (context) each claim a message
 * before giving it to Claude, and only the first claim wins (the file is created exclusively, so a
 * monitor and a hook racing for one message cannot both deliver it). False: already delivered.
 * When the claim cannot be written at all it returns true: better twice than never.
 */
export function claimDelivery(home: string, agentId: string, messageId: number, by: 'monitor' | 'hook'): boolean {
  const file = deliveredFile(home, agentId, messageId);
  // A second try when the folder vanished in between: pruning removes folders it emptied.
  for (let attempt = 0; ; attempt++) {
    try {
      mkdirSync(join(file, '..'), { recursive: true, mode: 0o700 });
      writeFileSync(file, by, { flag: 'wx', mode: 0o600 });
      return true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' && attempt === 0) continue;
      return code !== 'EEXIST';
    }
  }
}

/** Undo `by`'s claim when it could not hand the message over after all, so another path delivers it. */
export function releaseDelivery(home: string, agentId: string, messageId: number, by: 'monitor' | 'hook'): void {
  const file = deliveredFile(home, agentId, messageId);
  try {
    if (readFileSync(file, 'utf8') === by) rmSync(file, { force: true });
  } catch {
    // not claimed, or already gone
  }
}

/** Whether the monitor or a hook already gave this message to Claude. */
export function wasDelivered(home: string, agentId: string, messageId: number): boolean {
  return existsSync(deliveredFile(home, agentId, messageId));
}

/** The message ids `agentId` holds claims for. */
export function claimedIds(home: string, agentId: string): number[] {
  try {
    return readdirSync(claimsDir(home, agentId))
      .map(Number)
      .filter((id) => Number.isSafeInteger(id) && id > 0);
  } catch {
    return [];
  }
}

/** Remove a claims folder once it is empty (a non-empty one stays: ENOTEMPTY). */
function dropIfEmpty(dir: string): void {
  try {
    rmdirSync(dir);
  } catch {
    // not empty, or gone
  }
}

/** Drop `agentId`'s claims for messages up to `upTo` (the caller knows no path can ask about them again). */
export function pruneClaims(home: string, agentId: string, upTo: number): number {
  const dropped = claimedIds(home, agentId).filter((id) => id <= upTo);
  for (const id of dropped) rmSync(deliveredFile(home, agentId, id), { force: true });
  dropIfEmpty(claimsDir(home, agentId));
  return dropped.length;
}

/**
 * Drop every agent's claims older than `maxAgeMs`: sessions that ended without SessionEnd (killed)
 * leave theirs behind. A message claimed that long ago and still unread is handed over again at
 * worst, which beats never.
 */
export function pruneOldClaims(home: string, maxAgeMs: number, now = Date.now()): number {
  const root = join(claudeDir(home), 'delivered');
  let dropped = 0;
  let agents: string[];
  try {
    agents = readdirSync(root);
  } catch {
    return 0;
  }
  for (const agent of agents) {
    const dir = join(root, agent);
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      continue;
    }
    for (const name of names) {
      try {
        if (now - statSync(join(dir, name)).mtimeMs > maxAgeMs) {
          rmSync(join(dir, name), { force: true });
          dropped++;
        }
      } catch {
        // removed meanwhile
      }
    }
    dropIfEmpty(dir);
  }
  return dropped;
}
