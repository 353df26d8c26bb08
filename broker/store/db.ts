import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

export type Db = Database.Database;

export interface OpenOptions {
  path: string;
  synchronous: 'FULL' | 'NORMAL';
  busyTimeoutMs: number;
}

/**
 * Open the database and set every PRAGMA on every open: better-sqlite3 does not keep
 * `synchronous` across reopen (it silently drops to NORMAL under WAL), so it is never assumed.
 */
export function openDatabase(opts: OpenOptions): Db {
  if (opts.path !== ':memory:') mkdirSync(dirname(opts.path), { recursive: true });
  const db = new Database(opts.path, { timeout: opts.busyTimeoutMs });
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${opts.synchronous}`);
  db.pragma(`busy_timeout = ${opts.busyTimeoutMs}`);
  db.pragma('foreign_keys = ON');
  db.pragma('temp_store = MEMORY');
  const actual = db.pragma('synchronous', { simple: true });
  const expected = opts.synchronous === 'FULL' ? 2 : 1;
  if (actual !== expected) throw new Error(`PRAGMA synchronous is ${String(actual)}, expected ${opts.synchronous}`);
  return db;
}
