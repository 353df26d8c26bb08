/**
 * What the app-server says about itself, for the adapter's log: its version at the handshake,
 * and its warnings and errors as they come. 0.171 sends a `warning` on every turn/start with an
 * unknown model and a `deprecationNotice` on every deprecated call: each distinct text is logged
 * once, so a notice repeated per turn cannot flood the log.
 */

/** The Codex release the adapter is tested against (test/codex-real pins it). */
export const TESTED_CODEX_VERSION = '0.171.0';

/** Notifications that need no action and say nothing worth logging. */
const QUIET = new Set(['remoteControl/status/changed', 'thread/goal/cleared', 'account/rateLimits/updated', 'thread/tokenUsage/updated']);

/** Distinct texts remembered; past this the oldest is forgotten (and may be logged again). */
const REMEMBER = 200;

/**
 * The version in `userAgent`: 0.171 puts the client's name first ("agent_relay_codex/0.171.0
 * (Debian 12.0.0; x86_64) unknown (...)"), older releases "codex_cli_rs/0.150.0 (...)": the
 * token after the first '/'.
 */
export function codexVersionOf(userAgent: string | undefined): string | null {
  return /^[^/\s]+\/(\d+\.\d+\.\d+[^\s]*)/.exec(userAgent ?? '')?.[1] ?? null;
}

/** a < b for dotted versions (pre-release suffixes ignored). */
export function olderThan(a: string, b: string): boolean {
  const pa = a.split(/[.-]/).slice(0, 3).map(Number);
  const pb = b.split(/[.-]/).slice(0, 3).map(Number);
  for (let i = 0; i < 3; i++) if ((pa[i] ?? 0) !== (pb[i] ?? 0)) return (pa[i] ?? 0) < (pb[i] ?? 0);
  return false;
}

export interface NoticeLog {
  info(msg: string): void;
  warn(msg: string): void;
}

export class ServerNotices {
  private readonly seen = new Set<string>();
  private lastVersion: string | null = null;

  constructor(private readonly log: NoticeLog) {}

  /** After `initialize`: log the version once per change, warn when older than the tested one. */
  handshake(userAgent: string | undefined): void {
    const version = codexVersionOf(userAgent);
    if (version === this.lastVersion && version !== null) return;
    this.lastVersion = version;
    if (!version) return this.log.warn(`Codex app-server version unknown (userAgent ${JSON.stringify(userAgent ?? null)}); tested with ${TESTED_CODEX_VERSION}`);
    this.log.info(`Codex app-server ${version} (userAgent ${userAgent})`);
    if (olderThan(version, TESTED_CODEX_VERSION))
      this.log.warn(`Codex app-server ${version} is older than ${TESTED_CODEX_VERSION}, the version this adapter is tested with; update Codex if turns or reads misbehave`);
  }

  /** True when the notification was one of these (logged or quiet); the rest goes to delivery. */
  onNotification(method: string, p: Record<string, any>): boolean {
    if (QUIET.has(method)) return true;
    const text = noticeText(method, p);
    if (text === null) return false;
    this.once(`${method}\n${text}`, () => this.log.warn(`Codex ${method}: ${text}`));
    // `error` also ends a failed turn's story (turn/completed follows): delivery may want it.
    return method !== 'error';
  }

  private once(key: string, write: () => void): void {
    if (this.seen.has(key)) return;
    if (this.seen.size >= REMEMBER) this.seen.delete(this.seen.values().next().value!);
    this.seen.add(key);
    write();
  }
}

function noticeText(method: string, p: Record<string, any>): string | null {
  switch (method) {
    case 'warning':
      return String(p.message ?? p.summary ?? JSON.stringify(p));
    case 'configWarning':
    case 'deprecationNotice':
      return String(p.summary ?? p.message ?? JSON.stringify(p)) + (p.details ? ` (${String(p.details)})` : '');
    case 'error':
      return `${String(p.error?.message ?? p.message ?? JSON.stringify(p))}${p.willRetry ? ' (retrying)' : ''}`;
    default:
      return null;
  }
}
