import { RelayError } from '../../protocol/index.js';
import type { RankedId, SearchFilter, SearchTerm, StoredHit } from '../domain/store-port.js';
import type { Db } from './db.js';
import { recipientNeedle } from './deliveries.js';
import { messageFromRow, type MessageRow } from './message-row.js';

// A subject match counts twice a body match.
const RANK = `bm25(messages_fts, 2.0, 1.0)`;
// Snippets are made for the page only, not for every match ranked. The rowid is bounded as a range:
// better-sqlite3 binds a JS number as REAL, and beside MATCH FTS5 (SQLite 3.53) ignores `rowid = ?`
// given a REAL (every match comes back); range bounds take it.
const SNIPPET = `
  SELECT snippet(messages_fts, -1, '«', '»', '…', 16) AS snippet FROM messages_fts
  WHERE messages_fts MATCH @match AND messages_fts.rowid >= @id AND messages_fts.rowid <= @id`;
const ROW = `SELECT * FROM messages WHERE id = ?`;

type Shape = Pick<SearchFilter, 'channel' | 'from' | 'to' | 'inbox'>;

/** The ranking query for the filters given; the join to `messages` only when a filter reads it. */
function rankingSql(f: Shape): string {
  const where = ['messages_fts MATCH @match', 'messages_fts.rowid > @since'];
  if (f.inbox) where.push('instr(m.recipients, @needle) > 0');
  if (f.channel !== null) where.push('m.channel = @channel');
  if (f.from !== null) where.push('m.from_id = @from');
  if (f.to !== null) where.push('m.to_target = @to');
  const join = f.inbox || f.channel !== null || f.from !== null || f.to !== null ? 'JOIN messages m ON m.id = messages_fts.rowid' : '';
  return `SELECT messages_fts.rowid AS id, ${RANK} AS rank FROM messages_fts ${join}
    WHERE ${where.join(' AND ')} ORDER BY rank, id DESC LIMIT @limit`;
}

/** FTS5 text for the terms: each a quoted string (so no word is FTS5 syntax), all of them required. */
export function matchExpression(terms: readonly SearchTerm[]): string {
  return terms.map((t) => `"${t.text.replaceAll('"', '""')}"${t.prefix ? '*' : ''}`).join(' ');
}

/** message/search on the FTS5 index of subjects and bodies (migration 0005). */
export class MessageSearch {
  // Prepared on first use: this table also lives on the writer's connection, which never searches.
  private readonly ranking = new Map<string, ReturnType<Db['prepare']>>();
  private stmts: { snippet: ReturnType<Db['prepare']>; row: ReturnType<Db['prepare']> } | null = null;

  constructor(private readonly db: Db) {}

  rank(f: SearchFilter): RankedId[] {
    const sql = rankingSql(f);
    let ranking = this.ranking.get(sql);
    if (!ranking) this.ranking.set(sql, (ranking = this.db.prepare(sql)));
    // The inbox floor bounds ids from below like `since`.
    const params: Record<string, unknown> = { match: matchExpression(f.terms), since: f.inbox ? Math.max(f.since, f.inbox.floor) : f.since, limit: f.limit };
    if (f.inbox) params.needle = recipientNeedle(f.inbox.agentId);
    if (f.channel !== null) params.channel = f.channel;
    if (f.from !== null) params.from = f.from;
    if (f.to !== null) params.to = f.to;
    return guard(() => ranking.all(params) as RankedId[]);
  }

  hits(terms: readonly SearchTerm[], ids: readonly number[]): StoredHit[] {
    this.stmts ??= { snippet: this.db.prepare(SNIPPET), row: this.db.prepare(ROW) };
    const { snippet, row } = this.stmts;
    const match = matchExpression(terms);
    const hits: StoredHit[] = [];
    for (const id of ids) {
      const r = row.get(id) as MessageRow | undefined;
      const s = r && (guard(() => snippet.get({ match, id })) as { snippet: string } | undefined);
      // Gone since it was ranked only if a prune took it: a hit less, not an error.
      if (r && s) hits.push({ message: messageFromRow(r), snippet: s.snippet });
    }
    return hits;
  }
}

/** The terms are quoted, so FTS5 should never refuse them; if it does, the caller hears why. */
function guard<T>(run: () => T): T {
  try {
    return run();
  } catch (err) {
    if (err instanceof Error && /fts5|MATCH/i.test(err.message)) throw new RelayError('invalidParams', `query: ${err.message}`);
    throw err;
  }
}
