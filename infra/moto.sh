#!/usr/bin/env bash
# moto server: the AWS API emulator (DynamoDB, Secrets Manager, EventBridge rules and Scheduler)
# the tests reach through the real AWS SDK. Listens on loopback only.
#
#   infra/moto.sh install   install moto[server] into a venv under the cache dir, if missing
#   infra/moto.sh start     install if needed, start on 127.0.0.1:$MOTO_PORT, wait until ready
#   infra/moto.sh stop      stop the server this script started
#   infra/moto.sh status    say whether a server answers
#
# Environment: MOTO_PORT (default 5000); PEC_CONNECTOR_CACHE (default ~/.cache/pec-connector)
# holds the venv, the pid file and the log. If something already answers on the port as moto,
# `start` reuses it and `stop` leaves it alone. Tests then need
#   AWS_ENDPOINT_URL=http://127.0.0.1:$MOTO_PORT   (the tests' default)
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
PORT="${MOTO_PORT:-5000}"
CACHE="${PEC_CONNECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pec-connector}"
VENV="$CACHE/moto-venv"
RUN="$CACHE/moto-$PORT"
PIDFILE="$RUN/moto.pid"
LOG="$RUN/moto.log"
URL="http://127.0.0.1:$PORT"
MOTO_SPEC="${MOTO_SPEC:-moto[server]>=5.0,<6}"

say() { echo "moto: $*" >&2; }

answers() {
  # moto's own API, not just any HTTP server on the port (python3, not curl: a fresh Debian
  # machine may have no curl).
  python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
    "$URL/moto-api/" >/dev/null 2>&1
}

# The Python that has moto: the venv's if installed there, else the system's.
moto_python() {
  local py
  for py in "$VENV/bin/python3" python3; do
    if "$py" -c 'import moto.server, werkzeug' >/dev/null 2>&1; then
      command -v "$py"
      return 0
    fi
  done
  return 1
}

install() {
  if moto_python >/dev/null; then
    return 0
  fi
  say "installing $MOTO_SPEC into $VENV"
  mkdir -p "$CACHE"
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    rm -rf "$VENV"
    # Debian ships venv/ensurepip separately.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      say "python3 -m venv failed; installing python3-venv"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv "$VENV"
    else
      say "python3 -m venv failed: install python3-venv (Debian: sudo apt-get install python3-venv)"
      exit 1
    fi
  fi
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "$MOTO_SPEC"
  say "installed $("$VENV/bin/pip" show moto 2>/dev/null | sed -n 's/^Version: /moto /p')"
}

start() {
  if answers; then
    say "already answering at $URL (not started by this script, left as is)"
    return 0
  fi
  install
  local py
  py="$(moto_python)"
  mkdir -p "$RUN"
  # Own process group, so `stop` ends the server and nothing else. moto_server.py: moto's
  # application one request at a time, so conditional writes are atomic as in DynamoDB.
  setsid "$py" "$HERE/moto_server.py" 127.0.0.1 "$PORT" >"$LOG" 2>&1 < /dev/null &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 150); do
    if answers; then
      say "started at $URL (pid $(cat "$PIDFILE"), log $LOG)"
      return 0
    fi
    if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
      say "exited at start; log:"; cat "$LOG" >&2; rm -f "$PIDFILE"; exit 1
    fi
    sleep 0.2
  done
  say "did not answer at $URL within 30 s; log:"; cat "$LOG" >&2
  stop
  exit 1
}

stop() {
  if [ -f "$PIDFILE" ]; then
    local pid
    pid="$(cat "$PIDFILE")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 25); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -KILL -- "-$pid" 2>/dev/null || true
      say "stopped (pid $pid)"
    fi
    rm -f "$PIDFILE"
  fi
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) if answers; then say "answering at $URL"; else say "not answering at $URL"; exit 1; fi ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
