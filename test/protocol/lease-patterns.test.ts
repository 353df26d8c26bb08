import t from 'tap';
import { parseResource, resourcesOverlap, segmentsOverlap } from '../../protocol/lease-patterns.js';
import { seeded } from '../helpers/random.js';

/**
 * The overlap rule of leases (PROTOCOL.md, "Leases"): what is refused, what overlaps, and a
 * brute-force check against an independent matcher: whenever some path lies under two patterns,
 * the rule says they overlap (safety), and it says so only then (it is exact).
 */

/** Independent reference: a matcher for paths under `pattern` (it matches the path or an ancestor). */
function matcher(pattern: string): (path: string) => boolean {
  if (pattern.includes(':')) return (path) => pattern === path;
  const g = pattern.split('/').map((x) =>
    x === '**'
      ? x
      : new RegExp(
          `^${x
            .split('*')
            .map((y) => y.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
            .join('[^/]*')}$`,
        ),
  );
  return (path) => {
    const s = path.split('/');
    const go = (i: number, j: number): boolean => {
      if (i === g.length) return true;
      const seg = g[i]!;
      if (seg === '**') return go(i + 1, j) || (j < s.length && go(i, j + 1));
      return j < s.length && seg.test(s[j]!) && go(i + 1, j + 1);
    };
    return go(0, 0);
  };
}

t.test('refused as invalid or ambiguous, with a message saying why', async (t) => {
  const bad: Array<[string, RegExp]> = [
    ['', /empty/],
    ['/etc/passwd', /absolute/],
    ['src//auth', /empty segment/],
    ['src/auth/', /empty segment/],
    ['src/../etc', /".." segment/],
    ['./src', /"\." segment/],
    ['src/a**b', /whole segment/],
    ['src/**.ts', /whole segment/],
    ['src/?.ts', /does not interpret/],
    ['src/[ab].ts', /does not interpret/],
    ['src/{a,b}.ts', /does not interpret/],
    ['!src', /does not interpret/],
    ['src\\auth', /does not interpret/],
    ['db:*', /names match exactly/],
    ['db:', /after its scheme/],
    ['src/my file.ts', /whitespace/],
  ];
  for (const [r, why] of bad) {
    const p = parseResource(r);
    t.ok('error' in p, `${JSON.stringify(r)} is refused`);
    if ('error' in p) t.match(p.error, why, `${JSON.stringify(r)}: ${p.error}`);
  }
  for (const ok of ['src/auth/**', 'src/a/*.ts', 'README.md', '**', '*', 'db:migrations', 'port:4850', 'src/**/test-*/x.ts', 'a:b/c']) {
    t.notOk('error' in parseResource(ok), `${ok} is valid`);
  }
  t.same(parseResource('db:migrations'), { kind: 'name', name: 'db:migrations' });
  t.same(parseResource('a:b/c'), { kind: 'path', segments: ['a:b', 'c'] }, 'a one-letter scheme is no scheme (a path segment)');
});

t.test('examples of the rule', async (t) => {
  const cases: Array<[string, string, boolean]> = [
    ['src/auth/**', 'src/auth/login.ts', true],
    ['src/auth', 'src/auth/login.ts', true], // a path holds everything beneath it
    ['src/auth/**', 'src/authz/x.ts', false],
    ['src/*.ts', 'src/a.ts', true],
    ['src/*.ts', 'src/a.js', false],
    ['src/*.ts', 'src/a/b.ts', false],
    ['src/**/*.ts', 'src/a/b.ts', true],
    ['src/**', 'src', true],
    ['**', 'anything/at/all', true],
    ['*.md', 'README.md', true],
    ['*.md', 'docs/README.md', false],
    ['a/*/c', '*/b/*', true],
    ['a/*x', 'a/y*', true], // a/yx
    ['a/x*', 'a/y*', false],
    ['a/*x*', 'a/*y*', true],
    ['db:migrations', 'db:migrations', true],
    ['db:migrations', 'db:seeds', false],
    ['db:migrations', '**', false], // names and paths never meet
    ['src/**/x', 'src/y/**', true],
    // lib/a.ts/b.ts lies under both: a.ts might be a directory, and a pattern holds what is beneath it.
    ['lib/**/a.ts', 'lib/**/b.ts', true],
    ['lib/*/a.ts', 'lib/*/b.ts', false],
  ];
  for (const [a, b, want] of cases) {
    t.equal(resourcesOverlap(a, b), want, `${a} ~ ${b}: ${want}`);
    t.equal(resourcesOverlap(b, a), want, `symmetric: ${b} ~ ${a}`);
  }
  t.equal(segmentsOverlap('*', '*'), true);
  t.equal(segmentsOverlap('ab', 'a*b'), true, 'a star may stand for nothing');
  t.equal(segmentsOverlap('a*b', 'b*a'), false, 'no string starts with both a and b');
});

t.test('brute force: whenever a path lies under both patterns, overlap says true', async (t) => {
  // A small alphabet so that random patterns often meet; every path of up to 4 segments of these words.
  const rand = seeded(20261203);
  const letters = ['a', 'b'];
  const segment = (): string => {
    const r = rand(10);
    if (r === 0) return '**';
    if (r === 1) return '*';
    let s = '';
    const len = 1 + rand(3);
    for (let i = 0; i < len; i++) s += rand(4) === 0 ? '*' : letters[rand(2)]!;
    return s.replace(/\*\*+/g, '*');
  };
  const pattern = () => Array.from({ length: 1 + rand(3) }, segment).join('/');
  const words = ['a', 'b', 'ab', 'ba', 'aa', 'bb', 'aab', 'bab'];
  const paths: string[] = [];
  const build = (prefix: string[], depth: number) => {
    if (prefix.length > 0) paths.push(prefix.join('/'));
    if (depth > 0) for (const w of words) build([...prefix, w], depth - 1);
  };
  build([], 4);
  let overlapping = 0;
  let disjoint = 0;
  const PAIRS = 1500;
  for (let round = 0; round < PAIRS; round++) {
    const a = pattern();
    const b = pattern();
    const underA = matcher(a);
    const underB = matcher(b);
    const witness = paths.find((p) => underA(p) && underB(p));
    const says = resourcesOverlap(a, b);
    if (witness !== undefined) {
      overlapping++;
      if (!says) t.fail(`${a} and ${b} both hold ${witness}, but overlap said false`);
    } else if (!says) disjoint++;
  }
  t.ok(overlapping > 100 && disjoint > 20, `${overlapping} of ${PAIRS} random pairs share a path, ${disjoint} are disjoint: the check is not vacuous`);
  t.pass(`${PAIRS} random pairs checked against ${paths.length} paths`);
});
