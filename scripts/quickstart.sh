#!/usr/bin/env bash
# README command 1: set up, start the server on its embedded defaults, run
# python3 in a fresh sandbox, print what it printed, stop the server.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

log=$(mktemp /tmp/sbx-serve.XXXXXX.log)
# The malloc setting is the one the sbx bin's shebang makes (packages/cli/src/main.ts).
MALLOC_TRIM_THRESHOLD_=16777216 node packages/cli/dist/main.js serve >"$log" 2>&1 &
server=$!
# The server's log is kept only when something failed, and its path is said.
stop() {
  local rc=$?
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  if [ "$rc" -eq 0 ]; then rm -f "$log"; else echo "quickstart: the server's log is $log" >&2; fi
}
trap stop EXIT

for _ in $(seq 1 600); do
  grep -q "sbx listening on" "$log" && break
  if ! kill -0 "$server" 2>/dev/null; then cat "$log" >&2; exit 1; fi
  sleep 0.2
done
grep -q "sbx listening on" "$log" || { cat "$log" >&2; echo "quickstart: the server did not start" >&2; exit 1; }

# The first run builds the Debian base image (about a minute), later ones reuse it.
node packages/cli/dist/main.js run -- python3 -c "print('hello')"
