import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { launchPostgres, postgresBinaries } from '../../test/helpers/postgres.js';
import type { PeerProc } from './setup.js';

/** A PostgreSQL for the relay's PostgreSQL store (not a broker of its own): a fresh database per relay run. */
export interface PostgresPeer extends PeerProc {
  freshDatabase(): Promise<string>;
}

/**
 * Debian's PostgreSQL, initdb'd into a temp folder and started on a free loopback port (fsync and
 * synchronous_commit on), the same throwaway server the PostgreSQL tests use; null when it is not
 * installed (`apt-get install postgresql`).
 */
export async function startPostgresPeer(): Promise<PostgresPeer | null> {
  const bin = postgresBinaries();
  if (!bin) return null;
  const server = await launchPostgres();
  const version = /(\d+\.\d+)/.exec(execFileSync(join(bin, 'postgres'), ['--version'], { encoding: 'utf8' }))?.[1] ?? 'unknown';
  return {
    name: 'postgresql',
    pid: server.pid!,
    port: server.port,
    version,
    stop: () => server.shutdown(),
    freshDatabase: () => server.freshDatabase(),
  };
}
