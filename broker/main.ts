import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, type RelayConfig } from './config.js';
import { createLogger } from './logger.js';
import { stopWhenNpmParentExits } from './npm-parent.js';
import { createRelay } from './relay.js';

const USAGE = `agent-relay serve [--port N] [--db PATH] [--host ADDR] [--insecure]

Starts the relay. Every setting can also come from the environment (see README).
  --port N      TCP port (AGENT_RELAY_PORT, default 4850; 0 picks a free port)
  --db PATH     SQLite file (AGENT_RELAY_DB, default $AGENT_RELAY_HOME/relay.db,
                AGENT_RELAY_HOME defaulting to ~/.agent-relay)
  --host ADDR   address to bind (AGENT_RELAY_HOST, default 127.0.0.1)
  --insecure    allow a non-loopback bind without AGENT_RELAY_TOKEN
  --help        this text`;

export async function serve(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: 'string' },
      db: { type: 'string' },
      host: { type: 'string' },
      insecure: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const env = { ...process.env };
  if (values.port !== undefined) env.AGENT_RELAY_PORT = values.port;
  if (values.db !== undefined) env.AGENT_RELAY_DB = values.db;
  if (values.host !== undefined) env.AGENT_RELAY_HOST = values.host;
  if (values.insecure) env.AGENT_RELAY_INSECURE = 'true';
  let config: RelayConfig;
  try {
    config = loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`agent-relay: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(config.logLevel);
  const relay = await createRelay(config, log);
  log.info({ url: relay.url, db: config.dbPath, sync: config.sync, auth: config.token ? 'token' : 'none' }, `agent relay listening on ${relay.url} (dashboard ${relay.url}/, WebSocket ${relay.url.replace('http', 'ws')}/rpc)`);
  // A line on stdout for people and for scripts that wait for readiness.
  if (!process.stdout.isTTY) process.stdout.write('');
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    relay.close().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
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
  serve(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`agent-relay: ${(err as Error).message}\n`);
    process.exit(1);
  });
}
