#!/usr/bin/env bash
# `npm run test:postgres`: the PostgreSQL profile. First test/postgres/ (the store contract on
# PostgreSQL and what is PostgreSQL's own: ids in commit order across writers, restarts, lost
# replies, timeouts), two files at a time, each with its own throwaway server; then alone, one after
# the other, failures.test.ts (it measures how soon timeouts cut a frozen transaction) and
# cluster-faults.test.ts (a minute of load on three nodes under faults, timing the survivors' stall). Then relay suites
# again with every relay on PostgreSQL (AGENT_RELAY_TEST_STORE=postgres: test/helpers/relay.ts),
# one server per test file. The suites are those whose assertions hold on any store; suites that
# read the SQLite file itself, or SQLite's PRAGMAs and faults, run only in `npm test`.
set -u
cd "$(dirname "$0")/.."
mapfile -t own_files < <(find test/postgres -name '*.test.ts' ! -name 'failures.test.ts' ! -name 'cluster-faults.test.ts' | sort)
bash scripts/tap-summary.sh npx tap --disable-coverage --jobs=2 "${own_files[@]}"
own=$?
bash scripts/tap-summary.sh npx tap --disable-coverage --jobs=1 test/postgres/failures.test.ts test/postgres/cluster-faults.test.ts
timeouts=$?
suites=(
  test/broker/smoke.test.ts
  test/broker/message-routing.test.ts
  test/broker/task-claim.test.ts
  test/broker/task-dedupe.test.ts
  test/broker/delivery-states.test.ts
  test/broker/delivery-spans.test.ts
  test/broker/threads-read-markers.test.ts
  test/broker/read-rule.test.ts
  test/broker/presence.test.ts
  test/broker/register-close-race.test.ts
  test/broker/batch-order.test.ts
  test/broker/agent-authority.test.ts
  test/broker/leases.test.ts
  test/broker/pruning.test.ts
  test/http/sse.test.ts
  test/http/callbacks.test.ts
  test/http/inbox-longpoll.test.ts
  test/http/rest.test.ts
  test/http/rpc-http.test.ts
)
AGENT_RELAY_TEST_STORE=postgres bash scripts/tap-summary.sh npx tap --disable-coverage --jobs=2 "${suites[@]}"
relays=$?
[ "$own" -eq 0 ] && [ "$timeouts" -eq 0 ] && [ "$relays" -eq 0 ]
