import { LIMITS, RelayError } from '../../protocol/index.js';
import type { SearchTerm } from './store-port.js';

// Words are runs of letters and digits (as the index splits text); a term without one finds nothing.
const WORD = /[\p{L}\p{N}]/u;

/**
 * The query rule (PROTOCOL.md "Search"): text in double quotes is one phrase, anything else splits
 * on whitespace into words, a trailing `*` makes a word (or a phrase's last word) a prefix, and
 * every term must match. Nothing else is syntax: `OR`, `NEAR`, `-`, `:` and parentheses are words
 * or separators, so no user text can be an FTS5 syntax error.
 */
export function parseSearchQuery(query: string): SearchTerm[] {
  const terms: SearchTerm[] = [];
  // A quote left open runs to the end of the query.
  for (const m of query.matchAll(/"([^"]*)"?(\**)|([^\s"]+)/g)) {
    const raw = m[1] ?? m[3]!;
    const prefix = (m[2] ?? '').length > 0 || raw.endsWith('*');
    const text = raw.replace(/\*+$/, '').trim();
    if (WORD.test(text)) terms.push({ text, prefix });
  }
  if (terms.length === 0) throw new RelayError('invalidParams', 'query: no word to search for (words are letters and digits)');
  if (terms.length > LIMITS.maxSearchTerms) throw new RelayError('invalidParams', `query: ${terms.length} terms; at most ${LIMITS.maxSearchTerms}`);
  return terms;
}
