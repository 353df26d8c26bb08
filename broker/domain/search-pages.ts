import { randomBytes } from 'node:crypto';
import { LIMITS, RelayError } from '../../protocol/index.js';
import type { SearchTerm } from './store-port.js';

interface Kept {
  /** Whose search it is (an agent id, or null for the global feed): no one else pages it. */
  scope: string | null;
  /** The first page's terms: later pages' snippets mark the words that were ranked. */
  terms: readonly SearchTerm[];
  ids: readonly number[];
  until: number;
}

/**
 * The ranking of each paged search, made once at its first page. bm25 scores depend on the whole
 * index, so ranking again for each page would move hits across page edges whenever a message
 * arrives or is pruned (repeating some, skipping others); pages cut from one kept ranking never
 * do. Bounded in count and age: an expired cursor is -32007, the client searches again.
 */
export class SearchPages {
  private readonly kept = new Map<string, Kept>();

  constructor(private readonly now: () => number) {}

  /** Keep a ranking whose first page was served; returns the cursor of its second. */
  keep(scope: string | null, terms: readonly SearchTerm[], ids: readonly number[], served: number): string {
    this.expire();
    // Oldest first: Map keeps insertion order.
    while (this.kept.size >= LIMITS.maxSearchesKept) this.kept.delete(this.kept.keys().next().value!);
    const key = randomBytes(12).toString('base64url');
    this.kept.set(key, { scope, terms, ids, until: this.now() + LIMITS.searchKeptMs });
    return cursor(key, served);
  }

  /** The page at cursor `after`: its ids, the search's terms, and where it starts. */
  page(scope: string | null, after: string, limit: number): { terms: readonly SearchTerm[]; ids: readonly number[]; offset: number; key: string } {
    const m = /^([A-Za-z0-9_-]{16}):(\d+)$/.exec(after);
    if (!m) throw new RelayError('invalidParams', 'after: not a nextCursor of message/search');
    this.expire();
    const kept = this.kept.get(m[1]!);
    // Another caller's cursor gets the answer an expired one does: no hint that it exists.
    if (!kept || kept.scope !== scope) {
      throw new RelayError('cursorExpired', `after: this search's pages are no longer kept (${LIMITS.searchKeptMs / 60_000} minutes, ${LIMITS.maxSearchesKept} searches); search again`);
    }
    const offset = Number(m[2]);
    return { terms: kept.terms, ids: kept.ids.slice(offset, offset + limit), offset, key: m[1]! };
  }

  /** The cursor past `served` hits of a kept ranking, or null when none is left. */
  next(key: string, served: number): string | null {
    const kept = this.kept.get(key);
    return kept && served < kept.ids.length ? cursor(key, served) : null;
  }

  private expire(): void {
    const now = this.now();
    for (const [key, k] of this.kept) if (k.until <= now) this.kept.delete(key);
  }
}

const cursor = (key: string, offset: number) => `${key}:${offset}`;
