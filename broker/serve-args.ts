import { parseArgs } from 'node:util';
import { CONFIG_VARS, type RelayConfig } from './config.js';

export const USAGE = `agent-relay serve [--port N] [--db PATH] [--host ADDR] [--insecure]

Starts the relay. Every setting can also come from the environment (see README).
  --port N      TCP port (AGENT_RELAY_PORT, default 4850; 0 picks a free port)
  --db PATH     SQLite file (AGENT_RELAY_DB, default $AGENT_RELAY_HOME/relay.db,
                AGENT_RELAY_HOME defaulting to ~/.agent-relay)
  --host ADDR   address to bind (AGENT_RELAY_HOST, default 127.0.0.1)
  --insecure    allow a non-loopback bind without AGENT_RELAY_TOKEN
  --help        this text`;

/** A wrong `serve` command line: print the message and the usage, exit 2. */
export class ServeUsageError extends Error {}

/** Flags that take a value: the config setting each sets, and what a valid value looks like. */
const VALUE_FLAGS = {
  port: { key: 'port', expected: 'a port number 0-65535' },
  db: { key: 'dbPath', expected: 'a database file path' },
  host: { key: 'host', expected: 'an address to bind, such as 127.0.0.1' },
} as const satisfies Record<string, { key: keyof typeof CONFIG_VARS; expected: string }>;
const SWITCHES = { insecure: 'insecure', help: 'help' } as const;

export type ServeArgs = { help: true } | { help: false; overrides: Partial<RelayConfig> };

/**
 * Parse `serve`'s flags into config overrides. Every refusal names the flag as typed: a flag's
 * value is checked here, not passed on through the environment (whose errors name the variable).
 */
export function parseServeArgs(argv: string[]): ServeArgs {
  // Non-strict with tokens: node's strict errors are TypeErrors with long texts; these are ours.
  const { tokens } = parseArgs({
    args: argv,
    options: { port: { type: 'string' }, db: { type: 'string' }, host: { type: 'string' }, insecure: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const overrides: Record<string, unknown> = {};
  for (const token of tokens) {
    if (token.kind === 'positional') throw new ServeUsageError(`unexpected argument "${token.value}"`);
    if (token.kind === 'option-terminator') continue;
    const flag = token.rawName;
    if (token.name in SWITCHES) {
      if (token.inlineValue) throw new ServeUsageError(`${flag} takes no value`);
      if (token.name === 'help') return { help: true };
      overrides.insecure = true;
      continue;
    }
    const spec = VALUE_FLAGS[token.name as keyof typeof VALUE_FLAGS];
    if (!spec) throw new ServeUsageError(`unknown option ${flag}`);
    const value = token.value;
    // `--port --db x` would otherwise take "--db" as the port.
    if (value === undefined || (!token.inlineValue && value.startsWith('-'))) throw new ServeUsageError(`${flag} needs a value: ${spec.expected}`);
    const parsed = CONFIG_VARS[spec.key].schema.safeParse(value);
    if (!parsed.success) throw new ServeUsageError(`${flag}: expected ${spec.expected}, got ${JSON.stringify(value)}`);
    overrides[spec.key] = parsed.data;
  }
  return { help: false, overrides: overrides as Partial<RelayConfig> };
}
