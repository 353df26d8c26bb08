// `npm run lint:layers`: the import rules of .dependency-cruiser.cjs (the layers, no cycles) over
// the product code, with dependency-cruiser. The violations that existed when the check came in
// are listed in .dependency-cruiser-known-violations.json (written by depcruise-baseline); the
// check fails on any violation not listed there, and on a listed one that no longer occurs, so
// the list only shrinks: `npm run lint:layers -- --shrink` removes those from it (never adds).
// Prints how many known violations are left. About 2 s.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const CONFIG = '.dependency-cruiser.cjs';
const KNOWN = '.dependency-cruiser-known-violations.json';
const PRODUCT = ['protocol', 'broker', 'adapters', 'clients', 'bin'];
const shrink = process.argv.includes('--shrink');

const cli = join(root, 'node_modules', 'dependency-cruiser', 'bin', 'dependency-cruise.mjs');
const args = [cli, '--config', CONFIG, '--output-type', 'json', ...(existsSync(join(root, KNOWN)) ? ['--ignore-known', KNOWN] : []), ...PRODUCT];
const run = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
let result;
try {
  result = JSON.parse(run.stdout);
} catch {
  process.stderr.write(`lint:layers: dependency-cruiser gave no report (exit ${run.status})\n${run.stderr}${run.stdout.slice(0, 2000)}\n`);
  process.exit(1);
}

const key = (rule, from, to) => `${rule}\u0000${from}\u0000${to}`;
// Known violations still occurring: --ignore-known turned their severity to "ignore".
const stillKnown = new Set();
for (const m of result.modules) {
  for (const d of m.dependencies) {
    for (const r of d.rules ?? []) if (r.severity === 'ignore') stillKnown.add(key(r.name, m.source, d.resolved));
  }
  for (const r of m.rules ?? []) if (r.severity === 'ignore') stillKnown.add(key(r.name, m.source, m.source));
}
const known = existsSync(join(root, KNOWN)) ? JSON.parse(readFileSync(join(root, KNOWN), 'utf8')) : [];
const gone = known.filter((v) => !stillKnown.has(key(v.rule.name, v.from, v.type === 'module' ? v.from : v.to)));
const left = known.length - gone.length;

const fresh = result.summary.violations.filter((v) => v.rule.severity === 'error' || v.rule.severity === 'warn');
const describe = (v) => (v.cycle ? `${v.from} → ${v.cycle.map((c) => c.name ?? c).join(' → ')}` : `${v.from} → ${v.to}`);
for (const v of fresh) process.stderr.write(`  ${v.rule.severity} ${v.rule.name}: ${describe(v)}\n`);

let failed = fresh.length > 0;
if (gone.length && shrink) {
  writeFileSync(
    join(root, KNOWN),
    `${JSON.stringify(
      known.filter((v) => !gone.includes(v)),
      null,
      2,
    )}\n`,
  );
  process.stdout.write(`lint:layers: ${gone.length} fixed violation(s) removed from ${KNOWN}\n`);
} else if (gone.length) {
  for (const v of gone) process.stderr.write(`  fixed, still listed: ${v.rule.name}: ${describe(v)}\n`);
  process.stderr.write(`lint:layers: ${gone.length} known violation(s) no longer occur: run \`npm run lint:layers -- --shrink\` to drop them from ${KNOWN}\n`);
  failed = true;
}
const { totalCruised, totalDependenciesCruised } = result.summary;
process.stdout.write(`lint:layers: ${fresh.length} new violation(s); ${left} known violation(s) left in ${KNOWN} (${totalCruised} modules, ${totalDependenciesCruised} imports checked)\n`);
if (fresh.length) process.stderr.write('lint:layers: the rules and the layers are described in .dependency-cruiser.cjs\n');
process.exit(failed ? 1 : 0);
