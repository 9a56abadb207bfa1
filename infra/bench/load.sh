#!/usr/bin/env bash
# The load benchmark: `pec-connector serve` (release build, a process of its own) importing a
# backlog of N accounts x M PEC from the sandbox PEC provider into the Zendesk simulator, after
# a restart. Prints PEC imported per second, Zendesk requests and ticket updates per PEC, state
# store operations per poll, the process's CPU time and peak memory; fails unless every PEC
# became exactly one ticket. See functions/cli/examples/load_bench.rs.
#
#   infra/bench/load.sh [accounts] [messages] [attachments]     (default 200 20 0)
#
# $PEC_CONNECTOR times a binary already built instead of `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ -z "${PEC_CONNECTOR:-}" ]; then
  cargo build --release --locked --bin pec-connector
  PEC_CONNECTOR="${CARGO_TARGET_DIR:-target}/release/pec-connector"
fi
export PEC_CONNECTOR="$(cd "$(dirname "$PEC_CONNECTOR")" && pwd)/$(basename "$PEC_CONNECTOR")"
# The driver (simulators, sender) is built like the benchmarks, on the release profile.
ulimit -n 65536 2>/dev/null || true
cargo run --release --locked --example load_bench -- "$@"
