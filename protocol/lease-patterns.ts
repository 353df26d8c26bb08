/*
 * Lease resources and when two of them overlap (docs/PROTOCOL.md, "Leases").
 *
 * A resource is a name or a path pattern:
 * - a name has a scheme, `SCHEME:REST` (`db:migrations`, `port:4850`): it overlaps only the same
 *   name, character for character; it holds no wildcard.
 * - a path pattern is a relative `/`-separated path whose segments are literal text, text with
 *   `*` (any characters within one segment: `*.ts`, `test-*`), or `**` alone (any number of
 *   segments, none included). A pattern names the paths it matches and everything beneath them:
 *   `src/auth` holds `src/auth/login.ts` as `src/auth/**` does.
 * Two path patterns overlap when some path lies under both; that is decided exactly (below), so
 * the answer is never "no" for patterns that share a path. A name never overlaps a path pattern.
 */

export const NAME_PATTERN = /^[a-z][a-z0-9+.-]+:/;
/** Characters that other glob dialects give a meaning this rule does not: refused, never guessed. */
const RESERVED = /[?[\]{}!\\]/;

export type ParsedResource = { kind: 'name'; name: string } | { kind: 'path'; segments: string[] };

/** The resource, or a message naming what is wrong with it and what to write instead. */
export function parseResource(resource: string): ParsedResource | { error: string } {
  if (resource.length === 0) return { error: 'is empty' };
  if (/\s/.test(resource)) return { error: 'holds whitespace; resources are paths or SCHEME:NAME' };
  if (NAME_PATTERN.test(resource)) {
    if (resource.includes('*')) return { error: 'is a name (SCHEME:NAME) and names match exactly: wildcards are for paths' };
    if (resource.endsWith(':')) return { error: 'names nothing after its scheme: write SCHEME:NAME' };
    return { kind: 'name', name: resource };
  }
  if (RESERVED.test(resource)) return { error: 'uses ? [ ] { } ! or \\, which this rule does not interpret: use * within a segment and ** for whole segments' };
  if (resource.startsWith('/')) return { error: 'is absolute: write paths relative to the shared working tree (e.g. src/auth/**)' };
  const segments = resource.split('/');
  for (const s of segments) {
    if (s === '') return { error: 'has an empty segment (a leading, trailing or doubled /)' };
    if (s === '.' || s === '..') return { error: `has a "${s}" segment: write the path it stands for` };
    if (s.includes('**') && s !== '**') return { error: `has "${s}": ** stands only as a whole segment (write a/**/b, or * within a segment)` };
  }
  return { kind: 'path', segments };
}

/** Whether some non-empty segment matches both segment globs (`*` = any characters). Exact. */
export function segmentsOverlap(a: string, b: string): boolean {
  // Reachability in the product of the two patterns' automata: (i, j) = positions in a and b.
  const seen = new Set<number>();
  const stack: Array<[number, number]> = [[0, 0]];
  const width = b.length + 1;
  while (stack.length > 0) {
    const [i, j] = stack.pop()!;
    const key = i * width + j;
    if (seen.has(key)) continue;
    seen.add(key);
    if (i === a.length && j === b.length) return true;
    const ca = a[i];
    const cb = b[j];
    if (ca === '*') stack.push([i + 1, j]);
    if (cb === '*') stack.push([i, j + 1]);
    if (ca === undefined || cb === undefined) continue;
    if (ca === '*' && cb !== '*') stack.push([i, j + 1]);
    else if (cb === '*' && ca !== '*') stack.push([i + 1, j]);
    else if (ca === cb && ca !== '*') stack.push([i + 1, j + 1]);
  }
  return false;
}

/** Whether some path lies under both segment lists (each read as PATTERN/**). Exact. */
function pathsOverlap(a: readonly string[], b: readonly string[]): boolean {
  const pa = [...a, '**'];
  const pb = [...b, '**'];
  const memo = new Map<number, boolean>();
  const width = pb.length + 1;
  const go = (i: number, j: number): boolean => {
    if (i === pa.length && j === pb.length) return true;
    const key = i * width + j;
    const known = memo.get(key);
    if (known !== undefined) return known;
    const sa = pa[i];
    const sb = pb[j];
    let found = false;
    if (sa === '**') found = go(i + 1, j) || (sb !== undefined && sb !== '**' && go(i, j + 1));
    if (!found && sb === '**') found = go(i, j + 1) || (sa !== undefined && sa !== '**' && go(i + 1, j));
    if (!found && sa !== undefined && sb !== undefined && sa !== '**' && sb !== '**') found = segmentsOverlap(sa, sb) && go(i + 1, j + 1);
    memo.set(key, found);
    return found;
  };
  return go(0, 0);
}

/** Whether two valid resources can name a common thing. Throws on an invalid one (validate first). */
export function resourcesOverlap(a: string, b: string): boolean {
  const pa = parseResource(a);
  const pb = parseResource(b);
  if ('error' in pa || 'error' in pb) throw new Error(`invalid resource: ${'error' in pa ? a : b}`);
  if (pa.kind === 'name' || pb.kind === 'name') return pa.kind === 'name' && pb.kind === 'name' && pa.name === pb.name;
  return pathsOverlap(pa.segments, pb.segments);
}
