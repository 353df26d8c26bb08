import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** What `agent-relay register` keeps so later commands can act as that agent with `--as ID`. */
export interface StoredIdentity {
  id: string;
  token: string;
  url: string;
  /** Claim tokens of tasks this agent claimed, by task id. */
  claims?: Record<string, number>;
  /** Highest message id `inbox` has shown (the default `since` of the next call). */
  cursor?: number;
}

/** `$AGENT_RELAY_HOME` (default ~/.agent-relay); files are private to the user (0600). */
export function relayHome(env: NodeJS.ProcessEnv = process.env): string {
  return env.AGENT_RELAY_HOME || join(homedir(), '.agent-relay');
}

function fileFor(home: string, id: string): string {
  return join(home, 'agents', `${encodeURIComponent(id)}.json`);
}

export function loadIdentity(home: string, id: string): StoredIdentity | null {
  try {
    return JSON.parse(readFileSync(fileFor(home, id), 'utf8')) as StoredIdentity;
  } catch {
    return null;
  }
}

export function saveIdentity(home: string, identity: StoredIdentity): void {
  mkdirSync(join(home, 'agents'), { recursive: true, mode: 0o700 });
  const file = fileFor(home, identity.id);
  writeFileSync(file, JSON.stringify(identity, null, 2) + '\n', { mode: 0o600 });
  chmodSync(file, 0o600);
}
