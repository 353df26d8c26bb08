import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { UwsModule } from './uws-server.js';

const require = createRequire(import.meta.url);

export interface UwsCandidate {
  /** The name it is installed under (package.json dependency key). */
  pkg: string;
  /** Where its native binaries sit, from the folder of its entry file. */
  binaries: (entryDir: string) => string;
}

/**
 * Native uWebSockets.js builds, best first. Each entry file requires
 * `uws_<platform>_<arch>_<ABI>.node`; the trufflesuite one, when that fails, silently returns a
 * pure-JS imitation that is not a server (it crashes on the first request with "Not
 * implemented"). So the binary is required directly, never the entry file: a fallback cannot be
 * picked.
 */
export const UWS_CANDIDATES: readonly UwsCandidate[] = [
  // Binaries for ABIs 115/127/137/141 (Node 20–25) but linked against glibc ≥ 2.38.
  { pkg: '@btc-vision/uwebsockets.js', binaries: (dir) => dir },
  // Binaries for ABIs 93/108/115 (Node 16–20), glibc ≥ 2.36. Installed as the alias uWebSockets.js.
  { pkg: 'uWebSockets.js', binaries: (dir) => join(dir, '..', 'binaries') },
];

export interface UwsBuild {
  module: UwsModule;
  /** The package's own name and version (the alias resolves to @trufflesuite/uws-js-unofficial). */
  name: string;
  version: string;
  abi: string;
}

export interface UwsLoad {
  build: UwsBuild | null;
  /** Why each candidate tried before the one that loaded (or every one) was refused. */
  refusals: Array<{ pkg: string; reason: string }>;
}

/** "Node v24.1.0 ABI 137, linux-x64, glibc 2.36": what a native build has to match. */
export function describePlatform(abi = process.versions.modules): string {
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  const libc = header?.glibcVersionRuntime ? `, glibc ${header.glibcVersionRuntime}` : '';
  return `Node ${process.version} ABI ${abi}, ${process.platform}-${process.arch}${libc}`;
}

function packageOf(entry: string): { name: string; version: string } {
  for (let dir = dirname(entry); dir !== dirname(dir); dir = dirname(dir)) {
    const file = join(dir, 'package.json');
    if (!existsSync(file)) continue;
    const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
    if (pkg.name) return { name: pkg.name, version: pkg.version ?? '?' };
  }
  return { name: '?', version: '?' };
}

/** A load failure in a few words: the missing glibc symbol version, the ABI, or the first line. */
function reasonOf(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  const glibc = /`(GLIBC_[\d.]+)' not found/.exec(text);
  if (glibc) return `needs ${glibc[1]}`;
  if (/NODE_MODULE_VERSION/.test(text)) return 'binary built for another Node ABI';
  return text.split('\n')[0]!.slice(0, 200);
}

/**
 * A native build, not a JS imitation: the trufflesuite fallback exports the same names (App,
 * us_listen_socket_close, us_socket_local_port), but its functions are JavaScript.
 */
export function isNativeServer(mod: Partial<UwsModule>): boolean {
  const native = (f: unknown) => typeof f === 'function' && Function.prototype.toString.call(f).includes('[native code]');
  return native(mod.App) && native(mod.us_listen_socket_close) && native(mod.us_socket_local_port);
}

/** Try one candidate: its module, or why not. */
function tryCandidate(c: UwsCandidate, abi: string): UwsBuild | string {
  let entry: string;
  try {
    entry = require.resolve(c.pkg);
  } catch {
    return 'not installed';
  }
  const file = join(c.binaries(dirname(entry)), `uws_${process.platform}_${process.arch}_${abi}.node`);
  if (!existsSync(file)) return `no binary for ABI ${abi} on ${process.platform}-${process.arch}`;
  let mod: Partial<UwsModule>;
  try {
    mod = require(file) as Partial<UwsModule>;
  } catch (err) {
    return reasonOf(err);
  }
  if (!isNativeServer(mod)) return 'binary loaded but is not a native uWebSockets.js server';
  return { module: mod as UwsModule, ...packageOf(entry), abi };
}

/**
 * Load the first native uWebSockets.js build that works on this platform and Node ABI. `abi`
 * defaults to this process's; another value only looks for that ABI's binary (tests use it to see
 * what a Node 24 process would get), and requiring it on the wrong ABI would fail with that reason.
 */
export function loadUws(candidates: readonly UwsCandidate[] = UWS_CANDIDATES, abi = process.versions.modules): UwsLoad {
  const refusals: UwsLoad['refusals'] = [];
  for (const c of candidates) {
    const got = tryCandidate(c, abi);
    if (typeof got !== 'string') return { build: got, refusals };
    refusals.push({ pkg: c.pkg, reason: got });
  }
  return { build: null, refusals };
}
