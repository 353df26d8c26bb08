/**
 * Lone UTF-16 surrogates (a `\ud800` escape with no partner) cannot be stored as UTF-8: SQLite
 * keeps U+FFFD instead, so a live push and a replay of the same record would differ. The relay
 * refuses them in every string, object keys included; clients may pre-check with this.
 */
const isWellFormed = (s: string): boolean => (s as string & { isWellFormed(): boolean }).isWellFormed();

/** The path ("meta.note", "to.1", "meta (a key)") of the first string or key holding a lone surrogate, or null. */
export function illFormedStringPath(value: unknown, path = ''): string | null {
  if (typeof value === 'string') return isWellFormed(value) ? null : path || '(params)';
  if (typeof value !== 'object' || value === null) return null;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = illFormedStringPath(value[i], path ? `${path}.${i}` : String(i));
      if (found !== null) return found;
    }
    return null;
  }
  for (const [key, inner] of Object.entries(value)) {
    // A bad key is named by where it is, not by itself: echoing it would echo the surrogate.
    if (!isWellFormed(key)) return `${path || '(params)'} (a key)`;
    const here = path ? `${path}.${key}` : key;
    const found = illFormedStringPath(inner, here);
    if (found !== null) return found;
  }
  return null;
}

/** The -32602 message for a lone surrogate at `path`. */
export function illFormedMessage(path: string): string {
  return `invalid params: ${path}: contains a lone UTF-16 surrogate; send well-formed Unicode (pair it, or replace it with U+FFFD)`;
}

/** A string's length in UTF-8 bytes, without encoding it (pure: the dashboard bundles protocol/). */
export function utf8Length(s: string): number {
  let bytes = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      bytes += 2; // a surrogate pair: 2 units, 4 bytes
      i++;
    } else if (c >= 0x800) bytes += 2;
    else if (c >= 0x80) bytes += 1;
  }
  return bytes;
}
