import type pg from 'pg';
import { MigrateRefused } from './migrate-refused.js';

/**
 * The relay's tables as both schemas have them (broker/store/migrations through 0008,
 * migrations/0001_schema.sql and 0005_cluster.sql), copied in this order with their ids. Never copied: relay_head (set
 * from the source's counters), relay_batches (lost-reply records of one PostgreSQL node), relay_migrations.
 */
export interface CopiedTable {
  name: string;
  /** The primary key, so rows are read in the file's own order. */
  order: string;
  /** The id is an identity column in PostgreSQL: kept with OVERRIDING SYSTEM VALUE, its sequence then moved past it. */
  identity?: 'delivery_spans' | 'outbox';
}

export const COPIED_TABLES: readonly CopiedTable[] = [
  { name: 'agents', order: 'id' },
  { name: 'messages', order: 'id' },
  { name: 'delivery_marks', order: 'agent_id, message_id' },
  { name: 'delivery_spans', order: 'id', identity: 'delivery_spans' },
  { name: 'tasks', order: 'id' },
  { name: 'events', order: 'id' },
  { name: 'outbox', order: 'id', identity: 'outbox' },
  { name: 'webhook_receipts', order: 'integration, delivery_id' },
  { name: 'leases', order: 'id' },
  // Epochs keep rising after the move; the nodes named are the old relay's, gone.
  { name: 'agent_sessions', order: 'agent_id' },
];

/**
 * How a SQLite value becomes a PostgreSQL one, by the target column's type. The schemas differ only
 * in these: SQLite's 0/1 flags are booleans, and a message's recipients (' id1 id2 ', agent ids
 * never contain a space) are a text[]. Times are epoch ms and JSON is text in both.
 */
const CONVERSIONS: Record<string, { array: string; value: (v: unknown) => unknown; select?: (column: string) => string }> = {
  int8: { array: 'int8[]', value: (v) => v },
  int4: { array: 'int4[]', value: (v) => v },
  text: { array: 'text[]', value: (v) => v },
  bool: { array: 'bool[]', value: (v) => (v === null ? null : v !== 0) },
  _text: { array: 'text[]', value: (v) => v, select: (c) => `string_to_array(btrim(${c}, ' '), ' ')` },
};

interface TargetColumn {
  name: string;
  udt: string;
  generated: boolean;
  optional: boolean;
}

/** The multi-row INSERT of one table: one array parameter per column, the rows through unnest. */
export class TableInsert {
  private constructor(
    readonly table: CopiedTable,
    readonly columns: readonly string[],
    private readonly sql: string,
    private readonly convert: ReadonlyArray<(v: unknown) => unknown>,
  ) {}

  /**
   * Match the source's columns to the target's, column by column: every SQLite column needs a
   * PostgreSQL column of a type converted above, and every PostgreSQL column the source lacks must
   * be generated or have a default. Anything else is refused before a row is written.
   */
  static async plan(client: pg.PoolClient, table: CopiedTable, sourceColumns: readonly string[]): Promise<TableInsert> {
    const target = await targetColumns(client, table.name);
    const byName = new Map(target.map((c) => [c.name, c]));
    const convert: Array<(v: unknown) => unknown> = [];
    const arrays: string[] = [];
    const selects: string[] = [];
    sourceColumns.forEach((name, i) => {
      const column = byName.get(name);
      const conversion = column && !column.generated ? CONVERSIONS[column.udt] : undefined;
      if (!column || !conversion)
        throw new MigrateRefused(
          `the SQLite column ${table.name}.${name} has ${column ? `a PostgreSQL column of type ${column.udt} this migrate cannot fill` : 'no PostgreSQL column'}: this agent-relay cannot copy this database`,
        );
      convert.push(conversion.value);
      arrays.push(`$${i + 1}::${conversion.array}`);
      selects.push(conversion.select ? conversion.select(`u.c${i}`) : `u.c${i}`);
    });
    const missing = target.filter((c) => !sourceColumns.includes(c.name) && !c.generated && !c.optional);
    if (missing.length > 0)
      throw new MigrateRefused(`the PostgreSQL table ${table.name} needs ${missing.map((c) => c.name).join(', ')}, which the SQLite file does not have: this agent-relay cannot copy this database`);
    const names = sourceColumns.map((c) => `"${c}"`).join(', ');
    const aliases = sourceColumns.map((_c, i) => `c${i}`).join(', ');
    const overriding = table.identity ? ' OVERRIDING SYSTEM VALUE' : '';
    const sql = `INSERT INTO ${table.name} (${names})${overriding} SELECT ${selects.join(', ')} FROM unnest(${arrays.join(', ')}) AS u(${aliases})`;
    return new TableInsert(table, sourceColumns, sql, convert);
  }

  /** Insert rows (arrays in `columns` order) in one statement. */
  async insert(client: pg.PoolClient, rows: readonly unknown[][]): Promise<void> {
    const params = this.convert.map((convert, i) => rows.map((row) => convert(row[i])));
    await client.query(this.sql, params);
  }
}

async function targetColumns(client: pg.PoolClient, table: string): Promise<TargetColumn[]> {
  const rows = (
    await client.query<{ name: string; udt: string; generated: string; identity: string | null; fallback: string | null; nullable: string }>(
      `SELECT column_name AS name, udt_name AS udt, is_generated AS generated, identity_generation AS identity, column_default AS fallback, is_nullable AS nullable
       FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position`,
      [table],
    )
  ).rows;
  if (rows.length === 0) throw new MigrateRefused(`the PostgreSQL database has no table ${table} after its migrations: this agent-relay cannot copy into it`);
  return rows.map((r) => ({ name: r.name, udt: r.udt, generated: r.generated === 'ALWAYS', optional: r.fallback !== null || r.identity !== null || r.nullable === 'YES' }));
}
