import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { childEnv, ROOT, spawnChild } from '../helpers/child.js';

/**
 * The repository stands alone: no tracked file reads or links the sibling folder the contract
 * and integration notes once lived in (they are docs/PROTOCOL.md and docs/INTEGRATIONS.md now).
 * The needles are assembled here so this file does not match itself.
 */
const NEEDLES = [['..', 'shared'].join('/'), ['', 'work', 'shared'].join('/')];

t.test('no tracked file mentions the old shared folder', async (t) => {
  const git = spawnChild(t, 'git', ['ls-files', '-z'], { env: childEnv() });
  const exit = await git.exited;
  t.equal(exit.code, 0, `git ls-files ran: ${git.stderr()}`);
  const files = git.stdout().split('\0').filter(Boolean);
  t.ok(files.includes('README.md') && files.includes('docs/PROTOCOL.md'), `the listing is the repository's (${files.length} files)`);
  const offenders: string[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(join(ROOT, file), 'latin1'); // byte-for-byte, binary files too
    } catch {
      continue; // deleted in the working tree but not yet in the index
    }
    for (const needle of NEEDLES) if (text.includes(needle)) offenders.push(`${file}: ${needle}`);
  }
  t.same(offenders, [], 'nothing points outside the repository');
});
