import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The folder of this package's package.json, found by walking up from this module: the same
 * answer from the TypeScript sources, from the bundles in dist/ (where this code sits in a chunk)
 * and from a global install. Files the relay reads at run time (migrations, the built dashboard)
 * are named from here, never relative to the module that reads them.
 */
export const PACKAGE_ROOT: string = findRoot(dirname(fileURLToPath(import.meta.url)));

export const RELAY_VERSION: string = (JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;

function findRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'broker', 'store', 'migrations'))) return dir;
    if (dirname(dir) === dir) throw new Error(`agent-relay: cannot find the package folder above ${from} (package.json beside broker/store/migrations)`);
  }
}
