/** WHERE clauses with their parameters numbered as they are added. */
export class Where {
  readonly params: unknown[] = [];
  private readonly parts: string[] = [];

  add(sql: (p: string) => string, value: unknown): this {
    this.params.push(value);
    this.parts.push(sql(`$${this.params.length}`));
    return this;
  }

  /** The clauses, and `LIMIT` as the last parameter. */
  sql(limit: number): string {
    this.params.push(limit);
    return `${this.parts.join(' AND ')} ORDER BY id LIMIT $${this.params.length}`;
  }
}
