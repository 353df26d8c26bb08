/** JSON columns: lists and meta objects stored as text. */
export function toJson(value: unknown): string {
  return JSON.stringify(value ?? null);
}

export function parseList(text: string): string[] {
  return JSON.parse(text) as string[];
}

export function parseObject(text: string): Record<string, unknown> {
  return JSON.parse(text) as Record<string, unknown>;
}
