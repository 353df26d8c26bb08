#!/usr/bin/env bash
# Runs one tap command (`scripts/tap-summary.sh npx tap ARGS...`) and, when its output goes to a
# file or pipe (CI), ends it with exactly one line "== tap summary: # { total: ..., pass: ... }":
# the last summary the run printed. .ci/run adds up these lines, one per tap run. Counting tap's
# own "# { total: ... }" lines instead over-counted once: the CI log of 7db4f51 held the first
# PostgreSQL run's summary (381) twice, seven lines apart, which made 14,700 passes read 15,081.
# (tap's terse reporter does that at times when stdout is a pipe: `npx tap FILE | cat`.)
# At a terminal the command runs as is (tap keeps its interactive reporter).
set -uo pipefail
if [ -t 1 ]; then exec "$@"; fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$@" 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
summary=$(grep -E '^# \{ total: ' "$out" | tail -n 1)
echo "== tap summary: ${summary:-none printed (exit status ${status})}"
exit "$status"
