import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { basename, join } from 'node:path';
import { derivedAgentId } from '../../protocol/agent-id.js';
import { relayHome } from '../../clients/cli/identity-store.js';

export type ThreadMode = 'start' | 'resume' | 'auto';

/** `start` unless the value names another mode: hooks launch the adapter unattended, so it never refuses. */
export function parseThreadMode(raw: string | undefined): ThreadMode {
  const v = (raw ?? '').trim().toLowerCase();
  return v === 'resume' || v === 'auto' ? v : 'start';
}

export interface CodexAdapterConfig {
  appServerUrl: string;
  cwd: string;
  rig: string;
  statePath: string;
  pollIntervalMs: number;
  heartbeatIntervalMs: number;
  coalesceWindowMs: number;
  reconnectInitialMs: number;
  reconnectMaxMs: number;
  threadMode: ThreadMode;
  threadId: string | undefined;
  model: string | undefined;
  approvalPolicy: 'untrusted' | 'on-failure' | 'on-request' | 'never' | undefined;
  sandbox: 'read-only' | 'workspace-write' | 'danger-full-access' | undefined;
  relayUrl: string;
  relayToken: string | undefined;
  capabilities: string[];
  /** Relay agent id; derived from host, rig and cwd when unset. */
  agentId: string | undefined;
  /** Steer a running turn with new messages instead of waiting for it to end. */
  steer: boolean;
  /** Who answers approvals when the turn has no relay sender (default: the sender of the turn's first message). */
  approvalTarget: string | undefined;
  /** No answer within this long refuses: decline, or cancel when the request offers no decline. */
  approvalTimeoutMs: number;
  /** How often thread/read reconciles the busy flag. */
  reconcileIntervalMs: number;
  /** Where the Codex SessionStart hook leaves thread ids (`resume` mode reads it). */
  handoffDir: string;
}

type Warn = (message: string) => void;

/** The handoff file for a cwd; the hook script computes the same name (non [A-Za-z0-9._-] → _). */
export function handoffFile(dir: string, cwd: string): string {
  return join(dir, `${cwd.replace(/[^A-Za-z0-9._-]/g, '_')}.json`);
}

/**
 * Read the adapter's configuration. A malformed value logs a warning naming the variable and
 * falls back to the default; nothing here throws.
 */
export function loadConfig(env: NodeJS.ProcessEnv, warn: Warn = () => undefined): CodexAdapterConfig {
  const int = (name: string, fallback: number, min = 1): number => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min) {
      warn(`${name}=${raw} is not a whole number ≥ ${min}; using ${fallback}`);
      return fallback;
    }
    return n;
  };
  const oneOf = <T extends string>(name: string, allowed: readonly T[]): T | undefined => {
    const raw = env[name];
    if (raw === undefined || raw === '') return undefined;
    if ((allowed as readonly string[]).includes(raw)) return raw as T;
    warn(`${name}=${raw} is not one of ${allowed.join(', ')}; using Codex's default`);
    return undefined;
  };
  const url = (name: string, fallback: string, protocols: string[]): string => {
    const raw = env[name];
    if (!raw) return fallback;
    try {
      if (protocols.includes(new URL(raw).protocol)) return raw;
    } catch {
      // fall through
    }
    warn(`${name}=${raw} is not a ${protocols.join(' or ')} URL; using ${fallback}`);
    return fallback;
  };
  const bool = (name: string): boolean => {
    const raw = (env[name] ?? '').toLowerCase();
    if (raw === '' || raw === 'false' || raw === '0' || raw === 'no') return false;
    if (raw === 'true' || raw === '1' || raw === 'yes') return true;
    warn(`${name}=${env[name]} is not true or false; using false`);
    return false;
  };
  const mode = env.CODEX_THREAD_MODE;
  const threadMode = parseThreadMode(mode);
  if (mode && threadMode === 'start' && mode.trim().toLowerCase() !== 'start') warn(`CODEX_THREAD_MODE=${mode} is not start, resume or auto; using start`);
  const cwd = env.CODEX_LIVE_CWD || process.cwd();
  const home = relayHome(env);
  const initial = int('CODEX_LIVE_RECONNECT_INITIAL_MS', 1000);
  let max = int('CODEX_LIVE_RECONNECT_MAX_MS', 10_000);
  if (max < initial) {
    warn(`CODEX_LIVE_RECONNECT_MAX_MS=${max} is below CODEX_LIVE_RECONNECT_INITIAL_MS=${initial}; using ${initial}`);
    max = initial;
  }
  return {
    appServerUrl: url('CODEX_APP_SERVER_URL', 'ws://127.0.0.1:4501', ['ws:', 'wss:']),
    cwd,
    rig: env.CODEX_LIVE_RIG || hostname(),
    statePath: env.CODEX_LIVE_STATE_PATH || join(home, 'codex', `state-${createHash('sha256').update(cwd).digest('hex').slice(0, 16)}.json`),
    pollIntervalMs: int('CODEX_LIVE_POLL_INTERVAL_MS', 2000),
    heartbeatIntervalMs: int('CODEX_LIVE_HEARTBEAT_INTERVAL_MS', 30_000),
    coalesceWindowMs: int('CODEX_LIVE_COALESCE_WINDOW_MS', 600, 0),
    reconnectInitialMs: initial,
    reconnectMaxMs: max,
    threadMode,
    threadId: env.CODEX_THREAD_ID || undefined,
    model: env.CODEX_MODEL || undefined,
    approvalPolicy: oneOf('CODEX_LIVE_APPROVAL_POLICY', ['untrusted', 'on-failure', 'on-request', 'never'] as const),
    sandbox: oneOf('CODEX_LIVE_SANDBOX', ['read-only', 'workspace-write', 'danger-full-access'] as const),
    relayUrl: url('AGENT_RELAY_URL', 'http://127.0.0.1:4850', ['http:', 'https:', 'ws:', 'wss:']),
    relayToken: env.AGENT_RELAY_TOKEN || undefined,
    capabilities: (env.AGENT_RELAY_CAPS ?? 'chat')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
    agentId: env.CODEX_LIVE_AGENT_ID || undefined,
    steer: bool('CODEX_LIVE_STEER'),
    approvalTarget: env.CODEX_LIVE_APPROVAL_TARGET || undefined,
    approvalTimeoutMs: int('CODEX_LIVE_APPROVAL_TIMEOUT_MS', 10 * 60_000),
    reconcileIntervalMs: int('CODEX_LIVE_RECONCILE_INTERVAL_MS', 15_000),
    handoffDir: join(home, 'codex', 'threads'),
  };
}

/** The relay agent id: stable for a host, rig and working directory. */
export function codexAgentId(config: CodexAdapterConfig): string {
  return config.agentId || derivedAgentId(['codex', config.rig, basename(config.cwd)]);
}
