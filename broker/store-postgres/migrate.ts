import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type pg from 'pg';
import { PACKAGE_ROOT } from '../package-root.js';
import { StartupError } from '../startup-error.js';

// Read from the package folder: this code also runs bundled into dist/chunks/.
const MIGRATIONS_DIR = join(PACKAGE_ROOT, 'broker', 'store-postgres', 'migrations');
// pg_advisory_xact_lock key of the migrations: one node migrates at a time, the others wait and
// then find nothing left to do. ('RELAY' in ASCII.)
const MIGRATION_LOCK = 0x52454c4159;

export interface Migration {
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

/**
 * Apply pending migrations in one transaction under an advisory lock, each recorded in
 * relay_migrations. A database migrated by a newer relay is refused.
 */
export async function migrate(client: pg.PoolClient): Promise<{ from: number; to: number }> {
  const migrations = listMigrations();
  const latest = migrations.at(-1)?.version ?? 0;
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await client.query(`CREATE TABLE IF NOT EXISTS relay_migrations (
      version     integer PRIMARY KEY,
      name        text NOT NULL,
      applied_at  timestamptz NOT NULL DEFAULT now())`);
    const from = Number((await client.query<{ v: number | null }>('SELECT max(version) AS v FROM relay_migrations')).rows[0]?.v ?? 0);
    if (from > latest) throw new StartupError(`schema version ${from} is newer than this relay (${latest}): upgrade the relay`);
    for (const m of migrations) {
      if (m.version <= from) continue;
      await client.query(m.sql);
      await client.query('INSERT INTO relay_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
    }
    await client.query('COMMIT');
    return { from, to: latest };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}
