#!/usr/bin/env bash
# `npm test`: every *.test.ts file, two at a time (.taprc), then the *.serial.ts files one at a
# time. The serial ones compare latency with and without a disturbance (a fuzzer, a flood, a slow
# consumer) or run minutes of load (the soak); on a 2-core machine another test file beside them
# measures that file, not the relay. Both runs always happen; the exit status fails if either did.
# With arguments (`npm test -- test/store/`), it is plain tap over what you named.
set -u
cd "$(dirname "$0")/.."
if [ "$#" -gt 0 ]; then exec npx tap "$@"; fi

npx tap
parallel=$?
mapfile -t serial < <(find test -name '*.serial.ts' | sort)
npx tap --jobs=1 "${serial[@]}"
alone=$?
[ "$parallel" -eq 0 ] && [ "$alone" -eq 0 ]
