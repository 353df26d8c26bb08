import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../package-root.js';
import type { Db } from './db.js';
import { SchemaTooNewError } from './open-error.js';

// Read from the package folder: this code also runs bundled into dist/chunks/.
const MIGRATIONS_DIR = join(PACKAGE_ROOT, 'broker', 'store', 'migrations');

interface Migration {
  version: number;
  name: string;
  sql: string;
}

export function listMigrations(): Migration[] {
  return readdirSync(MIGRATIONS_DIR)
    .filter((f) => /^\d{4}_.+\.sql$/.test(f))
    .sort()
    .map((name) => ({ version: Number(name.slice(0, 4)), name, sql: readFileSync(join(MIGRATIONS_DIR, name), 'utf8') }));
}

/** Apply pending migrations in one immediate transaction, tracked by PRAGMA user_version. */
export function migrate(db: Db): { from: number; to: number } {
  const migrations = listMigrations();
  const latest = migrations.at(-1)?.version ?? 0;
  const from = db.pragma('user_version', { simple: true }) as number;
  if (from > latest) {
    throw new SchemaTooNewError(`schema version ${from} is newer than this relay (${latest}): upgrade the relay`);
  }
  const apply = db.transaction(() => {
    for (const m of migrations) {
      if (m.version <= from) continue;
      db.exec(m.sql);
      db.pragma(`user_version = ${m.version}`);
    }
  });
  apply.immediate();
  return { from, to: latest };
}
