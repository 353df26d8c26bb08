import { parseArgs } from 'node:util';
import { CONFIG_VARS } from './config.js';

export const MIGRATE_USAGE = `agent-relay migrate --to postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE [--db PATH]

Copies a stopped relay's SQLite database into an empty PostgreSQL database, every id kept, so the
cursors clients hold stay valid; then start the relay with AGENT_RELAY_STORE set to that URL.
  --to URL    the PostgreSQL database: it must hold no relay data (its tables are created)
  --db PATH   the SQLite file (AGENT_RELAY_DB, default $AGENT_RELAY_HOME/relay.db,
              AGENT_RELAY_HOME defaulting to ~/.agent-relay)
  --help      this text
Stop the relay first: a file a running relay has open is refused. The copy is one transaction (all
or nothing); the SQLite file's rows are only read. Exit 0 copied, 1 refused or failed, 2 wrong usage.`;

/** A wrong `migrate` command line: print the message and the usage, exit 2. */
export class MigrateUsageError extends Error {}

export type MigrateArgs = { help: true } | { help: false; to: string; dbPath?: string };

/** Parse `migrate`'s flags; every refusal names the flag as typed. */
export function parseMigrateArgs(argv: string[]): MigrateArgs {
  const { tokens } = parseArgs({
    args: argv,
    options: { to: { type: 'string' }, db: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const values: { to?: string; db?: string } = {};
  for (const token of tokens) {
    if (token.kind === 'positional') throw new MigrateUsageError(`unexpected argument "${token.value}"`);
    if (token.kind === 'option-terminator') continue;
    const flag = token.rawName;
    if (token.name === 'help') {
      if (token.inlineValue) throw new MigrateUsageError(`${flag} takes no value`);
      return { help: true };
    }
    if (token.name !== 'to' && token.name !== 'db') throw new MigrateUsageError(`unknown option ${flag}`);
    const value = token.value;
    if (value === undefined || value === '' || (!token.inlineValue && value.startsWith('-')))
      throw new MigrateUsageError(`${flag} needs a value: ${token.name === 'to' ? 'a postgres:// URL' : 'a database file path'}`);
    values[token.name] = value;
  }
  if (values.to === undefined) throw new MigrateUsageError('--to postgres://… is required: the PostgreSQL database to copy into');
  // The password stays out of the message: only whether the URL has the right form is told.
  if (!CONFIG_VARS.store.schema.safeParse(values.to).success) throw new MigrateUsageError('--to: expected a PostgreSQL URL (postgres://user:password@host:port/database)');
  return { help: false, to: values.to, ...(values.db !== undefined ? { dbPath: values.db } : {}) };
}
