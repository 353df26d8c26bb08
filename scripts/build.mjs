// `npm run build`: everything the package runs with plain node, into dist/.
// - dist/bin/agent-relay.js, dist/bin/codex-relay.js, dist/broker/main.js (npm start) and
//   dist/client/index.js (`import ... from 'agent-relay-broker/client'`): ESM bundles with source
//   maps, dependencies left as imports, code shared between them in dist/chunks/. Each command loads
//   only what it needs: the relay (uWS, SQLite) is a chunk of its own that `serve` imports.
// - dist/dashboard: one hashed JS bundle (preact + the typed relay client), one hashed
//   stylesheet, and index.html pointing at them.
// - dist/types: the client library's declarations (tsc), for `agent-relay-broker/client`.
// Runs on `npm ci` and `npm pack` (prepare), and before `npm start`, `npm test` and the benchmarks.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
rmSync(dist, { recursive: true, force: true });

await esbuild.build({
  entryPoints: {
    'bin/agent-relay': join(root, 'bin', 'entries', 'agent-relay.ts'),
    'bin/codex-relay': join(root, 'bin', 'entries', 'codex-relay.ts'),
    'broker/main': join(root, 'broker', 'main.ts'),
    // The store's writer thread (a worker_threads entry; broker/store/store.ts names this file).
    'broker/store-writer': join(root, 'broker', 'store', 'writer-thread.ts'),
    // Its search thread (message/search off the event loop; broker/store/search-client.ts).
    'broker/store-search': join(root, 'broker', 'store', 'search-thread.ts'),
    'client/index': join(root, 'clients', 'index.ts'),
  },
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: ['node20'],
  packages: 'external',
  sourcemap: true,
  outdir: dist,
  chunkNames: 'chunks/[name]-[hash]',
  logLevel: 'warning',
});
console.log('built dist/bin/agent-relay.js, dist/bin/codex-relay.js, dist/broker/main.js, dist/broker/store-writer.js, dist/broker/store-search.js, dist/client/index.js');

const src = join(root, 'clients', 'dashboard');
const out = join(dist, 'dashboard');
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

execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.client.json')], { stdio: 'inherit' });
console.log('client declarations built: dist/types/clients/index.d.ts');
