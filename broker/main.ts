import { ConfigError, describeStore, loadConfig, type RelayConfig } from './config.js';
import { createLogger, type Logger } from './logger.js';
import { MIGRATE_USAGE, MigrateUsageError, parseMigrateArgs } from './migrate-args.js';
import { stopWhenNpmParentExits } from './npm-parent.js';
import { createRelay, type Relay } from './relay.js';
import { parseServeArgs, ServeUsageError, USAGE } from './serve-args.js';
import { isBug } from './startup-error.js';
import { DatabaseOpenError } from './store/open-error.js';

/** Where `serve` reports refusals: one line each (stderr for the process). */
export type LineWriter = (line: string) => void;

const stderrLine: LineWriter = (line) => process.stderr.write(`${line}\n`);
const stdoutLine: LineWriter = (line) => process.stdout.write(`${line}\n`);

/**
 * Start the relay (`npm start` and `agent-relay serve`). Resolves with 0 once it is listening
 * (it keeps running until SIGINT/SIGTERM), or with the exit code after a one-line refusal:
 * 2 for a wrong command line or setting, 1 when the relay could not start.
 */
export async function serve(argv: string[], err: LineWriter = stderrLine): Promise<number> {
  let config: RelayConfig;
  try {
    const args = parseServeArgs(argv);
    if (args.help) {
      process.stdout.write(`${USAGE}\n`);
      return 0;
    }
    config = loadConfig(process.env, args.overrides);
  } catch (e) {
    if (e instanceof ServeUsageError) {
      err(`agent-relay serve: ${e.message}\n\n${USAGE}`);
      return 2;
    }
    if (e instanceof ConfigError) {
      err(`agent-relay: ${e.message}`);
      return 2;
    }
    throw e;
  }
  const log = createLogger(config.logLevel);
  let relay: Relay;
  try {
    relay = await createRelay(config, log);
  } catch (e) {
    reportStartFailure(e, log, err);
    return 1;
  }
  log.info(
    { url: relay.url, store: describeStore(config), ...(config.store ? {} : { sync: config.sync }), auth: config.token ? 'token' : 'none' },
    `agent relay listening on ${relay.url} (dashboard ${relay.url}/, WebSocket ${relay.url.replace('http', 'ws')}/rpc)`,
  );
  stopOnSignals(relay, log);
  return 0;
}

/**
 * `agent-relay migrate --to postgres://… [--db PATH]`: copy a stopped relay's SQLite file into an
 * empty PostgreSQL database (broker/store-postgres/import-sqlite.ts). Resolves with 0 once copied,
 * 2 for a wrong command line or setting, 1 when the copy was refused or failed (nothing written).
 */
export async function migrate(argv: string[], out: LineWriter = stdoutLine, err: LineWriter = stderrLine): Promise<number> {
  let args: ReturnType<typeof parseMigrateArgs>;
  let dbPath: string;
  try {
    args = parseMigrateArgs(argv);
    if (args.help) {
      out(MIGRATE_USAGE);
      return 0;
    }
    // The file the relay would serve: --db, else AGENT_RELAY_DB, else $AGENT_RELAY_HOME/relay.db.
    dbPath = loadConfig(process.env, args.dbPath !== undefined ? { dbPath: args.dbPath } : {}).dbPath;
  } catch (e) {
    if (e instanceof MigrateUsageError) {
      err(`agent-relay migrate: ${e.message}\n\n${MIGRATE_USAGE}`);
      return 2;
    }
    if (e instanceof ConfigError) {
      err(`agent-relay: ${e.message}`);
      return 2;
    }
    throw e;
  }
  // Loaded only when run: the relay's start-up never loads the importer (nor `pg`).
  const { describeImport, importSqlite } = await import('./store-postgres/import-sqlite.js');
  try {
    for (const line of describeImport(await importSqlite({ sqlitePath: dbPath, postgresUrl: args.to }))) out(line);
    return 0;
  } catch (e) {
    if (isBug(e)) throw e;
    err(`agent-relay migrate: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
}

/** One line for the operator; a bug's stack goes to the log at error level as well. */
function reportStartFailure(e: unknown, log: Logger, err: LineWriter): void {
  if (e instanceof DatabaseOpenError) {
    err(`agent-relay: ${e.message}; pass --db FILE or set AGENT_RELAY_DB to use another file`);
    return;
  }
  const message = e instanceof Error ? e.message : String(e);
  if (isBug(e)) {
    log.error({ err: e }, 'relay failed to start');
    err(`agent-relay: relay failed to start: ${message} (a bug: the stack is in the log above)`);
    return;
  }
  err(`agent-relay: ${message}`);
}

function stopOnSignals(relay: Relay, log: Logger): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    relay.close().then(
      () => process.exit(0),
      (e: unknown) => {
        log.error({ err: e }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  stopWhenNpmParentExits(process.env, stop);
}

const isEntry = process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/^.*\//, '/'));
if (isEntry) {
  serve(process.argv.slice(2)).then(
    (code) => {
      if (code !== 0) process.exit(code);
    },
    (e: unknown) => {
      // Only a bug gets here (every refusal resolves with its code): keep its stack.
      console.error(e);
      process.exit(1);
    },
  );
}
