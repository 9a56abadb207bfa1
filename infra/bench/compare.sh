#!/usr/bin/env bash
# Parses the PEC sample corpus with this crate and with Python's `email` package (the parser most
# PEC tools use) doing the same work, and prints how many times faster Rust is.
# `infra/bench/compare.sh [iterations]`; samples from $PEC_SAMPLES_DIR (default ../shared/pec-samples).
set -euo pipefail
cd "$(dirname "$0")/../.."

export BENCH_ITERATIONS="${1:-${BENCH_ITERATIONS:-200}}"
if [ -z "${PEC_SAMPLES_DIR:-}" ]; then
  PEC_SAMPLES_DIR="$(cd ../shared/pec-samples && pwd)"
fi
export PEC_SAMPLES_DIR

rust_out="$(cargo bench -q -p pec --bench parse -- corpus)"
echo "$rust_out"
python_out="$(python3 infra/bench/python_email.py "$PEC_SAMPLES_DIR")"
echo "$python_out"

number() { sed -n "s/^$1: \([0-9.]*\) us\$/\1/p"; }
rust_us="$(number per-message <<<"$rust_out")"
rust_same_us="$(number per-message-without-signature <<<"$rust_out")"
python_us="$(number per-message <<<"$python_out")"
awk -v r="$rust_us" -v s="$rust_same_us" -v p="$python_us" 'BEGIN {
  full = p / r
  same = p / s
  printf "== python %.1f us/message\n", p
  printf "== rust, parse with the S/MIME check (Python does none): %.1f us/message, %.1fx faster [%s >= 5x]\n",
    r, full, (full >= 5 ? "PASS" : "FAIL")
  printf "== rust, the same work as Python (without the S/MIME check): %.1f us/message, %.1fx faster [%s >= 5x]\n",
    s, same, (same >= 5 ? "PASS" : "FAIL")
  exit (same >= 5 ? 0 : 1)
}'
