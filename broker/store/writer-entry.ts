import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { PACKAGE_ROOT } from '../package-root.js';

/** The store's worker threads: the writer, and the search reader. */
const THREADS = {
  writer: { source: './writer-thread.ts', built: 'store-writer' },
  search: { source: './search-thread.ts', built: 'store-search' },
} as const;

/**
 * The file one of the store's threads runs, and the flags it runs with.
 *
 * - Built (dist/, `npm start`, an installed package): dist/broker/store-writer.js (or
 *   store-search.js), which scripts/build.mjs bundles from writer-thread.ts (search-thread.ts);
 *   the worker inherits the process's flags.
 * - From the TypeScript sources (tests under tap's loader, tsx): the thread's file bundled now, by
 *   the same esbuild the build uses, once per process, into node_modules/.cache/agent-relay/ (named
 *   by its content, so it is never stale; npm packages resolve from there), and run without the
 *   parent's loaders. A worker given the .ts file itself works too (workers inherit the loader
 *   flags) but starts in about 1.9 s under tap's loader, against some 50 ms for the bundle.
 */
export async function workerEntry(thread: keyof typeof THREADS): Promise<{ url: URL; execArgv: string[] | undefined }> {
  const { source, built } = THREADS[thread];
  if (!import.meta.url.endsWith('.ts')) return { url: pathToFileURL(join(PACKAGE_ROOT, 'dist', 'broker', `${built}.js`)), execArgv: undefined };
  let entry = devEntries.get(thread);
  if (!entry) devEntries.set(thread, (entry = bundleFromSources(source, built)));
  return { url: await entry, execArgv: [] };
}

const devEntries = new Map<keyof typeof THREADS, Promise<URL>>();

async function bundleFromSources(source: string, built: string): Promise<URL> {
  const { buildSync } = await import('esbuild');
  const out = buildSync({
    entryPoints: [fileURLToPath(new URL(source, import.meta.url))],
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: ['node20'],
    packages: 'external',
    sourcemap: 'inline',
    write: false,
    logLevel: 'silent',
  });
  const text = out.outputFiles[0]!.text;
  const dir = join(PACKAGE_ROOT, 'node_modules', '.cache', 'agent-relay');
  const file = join(dir, `${built}-${createHash('sha256').update(text).digest('hex').slice(0, 16)}.mjs`);
  if (!existsSync(file)) {
    mkdirSync(dir, { recursive: true });
    // Written aside and renamed: processes starting together never run a half-written file.
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, text);
    renameSync(tmp, file);
  }
  return pathToFileURL(file);
}
