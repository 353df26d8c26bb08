import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { writeJsonAtomic } from '../../clients/atomic-json.js';

t.test('creates missing directories (0700) and writes the JSON with a trailing newline at the mode given', async (t) => {
  const dir = join(t.testdir(), 'a', 'b');
  const file = join(dir, 'x.json');
  writeJsonAtomic(file, { id: 'bob', n: 1 }, { mode: 0o600 });
  t.equal(readFileSync(file, 'utf8'), '{"id":"bob","n":1}\n', 'compact by default');
  t.equal(statSync(file).mode & 0o777, 0o600);
  t.equal(statSync(dir).mode & 0o777, 0o700);
  writeJsonAtomic(file, { id: 'bob' }, { mode: 0o600, indent: 2 });
  t.equal(readFileSync(file, 'utf8'), '{\n  "id": "bob"\n}\n', 'indented when asked');
  t.same(readdirSync(dir), ['x.json'], 'no temporary file left behind');
});

t.test('replaces an existing file whole and gives it the mode, whatever it had', async (t) => {
  const dir = t.testdir();
  const file = join(dir, 'x.json');
  writeFileSync(file, 'old', { mode: 0o644 });
  writeJsonAtomic(file, [1, 2], { mode: 0o600 });
  t.same(JSON.parse(readFileSync(file, 'utf8')), [1, 2]);
  t.equal(statSync(file).mode & 0o777, 0o600);
});

t.test('a failed write leaves the old file and no temporary file', async (t) => {
  const dir = t.testdir();
  const file = join(dir, 'x.json');
  writeJsonAtomic(file, { v: 1 }, { mode: 0o600 });
  t.throws(() => writeJsonAtomic(file, { big: 1n }, { mode: 0o600 }), TypeError, 'a value JSON cannot hold throws');
  // The rename fails when the target is a directory: the temporary file must not stay behind.
  const asDir = join(dir, 'd.json');
  mkdirSync(join(asDir, 'inside'), { recursive: true });
  t.throws(() => writeJsonAtomic(asDir, { v: 2 }, { mode: 0o600 }));
  t.same(JSON.parse(readFileSync(file, 'utf8')), { v: 1 });
  t.same(readdirSync(dir).sort(), ['d.json', 'x.json']);
});
