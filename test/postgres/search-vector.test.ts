import pg from 'pg';
import t from 'tap';
import type { WriteOp } from '../../broker/domain/store-port.js';
import { searchVector } from '../../broker/store-postgres/search-vector.js';
import { PostgresStore } from '../../broker/store-postgres/store.js';
import { startPostgres } from '../helpers/postgres.js';
import { seeded } from '../helpers/random.js';
import { sendOp } from '../helpers/records.js';

/*
 * The search vector a node computes for a send (search-vector.ts) is the one the database would
 * compute (relay_search_vector, 0008_send_speed.sql), character for character; where the node
 * cannot be sure it gives none and the database's trigger fills the column. Checked against the
 * real PostgreSQL on random text and on the limits' edges, and on rows written through the store.
 */

const server = await startPostgres(t);
const url = await server.freshDatabase();
// Migrated by opening a store once.
await (await PostgresStore.open({ url })).close();

const client = new pg.Client({ connectionString: url });
await client.connect();
t.teardown(() => client.end());

/** The database's vector of (subject, body), as text. */
async function databaseVector(subject: string | null, body: string): Promise<string> {
  return (await client.query<{ v: string }>('SELECT relay_search_vector($1, $2)::text AS v', [subject, body])).rows[0]!.v;
}

/** The node's vector as the database stores it (its input sorts lexemes and positions). */
async function nodeVector(vector: string): Promise<string> {
  return (await client.query<{ v: string }>('SELECT $1::tsvector::text AS v', [vector])).rows[0]!.v;
}

const ROUNDS = Number(process.env.VECTOR_ROUNDS ?? 1_000);

t.test('random ASCII text: the node computes what the database computes', async (tt) => {
  const rand = seeded(18);
  // Letters of both cases, digits, punctuation, whitespace and control characters, in runs.
  const pieces = ['a', 'B', 'z', 'Q', 'e', 'E', 'x', '0', '1', '5', '9', ' ', '  ', '-', '_', '.', ',', '@', '/', ':', "'", '"', '\\', '\n', '\t', '\x01', '\x7f', '+', '#', 'I', 'i'];
  const text = (max: number) => Array.from({ length: rand(max) }, () => pieces[rand(pieces.length)]!.repeat(1 + rand(4))).join('');
  let compared = 0;
  for (let i = 0; i < ROUNDS; i++) {
    const subject = rand(4) === 0 ? null : text(12);
    const body = text(80);
    const vector = searchVector(subject, body);
    if (vector === null) continue;
    const [ours, theirs] = [await nodeVector(vector), await databaseVector(subject, body)];
    if (ours !== theirs) {
      tt.equal(ours, theirs, `vector of ${JSON.stringify({ subject, body })}`);
      return;
    }
    compared++;
  }
  tt.ok(compared > ROUNDS * 0.8, `${compared} of ${ROUNDS} random texts computed by the node, all matched`);
});

t.test('at the limits: exact up to them, left to the database past them', async (tt) => {
  const exact: [string, string | null, string][] = [
    ['a word of 2,046 characters is kept', null, `${'a'.repeat(2_046)} b`],
    ['a word repeated 255 times', 'w', 'w '.repeat(254)],
    ['16,383 words', '', Array.from({ length: 16_383 }, (_, i) => `w${i % 700}`).join(' ')],
    ['no words at all', '!!', '... --- ...'],
    ['digits and letters: one word', null, '123abc 0x1F a1e5 1e x1e5 e5'],
    ['subject words before body words, one word in both', 'Deploy FAILED', 'deploy failed again: deploy'],
  ];
  for (const [what, subject, body] of exact) {
    const vector = searchVector(subject, body);
    tt.not(vector, null, `${what}: computed by the node`);
    tt.equal(await nodeVector(vector!), await databaseVector(subject, body), `${what}: the database's vector`);
  }
  const past: [string, string | null, string][] = [
    ['a word of 2,047 characters (to_tsvector drops it)', null, `${'a'.repeat(2_047)} b`],
    ['a word 256 times (to_tsvector keeps 255 positions)', 'w', 'w '.repeat(255)],
    ['16,384 words (positions stop at 16,383)', null, 'w '.repeat(16_384)],
    ['a letter outside ASCII (what is a letter, and its lower case, is the locale’s)', null, 'café Straße'],
    ['non-ASCII in the subject only', 'Ünïcode', 'plain body'],
    ['digits, e, a digit (the parser ends a number there)', null, 'value 1e5x'],
  ];
  for (const [what, subject, body] of past) tt.equal(searchVector(subject, body), null, `${what}: left to the database`);
});

t.test('rows written through the store hold the database’s vector, whoever computed it', async (tt) => {
  const store = await PostgresStore.open({ url });
  tt.teardown(() => store.close());
  const bodies = ['build 1234 failed on step compile', 'café au lait, naïve Straße', `${'x'.repeat(3_000)} long`, 'Reply-To: ops@example.test'];
  const ops: WriteOp[] = bodies.map((body, i) => sendOp({ from: 'ext:test', to: 'bob', subject: i % 2 ? `Subject ${i} ÉTÉ` : `Subject ${i}`, body }));
  const outcomes = await store.apply(ops);
  tt.ok(
    outcomes.every((o) => o.ok),
    'all sent',
  );
  const rows = (
    await client.query<{ id: number; same: boolean; filled: boolean }>('SELECT id, search = relay_search_vector(subject, body) AS same, search IS NOT NULL AS filled FROM messages ORDER BY id')
  ).rows;
  tt.equal(rows.length, bodies.length);
  tt.ok(
    rows.every((r) => r.filled && r.same),
    'every row has a vector, equal to the database’s own',
  );
  const find = async (text: string) => (await store.search.rank({ terms: [{ text, prefix: false }], since: 0, channel: null, from: null, to: null, inbox: null, limit: 10 })).map((r) => r.id);
  const ids = outcomes.map((o) => (o.ok ? (o.value as { message: { id: number } }).message.id : 0));
  tt.same(await find('compile'), [ids[0]], 'found by a word of a vector the node computed');
  tt.same(await find('Straße'), [ids[1]], 'found by a word of a vector the trigger computed');
  tt.same(await find('subject 3 été'), [ids[3]], 'a subject phrase of a vector the trigger computed');
});
