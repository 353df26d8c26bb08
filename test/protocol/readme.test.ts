import { readFileSync } from 'node:fs';
import t from 'tap';
import { renderConfigTable } from '../../broker/config-doc.js';

t.test('README configuration table matches broker/config.ts (run npm run gen:docs)', async (t) => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  t.ok(readme.includes(renderConfigTable()), 'README table is the generated one');
});

t.test('README keeps the two quick-start commands', async (t) => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  t.match(readme, /npm ci && npm start/);
  t.match(readme, /npm ci && npm test/);
});
