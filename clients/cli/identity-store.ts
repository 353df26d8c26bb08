import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { writeJsonAtomic } from '../atomic-json.js';

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

/** Replaced whole: another command reading the file (a running monitor writes its cursor) never sees it torn. */
export function saveIdentity(home: string, identity: StoredIdentity): void {
  writeJsonAtomic(fileFor(home, identity.id), identity, { mode: 0o600, indent: 2 });
}
