// Node only (node:fs): imported by the CLI and the adapters, never by the dashboard or clients/index.ts.
import { chmodSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { threadId } from 'node:worker_threads';

export interface WriteJsonOptions {
  /** File mode, applied even under a umask or over an existing file (0o600: these files hold tokens). */
  mode: number;
  /** JSON.stringify indentation; compact when unset. */
  indent?: number;
}

let writes = 0;

/**
 * Write `value` as JSON (one trailing newline) so that a reader sees the old file or the new one,
 * never a truncated one, and a crash mid-write leaves the old one: write a temporary file beside
 * it, then rename it over. Missing directories are created private to the user (0700).
 */
export function writeJsonAtomic(path: string, value: unknown, opts: WriteJsonOptions): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  // Unique per writer: two processes (or threads) saving the same file must not share (and rename
  // away) one temp file. Not random bytes: node:crypto costs a short command ~5 ms to load.
  const tmp = `${path}.${process.pid}.${threadId}.${++writes}.tmp`;
  try {
    writeFileSync(tmp, `${JSON.stringify(value, null, opts.indent)}\n`, { mode: opts.mode });
    chmodSync(tmp, opts.mode);
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}
