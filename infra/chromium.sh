#!/usr/bin/env bash
# A real browser for the admin console's tests: Debian's headless-capable Chromium and its
# WebDriver server, chromedriver.
#
#   infra/chromium.sh install   install (apt) if missing; prints CHROMEDRIVER=<path>
#
# The tests (tests/tests/e2e/console.rs) start chromedriver themselves on a free loopback port,
# one per test, and drive Chromium headless through it; they read CHROMEDRIVER (default: the
# chromedriver on PATH).
set -euo pipefail

cmd="${1:-install}"

install() {
  if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    return
  fi
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver fonts-dejavu-core >/dev/null
}

case "$cmd" in
  install)
    install
    echo "CHROMEDRIVER=$(command -v chromedriver)"
    ;;
  *)
    echo "usage: $0 install" >&2
    exit 2
    ;;
esac
