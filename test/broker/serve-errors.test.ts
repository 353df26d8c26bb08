import { spawnSync } from 'node:child_process';
import t from 'tap';
import Database from 'better-sqlite3';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { serve } from '../../broker/main.js';
import { listMigrations } from '../../broker/store/migrate.js';
import { spawnTs } from '../helpers/child.js';
import { startRelay } from '../helpers/relay.js';

/**
 * `serve` refuses a bad command line or a database it cannot use with one line naming what was
 * wrong and what to do, no stack trace, and a non-zero exit: in-process for each case, and as the
 * two real entries (`npm start` runs broker/main.ts; `agent-relay serve` runs the bin).
 */

const USAGE_LINE = /agent-relay serve \[--port N\] \[--db PATH\]/;
const HINT = '; pass --db FILE or set AGENT_RELAY_DB to use another file';
const LATEST = listMigrations().at(-1)!.version;

async function serveLines(argv: string[]): Promise<{ code: number; err: string }> {
  const lines: string[] = [];
  const code = await serve(['--port', '0', ...argv], (l) => lines.push(l));
  return { code, err: lines.join('\n') };
}

/** The database files a relay cannot open, and the reason it must give for each. */
function badDatabases(dir: string): Array<{ what: string; path: string; reason: string }> {
  mkdirSync(join(dir, 'a-directory.db'));
  writeFileSync(join(dir, 'plain-file'), 'not a folder\n');
  writeFileSync(join(dir, 'junk.db'), Buffer.alloc(8192, 0x5a));
  const newer = new Database(join(dir, 'newer.db'));
  newer.pragma(`user_version = ${LATEST + 7}`);
  newer.close();
  return [
    { what: 'a directory', path: join(dir, 'a-directory.db'), reason: 'it is a directory' },
    { what: 'a path under a file', path: join(dir, 'plain-file', 'relay.db'), reason: `${join(dir, 'plain-file')} is a file, not a directory` },
    { what: 'a non-SQLite file', path: join(dir, 'junk.db'), reason: 'it is not an SQLite database (a corrupt file, or another kind of file)' },
    { what: 'a database of a newer relay', path: join(dir, 'newer.db'), reason: `schema version ${LATEST + 7} is newer than this relay (${LATEST}): upgrade the relay` },
  ];
}

t.test('a database that cannot be opened: one line naming the file and the reason, exit 1', async (t) => {
  for (const bad of badDatabases(t.testdir())) {
    const r = await serveLines(['--db', bad.path]);
    t.equal(r.code, 1, `${bad.what}: exit 1`);
    t.equal(r.err, `agent-relay: cannot open database ${bad.path}: ${bad.reason}${HINT}`, `${bad.what}: says so`);
  }
});

// Root ignores file modes: as root, the relay runs as nobody against files root owns. A Node
// binary in root's own folders (the Node 24 run's ~/.cache) cannot be started by nobody.
const NOBODY = { uid: 65534, gid: 65534 };
const asRoot = process.getuid?.() === 0;
const nobodyCannotRunNode = asRoot && spawnSync(process.execPath, ['-e', '0'], { ...NOBODY, stdio: 'ignore' }).status !== 0;

t.test('a database this user may not write: permission denied, naming what is not writable', { skip: nobodyCannotRunNode ? `nobody cannot run ${process.execPath}` : false }, async (t) => {
  const root = asRoot;
  const user = root ? NOBODY : undefined;
  const base = t.testdir();
  const locked = join(base, 'locked');
  mkdirSync(locked);
  chmodSync(locked, root ? 0o755 : 0o500);
  const open = join(base, 'open');
  mkdirSync(open);
  chmodSync(open, 0o777);
  writeFileSync(join(open, 'relay.db'), '');
  chmodSync(join(open, 'relay.db'), root ? 0o600 : 0o000);
  const cases = [
    { path: join(locked, 'relay.db'), reason: `permission denied: ${locked} is not writable by this user` },
    { path: join(open, 'relay.db'), reason: 'permission denied: this user cannot read and write it' },
  ];
  for (const c of cases) {
    const child = spawnTs(t, 'broker/main.ts', { args: ['--port', '0', '--db', c.path], env: { LOG_LEVEL: 'warn' }, ...(user ? { user } : {}) });
    const exit = await child.exited;
    t.equal(exit.code, 1, `${c.path}: exit 1`);
    // (Only the first line: as nobody, tap's own exit hook in the child fails to write its process info after it.)
    t.equal(child.stderr().split('\n')[0], `agent-relay: cannot open database ${c.path}: ${c.reason}${HINT}`, `${c.path}: says so`);
  }
});

