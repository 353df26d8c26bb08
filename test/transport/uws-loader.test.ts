import t from 'tap';
import { chooseTransport } from '../../broker/transport/index.js';
import { isNativeServer, loadUws, UWS_CANDIDATES } from '../../broker/transport/uws-loader.js';
import { createRequire } from 'node:module';

/**
 * Real loading on this machine, no stand-ins: which native uWebSockets.js build loads depends on
 * the Node ABI and the glibc version, so the expectations are computed from both. The btc-vision
 * build needs glibc ≥ 2.38; the trufflesuite build has binaries for ABIs 93/108/115 only.
 */

const require = createRequire(import.meta.url);
const glibc = (process.report.getReport() as { header: { glibcVersionRuntime?: string } }).header.glibcVersionRuntime;
const [major, minor] = (glibc ?? '0.0').split('.').map(Number) as [number, number];
const oldGlibc = process.platform === 'linux' && glibc !== undefined && (major < 2 || (major === 2 && minor < 38));
const abi = process.versions.modules;
const trufflesuiteAbis = ['93', '108', '115'];

t.test('on this Node and glibc, the first build that really loads is chosen, with a reason for each one skipped', async (t) => {
  const load = loadUws();
  if (oldGlibc) {
    t.same(load.refusals[0], { pkg: '@btc-vision/uwebsockets.js', reason: 'needs GLIBC_2.38' }, 'btc-vision is refused for its glibc');
    if (trufflesuiteAbis.includes(abi)) {
      t.equal(load.build?.name, '@trufflesuite/uws-js-unofficial', 'the trufflesuite build loads');
      t.equal(load.build?.abi, abi);
      t.equal(load.refusals.length, 1);
    } else {
      t.equal(load.build, null, `no build loads on ABI ${abi}`);
      t.same(load.refusals[1], { pkg: 'uWebSockets.js', reason: `no binary for ABI ${abi} on ${process.platform}-${process.arch}` });
    }
  } else {
    t.equal(load.build?.name, '@btc-vision/uwebsockets.js', 'with glibc ≥ 2.38 the btc-vision build loads first');
    t.same(load.refusals, []);
  }
  if (load.build) t.ok(isNativeServer(load.build.module), 'what loaded is native code');
});

t.test('what a Node 24 process (ABI 137) would find: no trufflesuite binary at all', async (t) => {
  const load = loadUws(UWS_CANDIDATES, '137');
  t.same(
    load.refusals.find((r) => r.pkg === 'uWebSockets.js'),
    { pkg: 'uWebSockets.js', reason: `no binary for ABI 137 on ${process.platform}-${process.arch}` },
  );
  if (oldGlibc) t.same(load.refusals[0], { pkg: '@btc-vision/uwebsockets.js', reason: 'needs GLIBC_2.38' });
});

t.test('the trufflesuite JS fallback is never taken for a native build', async (t) => {
  // Its entry file returns the fallback when asked (or when its binary fails); the loader requires the binary itself.
  const before = process.env.UWS_USE_FALLBACK;
  process.env.UWS_USE_FALLBACK = '1';
  t.teardown(() => {
    if (before === undefined) delete process.env.UWS_USE_FALLBACK;
    else process.env.UWS_USE_FALLBACK = before;
  });
  const fallback = require('uWebSockets.js/dist/index.js') as Record<string, unknown>;
  t.equal(typeof fallback.App, 'function', 'the fallback has the same names');
  t.notOk(isNativeServer(fallback), 'but is recognised as not native');
  const load = loadUws([{ pkg: 'uWebSockets.js', binaries: UWS_CANDIDATES[1]!.binaries }]);
  if (trufflesuiteAbis.includes(abi)) t.ok(load.build && isNativeServer(load.build.module), 'the native binary loads despite UWS_USE_FALLBACK');
  else t.equal(load.build, null, 'no binary for this ABI: nothing, rather than the fallback');
});

t.test('a candidate that is not installed is refused as such', async (t) => {
  const load = loadUws([{ pkg: 'uwebsockets-not-installed.js', binaries: (d) => d }]);
  t.same(load, { build: null, refusals: [{ pkg: 'uwebsockets-not-installed.js', reason: 'not installed' }] });
});

t.test('selection: node never loads uWS; auto falls back to node naming each reason; uws refuses to start', async (t) => {
  let loads = 0;
  const none = () => {
    loads++;
    return loadUws(UWS_CANDIDATES, '137');
  };
  t.same(chooseTransport('node', none), { kind: 'node', why: 'AGENT_RELAY_TRANSPORT=node' });
  t.equal(loads, 0, 'the node setting does not even try to load uWS');

  const auto = chooseTransport('auto', none);
  t.equal(auto.kind, 'node');
  t.match(auto.why, new RegExp(`^no native uWebSockets\\.js build for Node v[\\d.]+ ABI ${abi}, `), "the platform named is this process's");
  t.match(auto.why, `uWebSockets.js: no binary for ABI 137`);

  t.throws(() => chooseTransport('uws', none), {
    message:
      /^AGENT_RELAY_TRANSPORT=uws, but no native uWebSockets\.js build loads on Node .*@btc-vision\/uwebsockets\.js: .*; uWebSockets\.js: no binary for ABI 137 on .*Set AGENT_RELAY_TRANSPORT=auto or node/,
  });

  const real = chooseTransport('auto');
  t.equal(real.kind, oldGlibc && !trufflesuiteAbis.includes(abi) ? 'node' : 'uws', 'auto on this machine');
});
