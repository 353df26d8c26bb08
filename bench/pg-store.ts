// `tsx bench/pg-store.ts [--batch N] [--batches N]`: where a PostgreSQL store's durable send goes,
// below the relay. A throwaway PostgreSQL 15 (synchronous_commit=on, fsync on); PostgresStore.apply
// of --batches batches of --batch message/send ops by tag to 3 agents (the relay's group commit, one
// round trip each), on a fresh database per row:
// 1. sends/s as the schema is (the node computes the search vectors it can: search-vector.ts), with
//    the database computing every vector as before migration 0008, without the search column's or
//    the recipients' GIN index, or with no search vector stored (what each costs; two runs each);
// 2. self time per PL/pgSQL function over one such run (track_functions = all);
// 3. the search vector's expression taken apart, per message body, over 20,000 bodies.
import { parseArgs } from 'node:util';
import pg from 'pg';
import type { WriteOp } from '../broker/domain/store-port.js';
import { PostgresStore } from '../broker/store-postgres/store.js';
import { launchPostgres } from '../test/helpers/postgres.js';
import { sendOp, storedAgent } from '../test/helpers/records.js';
import { runMain } from './lib/proc.js';

const { values } = parseArgs({ options: { batch: { type: 'string', default: '200' }, batches: { type: 'string', default: '40' } } });
const BATCH = Number(values.batch);
const BATCHES = Number(values.batches);
const BODY = 'the quick brown fox jumps over the lazy dog; build 1234 failed on step compile, see log '.repeat(2);

// The trigger that fills `search` for a row that comes without a vector (0008_send_speed.sql),
// made to fire for every row: the database then computes (or, with `fill`, stores) every vector.
const everyRow = (fill: string) => [
  `CREATE OR REPLACE FUNCTION relay_fill_search() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.search := ${fill}; RETURN NEW; END $$`,
  'DROP TRIGGER messages_fill_search ON messages',
  'CREATE TRIGGER messages_fill_search BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION relay_fill_search()',
];

const VARIANTS: [string, string[]][] = [
  ['schema as is', []],
  ['database computes vectors', everyRow('relay_search_vector(NEW.subject, NEW.body)')],
  ['no GIN index on search', ['DROP INDEX messages_search']],
  ['no GIN index on recipients', ['DROP INDEX messages_recipients']],
  ['no search vector at all', ['DROP INDEX messages_search', ...everyRow('NULL')]],
];

async function sql<R extends pg.QueryResultRow>(url: string, statements: string[]): Promise<R[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    let rows: R[] = [];
    for (const s of statements) rows = (await c.query<R>(s)).rows;
    return rows;
  } finally {
    await c.end();
  }
}

/** A fresh database with 3 agents tagged x, altered by `ddl`; sends/s of the batches applied to it. */
async function sendsPerSecond(url: string, ddl: string[]): Promise<number> {
  const store = await PostgresStore.open({ url });
  try {
    for (const id of ['a', 'b', 'c']) {
      const { inboxFloor: _floor, ...agent } = storedAgent(id, { tags: ['x'] });
      await store.apply([{ op: 'agent.insert', at: 1, agent, maxAgents: 100, events: [] }]);
    }
    await sql(url, ddl);
    const started = performance.now();
    for (let b = 0; b < BATCHES; b++) {
      const ops: WriteOp[] = Array.from({ length: BATCH }, (_, i) => sendOp({ from: 'ext:bench', to: 'tag:x', body: `${BODY} ${b}-${i}` }, ['a', 'b', 'c']));
      await store.apply(ops);
    }
    return (BATCH * BATCHES) / ((performance.now() - started) / 1000);
  } finally {
    await store.close();
  }
}

runMain(async () => {
  const server = await launchPostgres();
  try {
    console.log(`1. PostgresStore.apply, ${BATCHES} batches of ${BATCH} sends by tag to 3 agents (sends/s, two runs)`);
    for (const [name, ddl] of VARIANTS) {
      const runs = [await sendsPerSecond(await server.freshDatabase(), ddl), await sendsPerSecond(await server.freshDatabase(), ddl)];
      console.log(`   ${name.padEnd(28)} ${runs.map((r) => Math.round(r).toLocaleString('en-US').padStart(7)).join(' ')}`);
    }

    const url = await server.freshDatabase();
    // Set for the database, so the store's own connections (opened after this) count their function calls.
    await sql(url, [`ALTER DATABASE "${new URL(url).pathname.slice(1)}" SET track_functions = 'all'`]);
    await sendsPerSecond(url, []);
    await new Promise((r) => setTimeout(r, 1_500)); // function statistics reach the shared view within a second
    const fns = await sql<{ funcname: string; calls: string; self: number; total: number }>(url, [
      'SELECT funcname, calls, self_time AS self, total_time AS total FROM pg_stat_user_functions ORDER BY self_time DESC LIMIT 8',
    ]);
    console.log(`\n2. PL/pgSQL self time over the same ${BATCHES} batches (ms per batch of ${BATCH})`);
    for (const f of fns)
      console.log(`   ${f.funcname.padEnd(20)} calls ${String(f.calls).padStart(6)}  self ${(f.self / BATCHES).toFixed(2).padStart(6)}  total ${(f.total / BATCHES).toFixed(2).padStart(6)}`);

    const parts: [string, string][] = [
      ['length(body) (baseline)', 'length(body)'],
      ['relay_words(body)', 'length(relay_words(body))'],
      ["to_tsvector('simple', body)", "length(to_tsvector('simple', body))"],
      ["the column's expression", "length(setweight(to_tsvector('simple', relay_words(body)), 'B'))"],
    ];
    const bodies = 20_000;
    console.log(`\n3. The search vector's expression (relay_search_vector), µs per body (${BODY.length + 5} characters, ${bodies.toLocaleString('en-US')} bodies)`);
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      await c.query('CREATE TEMP TABLE bodies AS SELECT $1 || g AS body FROM generate_series(1, $2::int) g', [BODY, bodies]);
      for (const [name, expr] of parts) {
        const started = performance.now();
        await c.query(`SELECT sum(${expr}) FROM bodies`);
        console.log(`   ${name.padEnd(30)} ${(((performance.now() - started) * 1000) / bodies).toFixed(1)}`);
      }
    } finally {
      await c.end();
    }
  } finally {
    await server.shutdown();
  }
});
