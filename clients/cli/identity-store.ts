import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { writeJsonAtomic } from '../atomic-json.js';
import { relayHttpUrl } from '../relay-url.js';

/** What `agent-relay register` keeps so later commands can act as that agent with `--as ID`, on one relay. */
export interface StoredIdentity {
  id: string;
  token: string;
  /** The relay (its HTTP base, as RelayHttpClient.url) that issued the token. */
  url: string;
  /** Claim tokens of tasks this agent claimed, by task id. */
  claims?: Record<string, number>;
  /** Newest fencing tokens of leases this agent acquired or renewed, by lease id. */
  leases?: Record<string, number>;
  /** Highest message id `inbox` has shown (the default `since` of the next call). */
  cursor?: number;
}

type RelayEntry = Omit<StoredIdentity, 'id' | 'url'>;

/**
 * agents/ID.json: one entry per relay URL, since the same id registered on two relays gets a token
 * from each (and message ids and claims are per relay too).
 */
interface IdentityFile {
  id: string;
  relays: Record<string, RelayEntry>;
}

/** `$AGENT_RELAY_HOME` (default ~/.agent-relay); files are private to the user (0600). */
export function relayHome(env: NodeJS.ProcessEnv = process.env): string {
  return env.AGENT_RELAY_HOME || join(homedir(), '.agent-relay');
}

export function identityFile(home: string, id: string): string {
  return join(home, 'agents', `${encodeURIComponent(id)}.json`);
}

/** The file as it is, the single-token format of earlier versions read as its one relay entry. */
function readFile(home: string, id: string): IdentityFile {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(identityFile(home, id), 'utf8'));
  } catch {
    return { id, relays: {} };
  }
  const v = raw as Partial<IdentityFile> & Partial<StoredIdentity>;
  if (v.relays && typeof v.relays === 'object') return { id, relays: v.relays };
  if (typeof v.token === 'string' && typeof v.url === 'string') {
    const { token, claims, cursor } = v;
    return { id, relays: { [sameRelayUrl(v.url)]: { token, ...(claims ? { claims } : {}), ...(cursor !== undefined ? { cursor } : {}) } } };
  }
  return { id, relays: {} };
}

/** Earlier versions stored the URL as given; keys are the normalized form loadIdentity is asked with. */
function sameRelayUrl(url: string): string {
  try {
    return relayHttpUrl(url);
  } catch {
    return url;
  }
}

/** The identity `id` holds on the relay at `url`, or null when it was never registered there. */
export function loadIdentity(home: string, id: string, url: string): StoredIdentity | null {
  const entry = readFile(home, id).relays[url];
  return entry ? { ...entry, id, url } : null;
}

/** The relays `id` has a token for (to say where it is registered when it is not on this one). */
export function storedRelays(home: string, id: string): string[] {
  return Object.keys(readFile(home, id).relays);
}

/**
 * Store `identity` as the entry for its relay, keeping the other relays' entries. The file is
 * replaced whole: another command reading it (a running monitor writes its cursor) never sees it torn.
 */
export function saveIdentity(home: string, identity: StoredIdentity): void {
  const { id, url, ...entry } = identity;
  const file = readFile(home, id);
  file.relays[url] = entry;
  writeJsonAtomic(identityFile(home, id), file, { mode: 0o600, indent: 2 });
}
