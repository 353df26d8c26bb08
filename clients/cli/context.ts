import { InvalidArgumentError } from 'commander';
import { createColors } from 'picocolors';
import { RelayHttpClient, type HttpIdentity } from '../http-client.js';
import { loadIdentity, relayHome, saveIdentity, storedRelays, type StoredIdentity } from './identity-store.js';

/** Exit codes scripts can branch on. */
export const EXIT = {
  ok: 0,
  /** The relay answered and refused (not found, conflict, unauthorized, ...). */
  refused: 1,
  /** The command line was wrong. */
  usage: 2,
  /** The relay could not be reached. */
  unreachable: 3,
} as const;

/** A mistake on the command line: exit 2 with this message. */
export class UsageError extends Error {}

/** The relay refused, explained by the command: exit 1 with this message and `code` (as `--json` errors show it). */
export class RefusedError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

export interface GlobalOptions {
  url: string;
  token?: string;
  json?: boolean;
  as?: string;
}

export interface Io {
  out: (text: string) => void;
  /** Write a line and say whether it got out: false once the reader is gone (EPIPE). Defaults to `out`. */
  outChecked?: (text: string) => Promise<boolean>;
  /**
   * True once stdout's reader is known to be gone, found without writing anything: a zero-byte write
   * fails (EPIPE) on a socket whose other end closed. On a pipe it never does, so false says nothing.
   */
  outClosed?: () => boolean;
  err: (text: string) => void;
  isTTY: boolean;
  env: NodeJS.ProcessEnv;
}

/** What every command gets: resolved options, the HTTP client, identity lookup and output. */
export class CliContext {
  readonly http: RelayHttpClient;
  readonly home: string;
  readonly color;

  constructor(
    readonly opts: GlobalOptions,
    readonly io: Io,
  ) {
    this.http = new RelayHttpClient({ url: opts.url, token: opts.token });
    this.home = relayHome(io.env);
    this.color = createColors(io.isTTY && !io.env.NO_COLOR);
  }

  get json(): boolean {
    return Boolean(this.opts.json);
  }

  /** Set by a command that answered but reports a failure (status on an unwritable relay): its exit code. */
  exitCode: number = EXIT.ok;

  /** The stored identity this command acts as, once `identity()` found it (failures name it). */
  actingAs: StoredIdentity | null = null;

  /** The identity named by `--as` / AGENT_RELAY_AGENT, from the store `register` writes, for this relay. */
  identity(): StoredIdentity & HttpIdentity {
    const id = this.opts.as;
    if (!id) throw new UsageError('this command acts as an agent: pass --as ID (or set AGENT_RELAY_AGENT) after `agent-relay register --id ID`');
    const stored = loadIdentity(this.home, id, this.http.url);
    if (!stored) {
      const elsewhere = storedRelays(this.home, id);
      const where = elsewhere.length ? ` (it has one for ${elsewhere.join(', ')}: pass --url to use that relay)` : '';
      throw new UsageError(`no stored token for agent ${id} in ${this.home} for ${this.http.url}${where}: run \`agent-relay register --id ${id}\` first`);
    }
    this.actingAs = stored;
    return { ...stored, agentId: stored.id, agentToken: stored.token };
  }

  /** The identity when one is given, else null (observer calls). */
  optionalIdentity(): (StoredIdentity & HttpIdentity) | null {
    return this.opts.as ? this.identity() : null;
  }

  /**
   * Store `identity`, merged with the file as it is now: another command may have written it since
   * this one read it (a running monitor records its cursor as messages arrive, `claim` adds a claim
   * token, `lease acquire` a lease token), and neither may drop what the other wrote.
   */
  remember(identity: StoredIdentity): void {
    const { id, token, url } = identity;
    const current = loadIdentity(this.home, id, url);
    const claims = { ...current?.claims, ...identity.claims };
    const leases = { ...current?.leases, ...identity.leases };
    const cursors = [current?.cursor, identity.cursor].filter((c): c is number => c !== undefined);
    saveIdentity(this.home, {
      id,
      token,
      url,
      ...(Object.keys(claims).length ? { claims } : {}),
      ...(Object.keys(leases).length ? { leases } : {}),
      ...(cursors.length ? { cursor: Math.max(...cursors) } : {}),
    });
  }

  /** Print a result: JSON for scripts, or the human rendering. */
  print(result: unknown, human: () => string): void {
    if (this.json) this.io.out(JSON.stringify(result));
    else {
      const text = human();
      if (text) this.io.out(text);
    }
  }
}

/** `a,b , c` → ['a', 'b', 'c'] for list options. */
export function list(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/** A whole-number option or argument; commander reports a bad one as a usage error naming it. */
export function wholeNumber(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`expected a whole number, got "${value}"`);
  return n;
}
