import { homedir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { LIMITS } from '../protocol/limits.js';

const bool = z.enum(['true', 'false', '1', '0', 'yes', 'no']).transform((v) => v === 'true' || v === '1' || v === 'yes');
const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const csv = z.string().transform((s) =>
  s
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean),
);

/**
 * Every relay setting: environment variable, default, meaning. The README's table is this table.
 * Parsed once at start-up; a bad value stops the relay with a message naming the variable.
 */
export const CONFIG_VARS = {
  host: { env: 'AGENT_RELAY_HOST', schema: z.string().min(1), default: '127.0.0.1', doc: 'Address to bind. Non-loopback needs AGENT_RELAY_TOKEN (or --insecure).' },
  port: { env: 'AGENT_RELAY_PORT', schema: int(0, 65535), default: '4850', doc: 'TCP port (0 picks a free one).' },
  home: {
    env: 'AGENT_RELAY_HOME',
    schema: z.string().min(1).transform(expandHome),
    default: '~/.agent-relay',
    doc: 'Folder of the relay’s own files: the database by default, and the CLI’s and hooks’ agent tokens.',
  },
  dbPath: { env: 'AGENT_RELAY_DB', schema: z.string().min(1), default: undefined, doc: 'SQLite database file (created with its folder); default `$AGENT_RELAY_HOME/relay.db`.' },
  store: {
    env: 'AGENT_RELAY_STORE',
    schema: z
      .string()
      .regex(/^postgres(ql)?:\/\/\S+$/, 'must be a PostgreSQL URL (postgres://user@host:port/database), or unset for the SQLite file AGENT_RELAY_DB')
      .optional(),
    default: undefined,
    doc: 'Keep the relay’s state in PostgreSQL (`postgres://user:password@host:port/database`) instead of the SQLite file. Unset: SQLite (the default). See the README’s “PostgreSQL” section.',
  },
  cluster: {
    env: 'AGENT_RELAY_CLUSTER',
    schema: z.enum(['on', 'off']),
    default: 'off',
    doc: '`on` lets several relay nodes serve one PostgreSQL database (AGENT_RELAY_STORE); `off`, a second node is refused. See the README’s “Several nodes”.',
  },
  token: {
    env: 'AGENT_RELAY_TOKEN',
    schema: z.string().min(16, 'must be at least 16 characters').optional(),
    default: undefined,
    doc: 'Relay token every connection and HTTP request must carry as a bearer.',
  },
  sync: { env: 'AGENT_RELAY_SYNC', schema: z.enum(['FULL', 'NORMAL']), default: 'FULL', doc: 'PRAGMA synchronous. FULL: an acknowledged write survives power loss.' },
  searchIndex: {
    env: 'AGENT_RELAY_SEARCH_INDEX',
    schema: z.enum(['on', 'off']),
    default: 'on',
    doc: "The full-text index message/search reads, written in each message's transaction. off: message/search is refused and durable publishes run about 25% faster (bench/RESULTS.md); on again: the index is rebuilt at start-up.",
  },
  integrationsPath: { env: 'AGENT_RELAY_INTEGRATIONS', schema: z.string().min(1).optional(), default: undefined, doc: 'JSON file of webhook integrations.' },
  allowedOrigins: { env: 'AGENT_RELAY_ALLOWED_ORIGINS', schema: csv, default: '', doc: 'Browser origins allowed besides the relay’s own (comma-separated).' },
  allowedHosts: { env: 'AGENT_RELAY_ALLOWED_HOSTS', schema: csv, default: '', doc: 'Host header names accepted besides loopback names and the bind address (comma-separated).' },
  callbackSecret: {
    env: 'AGENT_RELAY_CALLBACK_SECRET',
    schema: z.string().min(16, 'must be at least 16 characters').optional(),
    default: undefined,
    doc: 'Standard Webhooks secret (whsec_…) signing callbacks of tasks not created by an integration.',
  },
  allowPrivateCallbacks: { env: 'AGENT_RELAY_ALLOW_PRIVATE_CALLBACKS', schema: bool, default: 'false', doc: 'Let callbacks reach private and loopback addresses (trusted networks only).' },
  staleTtlMs: { env: 'STALE_TTL_MS', schema: int(100, 86_400_000), default: '90000', doc: 'An agent with no heartbeat and no live socket for this long goes offline.' },
  retentionDays: { env: 'RETENTION_DAYS', schema: z.coerce.number().positive().max(3650), default: '14', doc: 'Messages, events and closed tasks older than this are pruned.' },
  systemAgents: {
    env: 'AGENT_RELAY_SYSTEM_AGENTS',
    schema: csv,
    default: '',
    doc: 'Ids of system agents (never pruned), comma-separated; `system: true` on agent/register is refused for any other id.',
  },
  offlinePruneMs: { env: 'OFFLINE_PRUNE_MS', schema: int(1000, 3_650 * 86_400_000), default: String(7 * 86_400_000), doc: 'Agents offline longer than this are pruned (system agents never).' },
  logLevel: { env: 'LOG_LEVEL', schema: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']), default: 'info', doc: 'pino log level.' },
  maxFrameBytes: { env: 'AGENT_RELAY_MAX_FRAME_BYTES', schema: int(1024, 64 * 1024 * 1024), default: String(1024 * 1024), doc: 'Largest WebSocket frame or HTTP body.' },
  maxBackpressureBytes: {
    env: 'AGENT_RELAY_MAX_BACKPRESSURE_BYTES',
    schema: int(64 * 1024, 1024 * 1024 * 1024),
    default: String(4 * 1024 * 1024),
    doc: 'Send buffer above which a slow consumer is disconnected (it resumes by cursor).',
  },
  maxAgents: {
    env: 'AGENT_RELAY_MAX_AGENTS',
    schema: int(1, 1_000_000),
    default: String(LIMITS.maxAgents),
    doc: 'Registered agents the relay holds; registering a new id past it is refused with -32005 (offline agents are pruned after OFFLINE_PRUNE_MS).',
  },
  rateLimitPerSec: { env: 'AGENT_RELAY_RATE_LIMIT', schema: int(1, 1_000_000), default: '2000', doc: 'Frames per second one connection may send (token bucket).' },
  rateBurst: { env: 'AGENT_RELAY_RATE_BURST', schema: int(1, 1_000_000), default: '4000', doc: 'Token bucket size: frames a connection may send at once.' },
  httpRateLimitPerSec: {
    env: 'AGENT_RELAY_HTTP_RATE_LIMIT',
    schema: int(1, 10_000_000),
    default: '5000',
    doc: 'HTTP requests per second from one client address (token bucket); over it: 429 with Retry-After.',
  },
  httpRateBurst: { env: 'AGENT_RELAY_HTTP_RATE_BURST', schema: int(1, 10_000_000), default: '10000', doc: 'HTTP token bucket size per client address.' },
  busyTimeoutMs: { env: 'AGENT_RELAY_BUSY_TIMEOUT_MS', schema: int(0, 60_000), default: '2000', doc: 'How long a write waits for a database lock held by another process before -32008.' },
  pruneIntervalMs: { env: 'AGENT_RELAY_PRUNE_INTERVAL_MS', schema: int(100, 86_400_000), default: '600000', doc: 'How often pruning runs.' },
  presenceIntervalMs: { env: 'AGENT_RELAY_PRESENCE_INTERVAL_MS', schema: int(50, 600_000), default: '5000', doc: 'How often stale agents are looked for.' },
  leaseSweepIntervalMs: {
    env: 'AGENT_RELAY_LEASE_SWEEP_INTERVAL_MS',
    schema: int(50, 600_000),
    default: '1000',
    doc: 'How often the end of leases whose TTL passed is recorded (an expired lease is free to others at once either way).',
  },
  idleTimeoutSec: { env: 'AGENT_RELAY_IDLE_TIMEOUT_S', schema: int(8, 960), default: '120', doc: 'A WebSocket silent this long (pings unanswered) is closed.' },
  listenWaitMs: {
    env: 'AGENT_RELAY_LISTEN_WAIT_MS',
    schema: int(0, 600_000),
    default: '65000',
    doc: 'How long start-up keeps retrying a port held only by TIME_WAIT connections of the previous run (no live listener).',
  },
  transport: {
    env: 'AGENT_RELAY_TRANSPORT',
    schema: z.enum(['auto', 'uws', 'node']),
    default: 'auto',
    doc: 'WebSocket/HTTP server: uws (native uWebSockets.js), node (node:http + ws, runs on any Node), or auto (uws when a native build loads, else node).',
  },
  insecure: { env: 'AGENT_RELAY_INSECURE', schema: bool, default: 'false', doc: 'Allow a non-loopback bind without a token (same as --insecure).' },
} as const;

type Vars = typeof CONFIG_VARS;
export type RelayConfig = Readonly<{ [K in keyof Vars]: z.output<Vars[K]['schema']> }>;

export class ConfigError extends Error {}

/** Parse the environment (plus overrides, e.g. from flags or tests) into a frozen config. */
export function loadConfig(env: NodeJS.ProcessEnv, overrides: Partial<RelayConfig> = {}): RelayConfig {
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(CONFIG_VARS)) {
    if (key in overrides && (overrides as Record<string, unknown>)[key] !== undefined) {
      out[key] = (overrides as Record<string, unknown>)[key];
      continue;
    }
    const raw = env[v.env] === '' ? undefined : env[v.env];
    const value = raw ?? v.default;
    if (value === undefined) continue;
    const parsed = (v.schema as z.ZodType).safeParse(value);
    if (!parsed.success) {
      const why = parsed.error.issues[0]?.message ?? 'invalid';
      const secret = v.env === 'AGENT_RELAY_TOKEN' || v.env === 'AGENT_RELAY_CALLBACK_SECRET';
      throw new ConfigError(`${v.env}=${secret ? '<redacted>' : JSON.stringify(value)} is invalid: ${why}`);
    }
    out[key] = parsed.data;
  }
  // One default location for the checkout, a global install and the CLI alike, wherever it runs.
  out.dbPath ??= join(out.home as string, 'relay.db');
  const config = Object.freeze(out) as RelayConfig;
  if (config.cluster === 'on' && !config.store) {
    throw new ConfigError('AGENT_RELAY_CLUSTER=on needs AGENT_RELAY_STORE=postgres://…: nodes share a PostgreSQL database (a SQLite file has one relay)');
  }
  if (!isLoopback(config.host) && !config.token && !config.insecure) {
    throw new ConfigError(`refusing to bind ${config.host} without AGENT_RELAY_TOKEN: set a token, bind 127.0.0.1, or pass --insecure on a trusted network`);
  }
  return config;
}

/** `~` and `~/x` name the user's home folder, as a shell would have expanded them. */
function expandHome(path: string): string {
  return path === '~' || path.startsWith('~/') ? join(homedir(), path.slice(1)) : path;
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** Where the relay keeps its state, for the log: the SQLite file, or the PostgreSQL URL without its password. */
export function describeStore(config: Pick<RelayConfig, 'store' | 'dbPath'>): string {
  if (!config.store) return config.dbPath;
  try {
    const url = new URL(config.store);
    if (url.password) url.password = '***';
    return url.toString();
  } catch {
    return 'postgres://(unparsable URL)';
  }
}
