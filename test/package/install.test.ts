import { copyFileSync, existsSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { childEnv, ROOT, spawnChild, type TsChild } from '../helpers/child.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The package as a user gets it: `npm pack` of this checkout, installed the way `npm install -g`
 * lays it out, then `agent-relay serve` run from an unrelated folder with a fresh HOME.
 *
 * Two steps of a real global install are done by hand because a test reaches no registry: npm
 * resolves a tarball's dependencies from registry metadata, which the npm cache does not hold
 * offline. So the tarball is unpacked into PREFIX/lib/node_modules/agent-relay-broker, its
 * production dependencies are installed there with `npm ci --omit=dev --offline` from this
 * repository's lockfile (the tree the suite ran against, tarballs from the npm cache), the
 * better-sqlite3 binary the checkout built is copied in (building it again takes two minutes),
 * and PREFIX/bin gets the links npm makes from package.json's `bin`.
 */

const NAME = 'agent-relay-broker';
const WAIT_MS = 60_000;

function npm(t: Test, args: string[], cwd: string): Promise<TsChild> {
  const child = spawnChild(t, 'npm', [...args, '--no-audit', '--no-fund'], { cwd, env: childEnv() });
  return child.exited.then((exit) => {
    if (exit.code !== 0) throw new Error(`npm ${args.join(' ')} failed (${exit.code}): ${child.stderr()}`);
    return child;
  });
}

async function run(t: Test, cmd: string, args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv }): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawnChild(t, cmd, args, opts);
  const exit = await child.exited;
  return { code: exit.code, out: child.stdout(), err: child.stderr() };
}

