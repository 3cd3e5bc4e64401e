#!/bin/sh
# Builds the agent and runs the standalone protocol test on the host.
set -e
cd "$(dirname "$0")/.."
make -s
exec python3 test/agent_test.py build/sbx-agent
