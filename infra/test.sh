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
  stop_moto=1
fi
export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://127.0.0.1:$MOTO_PORT}"

# Dovecot (a real IMAPS server) on loopback for the IMAP and inbound tests; installs itself with
# apt-get when missing. Any user name logs in with the password "secret".
export DOVECOT_DIR="${DOVECOT_DIR:-${TMPDIR:-/tmp}/pec-connector-dovecot-$(id -u)}"
export IMAPS_PORT="${IMAPS_PORT:-10993}"
bash infra/dovecot.sh start "$DOVECOT_DIR"
export IMAP_HOST=localhost IMAP_PORT="$IMAPS_PORT" IMAP_CA_PEM="$DOVECOT_DIR/cert.pem"

# aiosmtpd (a real SMTPS server, implicit TLS + AUTH) on loopback for the SMTP tests, with
# Dovecot's certificate; installs itself with pip when missing. Faults are chosen by user name.
export SMTPD_DIR="${SMTPD_DIR:-${TMPDIR:-/tmp}/pec-connector-smtpd-$(id -u)}"
export SMTPS_PORT="${SMTPS_PORT:-10465}"
bash infra/smtpd.sh start "$SMTPD_DIR"
export SMTP_HOST=localhost SMTP_PORT="$SMTPS_PORT" SMTP_CA_PEM="$DOVECOT_DIR/cert.pem" \
  SMTP_SPOOL="$SMTPD_DIR/spool"

# Chromium and chromedriver for the admin console's browser tests (tests/tests/e2e/console.rs);
# installs them with apt-get when missing. The tests start chromedriver themselves.
eval "export $(bash infra/chromium.sh install | tail -n 1)"

cleanup() {
  bash infra/dovecot.sh stop "$DOVECOT_DIR" || true
  bash infra/smtpd.sh stop "$SMTPD_DIR" || true
  if [ -n "${stop_moto:-}" ]; then bash infra/moto.sh stop || true; fi
}
trap cleanup EXIT

# Everything but the timed tests, in parallel; then the timed tests (`perf_*`, which assert
# throughput figures) one at a time, so their figures are the machine's and not shared with the
# rest of the suite running beside them in the same test binary.
cargo test --workspace --locked -- --skip perf_
cargo test --workspace --locked -- perf_ --test-threads=1