t.test('a wrong command line prints what is wrong and the usage, exit 2, and starts nothing', async (t) => {
  const cases: Array<[string[], string]> = [
    [['--bogus'], 'unknown option --bogus'],
    [['-x'], 'unknown option -x'],
    [['--port'], '--port needs a value: a port number 0-65535'],
    [['--port', '--db', 'x.db'], '--port needs a value: a port number 0-65535'],
    [['--db'], '--db needs a value: a database file path'],
    [['--port', 'abc'], '--port: expected a port number 0-65535, got "abc"'],
    [['--port=70000'], '--port: expected a port number 0-65535, got "70000"'],
    [['--db', ''], '--db: expected a database file path, got ""'],
    [['--insecure=yes'], '--insecure takes no value'],
    [['stray'], 'unexpected argument "stray"'],
  ];
  for (const [argv, message] of cases) {
    const lines: string[] = [];
    const code = await serve(argv, (l) => lines.push(l));
    t.equal(code, 2, `${argv.join(' ')}: exit 2`);
    const [first, ...rest] = lines.join('\n').split('\n');
    t.equal(first, `agent-relay serve: ${message}`, `${argv.join(' ')}: names the flag`);
    t.match(rest.join('\n'), USAGE_LINE, `${argv.join(' ')}: then the usage`);
  }
});

t.test('both entries (npm start and agent-relay serve): one line, no stack, non-zero exit', async (t) => {
  const dir = t.testdir();
  const [directory] = badDatabases(dir);
  const busy = await startRelay(t, {}, { dir: join(dir, 'busy') });
  const entries = [
    { name: 'broker/main.ts', script: 'broker/main.ts', pre: [] as string[] },
    { name: 'agent-relay serve', script: 'bin/agent-relay.js', pre: ['serve'] },
  ];
  for (const entry of entries) {
    const runs = [
      { what: 'a directory as database', args: ['--port', '0', '--db', directory!.path], code: 1, line: `agent-relay: cannot open database ${directory!.path}: it is a directory${HINT}` },
      { what: '--port abc', args: ['--port', 'abc'], code: 2, line: 'agent-relay serve: --port: expected a port number 0-65535, got "abc"' },
      { what: 'an unknown flag', args: ['--prot', '80'], code: 2, line: 'agent-relay serve: unknown option --prot' },
      // Whatever the transport's wording for a taken port, it is one line, not a stack.
      { what: 'a port in use', args: ['--port', String(busy.port), '--db', join(dir, `${entry.pre.length}.db`)], code: 1, line: new RegExp(`^agent-relay: .*${busy.port}.*$`) },
    ];
    for (const run of runs) {
      const child = spawnTs(t, entry.script, { args: [...entry.pre, ...run.args], env: { LOG_LEVEL: 'warn', AGENT_RELAY_LISTEN_WAIT_MS: '0' } });
      const exit = await child.exited;
      const label = `${entry.name} with ${run.what}`;
      t.equal(exit.code, run.code, `${label}: exit ${run.code}`, { stderr: child.stderr() });
      t.match(child.stderr().split('\n')[0], run.line, `${label}: the first stderr line says what is wrong`);
      t.notMatch(child.stderr() + child.stdout(), /\n\s+at /, `${label}: no stack trace`);
      if (run.code === 1) t.equal(child.stderr().trim().split('\n').length, 1, `${label}: one line`);
    }
  }
});

t.test('only programming errors count as bugs (their stack is logged); refusals of the environment do not', async (t) => {
  const { isBug, StartupError } = await import('../../broker/startup-error.js');
  t.notOk(isBug(new StartupError('cannot open database x: it is a directory')));
  t.notOk(isBug(new Error('port 4850 is already in use (another relay?)')), 'a plain Error thrown at start-up is a refusal');
  t.notOk(isBug(Object.assign(new Error('listen EADDRINUSE'), { code: 'EADDRINUSE' })));
  t.ok(isBug(new TypeError("Cannot read properties of undefined (reading 'port')")));
  t.ok(isBug(new RangeError('Maximum call stack size exceeded')));
  t.ok(isBug('a thrown string'));
});
