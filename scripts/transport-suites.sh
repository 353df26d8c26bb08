#!/usr/bin/env bash
# The WebSocket and HTTP suites: the test files that exercise a transport (real relays over real
# sockets), run on both transports by scripts/test.sh and on Node 24 by scripts/test-node24.sh.
# Prints them, one a line, relative to the repository root. Serial files are never among them.
set -eu
cd "$(dirname "$0")/.."
find test/broker test/http test/transport test/e2e -name '*.test.ts' | sort
find test/reliability -maxdepth 1 -name '*.test.ts' | sort
