#!/usr/bin/env bash
# The project's test command (the README's): starts the local test services it needs and runs
# every test of the workspace. Usable by a developer and by CI (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace --locked