t.test('the packed package installs and runs agent-relay serve from any folder', async (t) => {
  t.ok(existsSync(join(ROOT, 'dist', 'types', 'clients', 'index.d.ts')), 'dist/ is built with declarations (npm test builds it first)');
  const dir = t.testdir();
  await npm(t, ['pack', '--ignore-scripts', '--pack-destination', dir], ROOT);
  const tarball = readdirSync(dir).find((f) => f.startsWith(`${NAME}-`) && f.endsWith('.tgz'));
  t.ok(tarball, 'npm pack wrote the tarball');

  const listing = await run(t, 'tar', ['tzf', join(dir, tarball!)], { cwd: dir, env: childEnv() });
  const files = listing.out
    .split('\n')
    .filter(Boolean)
    .map((f) => f.replace(/^package\//, ''));
  for (const wanted of [
    'bin/agent-relay.js',
    'dist/bin/agent-relay.js',
    'dist/broker/main.js',
    'dist/client/index.js',
    'dist/types/clients/index.d.ts',
    'dist/dashboard/index.html',
    'broker/store/migrations/0001_init.sql',
    'adapters/claude/plugin/hooks/hooks.json',
  ]) {
    t.ok(files.includes(wanted), `the package holds ${wanted}`);
  }
  const allowed =
    /^(bin\/[^/]+\.js|dist\/.+|broker\/store(-postgres)?\/migrations\/\d{4}_[a-z_]+\.sql|adapters\/(claude|codex)\/plugin\/.+|\.claude-plugin\/.+|docs\/[^/]+\.md|README\.md|LICENSE|package\.json)$/;
  t.same(
    files.filter((f) => !allowed.test(f)),
    [],
    'nothing else: no tests, benchmarks, sources or stray files',
  );
  t.same(
    files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts')),
    [],
    'no TypeScript sources',
  );

  // Lay it out as `npm install -g --prefix PREFIX` does (see the comment at the top).
  const prefix = join(dir, 'prefix');
  const pkg = join(prefix, 'lib', 'node_modules', NAME);
  mkdirSync(join(prefix, 'lib', 'node_modules'), { recursive: true });
  const unpack = await run(t, 'tar', ['xzf', join(dir, tarball!), '-C', join(prefix, 'lib', 'node_modules')], { cwd: dir, env: childEnv() });
  t.equal(unpack.code, 0, 'tarball unpacked');
  await run(t, 'mv', [join(prefix, 'lib', 'node_modules', 'package'), pkg], { cwd: dir, env: childEnv() });
  copyFileSync(join(ROOT, 'package-lock.json'), join(pkg, 'package-lock.json'));
  await npm(t, ['ci', '--omit=dev', '--offline', '--ignore-scripts'], pkg);
  const sqliteBuild = join('node_modules', 'better-sqlite3', 'build', 'Release');
  mkdirSync(join(pkg, sqliteBuild), { recursive: true });
  copyFileSync(join(ROOT, sqliteBuild, 'better_sqlite3.node'), join(pkg, sqliteBuild, 'better_sqlite3.node'));
  t.notOk(existsSync(join(pkg, 'node_modules', 'tsx')), 'no TypeScript loader among the installed dependencies');
  t.notOk(existsSync(join(pkg, 'node_modules', 'esbuild')), 'no bundler among the installed dependencies');
  mkdirSync(join(prefix, 'bin'));
  for (const bin of ['agent-relay', 'codex-relay']) symlinkSync(join('..', 'lib', 'node_modules', NAME, 'bin', `${bin}.js`), join(prefix, 'bin', bin));

  // A fresh user: HOME with nothing in it, run from a folder that is not the package.
  const home = join(dir, 'home');
  const elsewhere = join(dir, 'elsewhere');
  mkdirSync(home);
  mkdirSync(elsewhere);
  const env = childEnv({ HOME: home, PATH: `${join(prefix, 'bin')}:${process.env.PATH ?? ''}` }, (k) => k.startsWith('AGENT_RELAY_') || k.startsWith('npm_'));

  const help = await run(t, 'agent-relay', ['--help'], { cwd: elsewhere, env });
  t.equal(help.code, 0, `agent-relay --help exits 0 (stderr: ${help.err})`);
  t.match(help.out, /Usage: agent-relay/);

  const relay = spawnChild(t, 'agent-relay', ['serve', '--port', '0'], { cwd: elsewhere, env });
  let url = '';
  await waitFor(
    () => {
      url = /"url":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(relay.stdout())?.[1] ?? '';
      return url !== '' || relay.stderr() !== '';
    },
    'the installed relay\'s "listening" line',
    WAIT_MS,
  );
  t.equal(relay.stderr(), '', 'the relay started without complaint');

  const page = await fetch(`${url}/`);
  t.equal(page.status, 200, 'the dashboard is served from the installed package');
  const html = await page.text();
  const asset = /src="\/?(assets\/app-[A-Za-z0-9]+\.js)"/.exec(html)?.[1];
  t.ok(asset, 'the page names its bundle');
  t.equal((await fetch(`${url}/${asset}`)).status, 200, 'and the bundle is served');
  t.match(await (await fetch(`${url}/healthz`)).json(), { ok: true });
  t.ok(existsSync(join(home, '.agent-relay', 'relay.db')), 'the database is in ~/.agent-relay/relay.db');
  t.same(readdirSync(elsewhere), [], 'nothing was written to the folder it ran in');

  const register = await run(t, 'agent-relay', ['--url', url, 'register', '--id', 'installed'], { cwd: elsewhere, env });
  t.equal(register.code, 0, `register exits 0 (stderr: ${register.err})`);
  t.ok(existsSync(join(home, '.agent-relay', 'agents')), 'the CLI stores tokens in the same ~/.agent-relay');

  // A user's own project importing the client library by the package name.
  const project = join(dir, 'project');
  mkdirSync(join(project, 'node_modules'), { recursive: true });
  symlinkSync(pkg, join(project, 'node_modules', NAME));
  writeFileSync(
    join(project, 'use.mjs'),
    `import { createRelayClient } from '${NAME}/client';
const relay = createRelayClient({ url: process.argv[2], agent: { id: 'library-user' } });
await relay.connect();
const sent = await relay.send('installed', 'hello from the package');
console.log(JSON.stringify({ id: sent.message.id }));
await relay.close();
`,
  );
  const use = await run(t, process.execPath, ['use.mjs', url], { cwd: project, env });
  t.equal(use.code, 0, `import '${NAME}/client' works (stderr: ${use.err})`);
  t.match(JSON.parse(use.out.trim()), { id: Number });

  relay.kill('SIGTERM');
  t.equal((await relay.exited).code, 0, 'the installed relay stops on SIGTERM with exit 0');
});
