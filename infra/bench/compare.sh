#!/usr/bin/env bash
# What ships against what most PEC tools use: the release `pec-connector inspect` (signatures
# checked, JSON printed) and Python's `email` package doing less (python_email.py --once: parse
# only, no signature check) on the same .eml files, as whole processes started the same way, in
# turns. Prints microseconds per message for one process for the whole corpus (the acceptance:
# PASS when Rust is at least 5x faster), one process per file, and after start; exit status 1 on
# FAIL. See inspect_vs_python.py.
#
#   infra/bench/compare.sh [rounds]     (default 10)
#
# Samples from $PEC_SAMPLES_DIR (default ../shared/pec-samples). $PEC_CONNECTOR times a binary
# already built instead of `cargo build --release --locked --bin pec-connector`. $PYTHON chooses
# the interpreter; the default is the distribution's /usr/bin/python3 when there is one (built
# with PGO, started without a shim: pyenv's shim adds some 150 ms to every start and its default
# build parses at half the speed, which would flatter Rust), else python3's own executable.
set -euo pipefail
cd "$(dirname "$0")/../.."

rounds="${1:-10}"
if [ -z "${PEC_SAMPLES_DIR:-}" ]; then
  PEC_SAMPLES_DIR="$(cd ../shared/pec-samples && pwd)"
fi
if [ -z "${PEC_CONNECTOR:-}" ]; then
  cargo build -q --release --locked --bin pec-connector
  PEC_CONNECTOR="${CARGO_TARGET_DIR:-target}/release/pec-connector"
fi
if [ -z "${PYTHON:-}" ]; then
  if [ -x /usr/bin/python3 ]; then
    PYTHON=/usr/bin/python3
  else
    PYTHON="$(python3 -c 'import sys; print(sys.executable)')"
  fi
fi
exec "$PYTHON" infra/bench/inspect_vs_python.py --inspect "$PEC_CONNECTOR" --python "$PYTHON" \
  --samples "$PEC_SAMPLES_DIR" --rounds "$rounds"
