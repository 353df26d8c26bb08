import type { Query } from './connection.js';

/*
 * A message's search vector, computed by the node that plans the send instead of by PostgreSQL
 * inside the batch (a quarter of the database's time per send: bench/RESULTS.md, issue 18). It
 * must equal what the database would store (relay_search_vector, 0008_send_speed.sql):
 *   setweight(to_tsvector('simple', relay_words(subject)), 'A')
 *     || setweight(to_tsvector('simple', relay_words(body)), 'B')
 * so it is computed only where that is plain: all-ASCII text (letters and digits mean the same
 * under every locale), at most MAX_POSITIONS words, none of MAX_WORD characters or more, no word
 * more than MAX_REPEATS times, none the parser would split (SCIENTIFIC). Anything else is left to
 * the database (null). The store checks on open that the database agrees (databaseAgrees), and
 * sends no vectors if it does not.
 */

/** to_tsvector's limits (PostgreSQL's MAXENTRYPOS, MAXSTRLEN, MAXNUMPOS): past them it caps or drops. */
const MAX_POSITIONS = 16_383;
const MAX_WORD = 2_047;
const MAX_REPEATS = 255;

const NON_ASCII = /\P{ASCII}/u;
// The parser reads digits, an e and a digit as a number in scientific notation and ends the token
// there (`1e5x` is `1e5` and `x`); such words are left to the database.
const SCIENTIFIC = /^[0-9]+[eE][0-9]/;
const NOT_ALNUM = /[^A-Za-z0-9]+/;

/** The words of `text` as relay_words and the 'simple' parser split them (ASCII only). */
function words(text: string): string[] {
  return text.split(NOT_ALNUM).filter((w) => w.length > 0);
}

/** The tsvector literal of a message's subject (weight A) and body (weight B), or null: the database computes it. */
export function searchVector(subject: string | null, body: string): string | null {
  const s = subject ?? '';
  // Not text (an op the database is left to refuse): nothing to compute.
  if (typeof s !== 'string' || typeof body !== 'string') return null;
  if (NON_ASCII.test(s) || NON_ASCII.test(body)) return null;
  const all = [...words(s).map((w) => [w, 'A'] as const), ...words(body).map((w) => [w, 'B'] as const)];
  if (all.length > MAX_POSITIONS) return null;
  const positions = new Map<string, string[]>();
  for (let i = 0; i < all.length; i++) {
    const [word, weight] = all[i]!;
    if (word.length >= MAX_WORD || SCIENTIFIC.test(word)) return null;
    const lexeme = word.toLowerCase();
    let list = positions.get(lexeme);
    if (!list) positions.set(lexeme, (list = []));
    if (list.length === MAX_REPEATS) return null;
    list.push(`${i + 1}${weight}`);
  }
  // Lexemes are letters and digits only: quoted, they need no escape. The database sorts them.
  let out = '';
  for (const [lexeme, list] of positions) out += `${out ? ' ' : ''}'${lexeme}':${list.join(',')}`;
  return out;
}

/**
 * Whether this database computes the vectors searchVector does (the store asks once, on open): a
 * text of every ASCII character, cases, digits and mixed runs, and the limits' edges. A database
 * that differs (a locale whose lower case of I is not i, a changed 'simple' configuration) gets
 * no vector from the node and computes every one itself.
 */
export async function databaseAgrees(query: Query): Promise<boolean> {
  let ascii = '';
  for (let c = 1; c < 128; c++) ascii += String.fromCharCode(c);
  const probes: [string | null, string][] = [
    [`Deploy ${ascii} IIi 1e 0x1F a1e5`, `${ascii} ${ascii.toLowerCase()} build42 42build 007 1.5 a-b a_b x@y.z http://h/p deploy`],
    [null, `${'w '.repeat(MAX_REPEATS)}${'a'.repeat(MAX_WORD - 1)} end`],
    ['', `${Array.from({ length: MAX_POSITIONS }, (_, i) => `w${i % 1000}`).join(' ')}`],
  ];
  const vectors = probes.map(([subject, body]) => {
    const vector = searchVector(subject, body);
    if (vector === null) throw new Error('searchVector refused its own probe');
    return vector;
  });
  // One round trip at start-up for all the probes.
  const [row] = await query<{ same: boolean }>(
    'SELECT bool_and(relay_search_vector(p.subject, p.body) = p.vector::tsvector) AS same FROM unnest($1::text[], $2::text[], $3::text[]) AS p(subject, body, vector)',
    [probes.map((p) => p[0]), probes.map((p) => p[1]), vectors],
  );
  return row?.same === true;
}
