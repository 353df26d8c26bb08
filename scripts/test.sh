#!/usr/bin/env bash
# `npm test`: every *.test.ts file, two at a time (.taprc), then the WebSocket and HTTP suites
# (scripts/transport-suites.sh) again on the portable transport, then the *.serial.ts files one at
# a time. The serial ones compare latency with and without a disturbance (a fuzzer, a flood, a
# slow consumer) or run minutes of load (the soak); on a 2-core machine another test file beside
# them measures that file, not the relay. First the import-layer check (npm run lint:layers, about
# 2 s: .dependency-cruiser.cjs). All runs always happen; the exit status fails if any did.
# With arguments (`npm test -- test/store/`), it is plain tap over what you named.
set -u
cd "$(dirname "$0")/.."
if [ "$#" -gt 0 ]; then exec npx tap "$@"; fi

npm run --silent lint:layers
layers=$?
# The coverage summary (.taprc) is this run's; the two runs after it have none (tap clears the
# previous run's coverage data when it starts, and the serial files measure latency, which the
# instrumentation would skew).
npx tap
parallel=$?
# Its per-file table, kept before the next run clears the data (coverage/ is not committed).
mkdir -p coverage && npx tap report text > coverage/npm-test.txt 2>&1
# The WebSocket and HTTP suites again on the portable transport (node:http + ws), which runs where
# no native uWebSockets.js build loads (Node 24 on glibc < 2.38): about 3 minutes on 2 cores.
AGENT_RELAY_TEST_TRANSPORT=node npx tap --disable-coverage $(bash scripts/transport-suites.sh)
portable=$?
mapfile -t serial < <(find test -name '*.serial.ts' | sort)
npx tap --disable-coverage --jobs=1 "${serial[@]}"
alone=$?
[ "$layers" -eq 0 ] && [ "$parallel" -eq 0 ] && [ "$portable" -eq 0 ] && [ "$alone" -eq 0 ]
