#!/usr/bin/env bash
# `npm test`: every *.test.ts file, two at a time (.taprc), then the *.serial.ts files one at
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
# The coverage summary (.taprc) is this run's; the serial run after it has none (tap clears the
# previous run's coverage data when it starts, and the serial files measure latency, which the
# instrumentation would skew).
bash scripts/tap-summary.sh npx tap
parallel=$?
# Its per-file table, kept before the next run clears the data (coverage/ is not committed).
mkdir -p coverage && npx tap report text > coverage/npm-test.txt 2>&1
# The portable transport (node:http + ws) is not run again here: .ci/run's Node 24 run
# (scripts/test-node24.sh) runs the WebSocket and HTTP suites on it, as no native uWebSockets.js
# build loads there (glibc < 2.38). `npm run test:portable` runs them on it with this Node.
mapfile -t serial < <(find test -name '*.serial.ts' | sort)
bash scripts/tap-summary.sh npx tap --disable-coverage --jobs=1 "${serial[@]}"
alone=$?
[ "$layers" -eq 0 ] && [ "$parallel" -eq 0 ] && [ "$alone" -eq 0 ]
