import type { RankedId, SearchFilter, SearchReads, SearchTerm, StoredHit } from '../domain/store-port.js';
import type { Query } from './connection.js';
import { MESSAGE_COLUMNS, messageFromRow } from './rows.js';

/*
 * message/search on PostgreSQL full-text search: the `search` column of messages (subject words
 * weigh A, body words B) under a GIN index, queried with relay_search_query (0003_search.sql).
 * Ranking follows SQLite's bm25(subject ×2, body ×1) as far as ts_rank can: weights A 1.0 and B
 * 0.5, divided by 1 + log(length) so a word in a long body ranks below the same word in a short
 * one. The rank answered is the negated ts_rank (ascending, like bm25's), equal ranks newest first.
 */

const WEIGHTS = `'{0, 0, 0.5, 1.0}'`;
const NORMALIZATION = 1;

const HITS = `
  SELECT ${MESSAGE_COLUMNS.split(', ')
    .map((c) => `m.${c}`)
    .join(', ')}, s.snippet, s.source
  FROM messages m, relay_search_query($1::json) AS q, LATERAL relay_snippet(m.subject, m.body, q) AS s
  WHERE m.id = ANY ($2::bigint[]) AND m.search @@ q`;

export class PgSearch implements SearchReads {
  constructor(private readonly q: Query) {}

  async rank(f: SearchFilter): Promise<RankedId[]> {
    const params: unknown[] = [JSON.stringify(f.terms), f.inbox ? Math.max(f.since, f.inbox.floor) : f.since];
    const where = ['m.search @@ q', 'm.id > $2'];
    const add = (sql: (p: string) => string, value: unknown) => {
      params.push(value);
      where.push(sql(`$${params.length}`));
    };
    // The inbox floor bounds ids from below like `since`.
    if (f.inbox) add((p) => `m.recipients @> ARRAY[${p}::text]`, f.inbox.agentId);
    if (f.channel !== null) add((p) => `m.channel = ${p}`, f.channel);
    if (f.from !== null) add((p) => `m.from_id = ${p}`, f.from);
    if (f.to !== null) add((p) => `m.to_target = ${p}`, f.to);
    params.push(f.limit);
    const sql = `SELECT m.id, -ts_rank(${WEIGHTS}, m.search, q, ${NORMALIZATION}) AS rank
      FROM messages m, relay_search_query($1::json) AS q WHERE ${where.join(' AND ')}
      ORDER BY rank, m.id DESC LIMIT $${params.length}`;
    return (await this.q<{ id: number; rank: number }>(sql, params)).map((r) => ({ id: r.id, rank: r.rank }));
  }

  async hits(terms: readonly SearchTerm[], ids: readonly number[]): Promise<StoredHit[]> {
    const rows = await this.q<Record<string, unknown> & { snippet: string; source: string }>(HITS, [JSON.stringify(terms), ids]);
    const byId = new Map(rows.map((r) => [r.id as number, r]));
    const hits: StoredHit[] = [];
    for (const id of ids) {
      const r = byId.get(id);
      // Gone since it was ranked only if a prune took it: a hit less, not an error.
      if (r) hits.push({ message: messageFromRow(r), snippet: withEllipses(r.snippet, r.source) });
    }
    return hits;
  }
}

/** … where the snippet stops short of the text's start or end, as SQLite's snippet() marks it. */
function withEllipses(snippet: string, source: string): string {
  const plain = snippet.replaceAll('«', '').replaceAll('»', '').trim();
  const text = source.trim();
  return `${text.startsWith(plain) ? '' : '…'}${snippet}${text.endsWith(plain) ? '' : '…'}`;
}
