// Builds the dashboard into dist/dashboard: one hashed JS bundle (preact + the typed relay client),
// one hashed stylesheet, and index.html pointing at them; and the client library as plain
// JavaScript in dist/client (for `import { createRelayClient } from 'agent-relay/client'`).
// Runs on `npm ci` (prepare), `npm start` and `npm test`.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'clients', 'dashboard');
const out = join(root, 'dist', 'dashboard');
rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, 'assets'), { recursive: true });

const result = await esbuild.build({
  entryPoints: { app: join(src, 'app.tsx'), style: join(src, 'style.css') },
  bundle: true,
  minify: true,
  sourcemap: true,
  format: 'esm',
  target: ['es2022'],
  platform: 'browser',
  jsx: 'automatic',
  jsxImportSource: 'preact',
  entryNames: '[name]-[hash]',
  outdir: join(out, 'assets'),
  metafile: true,
  logLevel: 'warning',
});
const outputs = Object.keys(result.metafile.outputs).map((p) => basename(p));
const js = outputs.find((f) => f.startsWith('app-') && f.endsWith('.js'));
const css = outputs.find((f) => f.startsWith('style-') && f.endsWith('.css'));
if (!js || !css) throw new Error(`dashboard build produced no bundle: ${outputs.join(', ')}`);
const html = readFileSync(join(src, 'index.html'), 'utf8').replace('__JS__', js).replace('__CSS__', css);
writeFileSync(join(out, 'index.html'), html);
const size = (f) => readFileSync(join(out, 'assets', f)).length;
console.log(`dashboard built: ${js} (${size(js)} bytes), ${css} (${size(css)} bytes)`);

// The client library for plain JavaScript users: ESM for Node, dependencies left as imports.
await esbuild.build({
  entryPoints: [join(root, 'clients', 'index.ts')],
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: ['node20'],
  packages: 'external',
  outfile: join(root, 'dist', 'client', 'index.js'),
  logLevel: 'warning',
});
console.log('client library built: dist/client/index.js');
