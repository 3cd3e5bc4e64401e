#!/usr/bin/env bash
# README command 2: the whole test suite, against the real server, runtime,
# registry and SQLite. Unit tests first, then integration tests one file at
# a time (they share the host's network and mounts).
set -euo pipefail
cd "$(dirname "$0")/.."
SBX_WITH_TEST_DEPS=1 bash scripts/setup.sh

# The agent's own tests: its protocol, spoken to it directly on the host, and
# the idmapped mounts sbx-idmap makes.
make -s -C agent test test-idmap

shopt -s globstar nullglob
unit=(test/unit/*.test.ts packages/*/src/**/*.test.ts)
integration=(test/integration/*.test.ts)
# Issue 5: isolation proved from inside and outside a sandbox, exhaustion,
# crash safety (SECURITY.md maps each default to its test).
security=(test/security/*.test.ts test/reliability/*.test.ts)
exec node --import tsx --test --test-concurrency=1 --test-timeout=900000 "${unit[@]}" "${integration[@]}" "${security[@]}"
