import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { PACKAGE_ROOT } from '../package-root.js';

/**
 * The file the store's writer thread runs, and the flags it runs with.
 *
 * - Built (dist/, `npm start`, an installed package): dist/broker/store-writer.js, which
 *   scripts/build.mjs bundles from writer-thread.ts; the worker inherits the process's flags.
 * - From the TypeScript sources (tests under tap's loader, tsx): writer-thread.ts bundled now, by
 *   the same esbuild the build uses, once per process, into node_modules/.cache/agent-relay/ (named
 *   by its content, so it is never stale; npm packages resolve from there), and run without the
 *   parent's loaders. A worker given the .ts file itself works too (workers inherit the loader
 *   flags) but starts in about 1.9 s under tap's loader, against some 50 ms for the bundle.
 */
export async function writerEntry(): Promise<{ url: URL; execArgv: string[] | undefined }> {
  if (!import.meta.url.endsWith('.ts')) return { url: pathToFileURL(join(PACKAGE_ROOT, 'dist', 'broker', 'store-writer.js')), execArgv: undefined };
  devEntry ??= bundleFromSources();
  return { url: await devEntry, execArgv: [] };
}

let devEntry: Promise<URL> | undefined;

async function bundleFromSources(): Promise<URL> {
  const { buildSync } = await import('esbuild');
  const out = buildSync({
    entryPoints: [fileURLToPath(new URL('./writer-thread.ts', import.meta.url))],
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
  const file = join(dir, `store-writer-${createHash('sha256').update(text).digest('hex').slice(0, 16)}.mjs`);
  if (!existsSync(file)) {
    mkdirSync(dir, { recursive: true });
    // Written aside and renamed: processes starting together never run a half-written file.
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, text);
    renameSync(tmp, file);
  }
  return pathToFileURL(file);
}
