#!/usr/bin/env bash
# The deployment checks: lint the SAM template and build both Lambda functions as SAM would.
#
#   infra/ship.sh lint            sam validate --lint and cfn-lint on template.yaml (offline)
#   infra/ship.sh build [ARCH]    cargo lambda build --release for x86-64 (default) or arm64;
#                                 prints each bootstrap's size (target: under 15 MB; over it
#                                 is a warning) and fails if one holds a private key or a test
#                                 certificate (infra/no_test_keys.py)
#
# The tools (aws-sam-cli, cfn-lint, cargo-lambda with its zig) are installed from PyPI into a
# virtual environment under ~/.cache/pec-connector/tools when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${PEC_TOOLS_VENV:-$HOME/.cache/pec-connector/tools}"
say() { echo "infra/ship.sh: $*" >&2; }

tools() {
  if [ ! -x "$venv/bin/sam" ] || [ ! -x "$venv/bin/cfn-lint" ] || [ ! -x "$venv/bin/cargo-lambda" ]; then
    say "installing aws-sam-cli, cfn-lint and cargo-lambda into $venv"
    if ! python3 -m venv "$venv" 2>/dev/null; then
      if command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$venv"
      else
        say "python3 -m venv failed: install python3-venv"
        exit 1
      fi
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check aws-sam-cli cfn-lint cargo-lambda
  fi
  export PATH="$venv/bin:$PATH"
}

case "${1:-}" in
  lint)
    tools
    export SAM_CLI_TELEMETRY=0
    sam validate --lint --region eu-south-1 -t template.yaml
    cfn-lint template.yaml
    say "template.yaml: sam validate --lint and cfn-lint passed"
    ;;
  build)
    tools
    arch="${2:-x86-64}"
    case "$arch" in
      x86-64) flag=--x86-64 ;;
      arm64) flag=--arm64; rustup target add aarch64-unknown-linux-gnu >/dev/null ;;
      *) say "unknown architecture $arch (x86-64 or arm64)"; exit 2 ;;
    esac
    start=$(date +%s)
    cargo lambda build --release --locked "$flag" --bin poller --bin api
    say "cargo lambda build --release $flag: $(( $(date +%s) - start )) s"
    for f in poller api; do
      bin="${CARGO_TARGET_DIR:-target}/lambda/$f/bootstrap"
      size=$(stat -c %s "$bin")
      say "$f: $bin, $size bytes ($(( size / 1024 / 1024 )) MB)"
      # The target is under 15 MB (a smaller package starts faster); over it is worth a look,
      # not a failed build (Lambda accepts 250 MB unzipped).
      if [ "$size" -gt $(( 15 * 1024 * 1024 )) ]; then
        say "warning: $f is over the 15 MB target"
      fi
    done
    # Test support stays out of production: no private key, none of the sandbox's certificates.
    python3 infra/no_test_keys.py "${CARGO_TARGET_DIR:-target}/lambda/poller/bootstrap" \
      "${CARGO_TARGET_DIR:-target}/lambda/api/bootstrap"
    ;;
  *)
    echo "usage: $0 lint | build [x86-64|arm64]" >&2
    exit 2
    ;;
esac
