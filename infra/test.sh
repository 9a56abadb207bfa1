#!/usr/bin/env bash
# The project's test command (the README's): starts the local test services it needs and runs
# every test of the workspace. Usable by a developer and by CI (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

# moto server (AWS API emulator) on loopback for the AWS adapter tests; stopped on exit if we
# started it. Installs itself into a venv under ~/.cache/pec-connector when missing.
export MOTO_PORT="${MOTO_PORT:-5000}"
if bash infra/moto.sh status 2>/dev/null; then
  echo "using the moto server already answering on port $MOTO_PORT"
else
  bash infra/moto.sh start
  trap 'bash infra/moto.sh stop' EXIT
fi
export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://127.0.0.1:$MOTO_PORT}"

cargo test --workspace
