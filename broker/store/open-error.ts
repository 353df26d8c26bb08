import { accessSync, constants, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { StartupError } from '../startup-error.js';

/** The database file was written by a newer relay (its user_version is past our last migration). */
export class SchemaTooNewError extends Error {}

/** The database file cannot be used; `reason` says why in words an operator can act on. */
export class DatabaseOpenError extends StartupError {
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(`cannot open database ${path}: ${reason}`);
    this.name = 'DatabaseOpenError';
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** The nearest ancestor of `path` that exists but is not a directory, if any. */
function fileInTheWay(path: string): string | null {
  for (let p = dirname(path); p !== dirname(p); p = dirname(p)) {
    try {
      if (!statSync(p).isDirectory()) return p;
    } catch {
      // does not exist (yet): look further up
    }
  }
  return null;
}

function writable(path: string): boolean {
  try {
    accessSync(path, constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** The nearest existing ancestor directory of `path`. */
function existingDir(path: string): string {
  let p = dirname(path);
  while (p !== dirname(p) && !isDirectory(p)) p = dirname(p);
  return p;
}

function why(path: string, err: Error & { code?: string }): string | null {
  if (err instanceof SchemaTooNewError) return err.message;
  if (isDirectory(path)) return 'it is a directory';
  const blocker = fileInTheWay(path);
  if (blocker) return `${blocker} is a file, not a directory`;
  switch (err.code) {
    case 'SQLITE_NOTADB':
      return 'it is not an SQLite database (a corrupt file, or another kind of file)';
    case 'SQLITE_CORRUPT':
      return 'the database is corrupt';
    case 'SQLITE_READONLY':
      return 'it is read-only';
    case 'SQLITE_BUSY':
      return 'another process holds a lock on it';
    case 'EACCES':
    case 'EPERM':
    case 'SQLITE_CANTOPEN':
    case 'SQLITE_PERM': {
      const dir = existingDir(path);
      if (!writable(dir)) return `permission denied: ${dir} is not writable by this user`;
      if (err.code === 'SQLITE_CANTOPEN') return writable(path) ? 'SQLite cannot open it' : 'permission denied: this user cannot read and write it';
      return 'permission denied';
    }
  }
  // Other SQLite and file-system refusals still name themselves; anything else is a bug.
  if (err.code?.startsWith('SQLITE_') || /^E[A-Z]+$/.test(err.code ?? '')) return `${err.message} (${err.code})`;
  return null;
}

/**
 * Explain why opening the database at `path` failed, or null when `err` is not about the file
 * (a bug, to be reported with its stack).
 */
export function databaseOpenError(path: string, err: unknown): DatabaseOpenError | null {
  if (!(err instanceof Error)) return null;
  const reason = why(path, err as Error & { code?: string });
  return reason === null ? null : new DatabaseOpenError(resolve(path), reason);
}
