#!/usr/bin/env bash
# A real SMTPS server for tests: aiosmtpd (infra/smtpd.py) on 127.0.0.1 with implicit TLS and AUTH.
#
#   infra/smtpd.sh start [DIR]   install aiosmtpd if missing, start, wait until it listens; prints env
#   infra/smtpd.sh stop  [DIR]
#
# Any user logs in with the password "secret"; faults (535, 5.7.1, 452, stalls, 552, a drop after
# DATA, unknown recipient) are chosen by the user name, see infra/smtpd.py. Accepted messages land
# in DIR/spool. The certificate is Dovecot's test certificate ($DOVECOT_DIR/cert.pem) when there is
# one, else a CA:FALSE self-signed one made in DIR. aiosmtpd goes into the venv infra/moto.sh
# uses ($PEC_CONNECTOR_CACHE/moto-venv) unless python3 already has it.
# Tests read SMTP_HOST/SMTP_PORT/SMTP_CA_PEM/SMTP_SPOOL (exported by infra/test.sh).
set -euo pipefail

cmd="${1:-start}"
dir="${2:-${SMTPD_DIR:-${TMPDIR:-/tmp}/pec-connector-smtpd-$(id -u)}}"
port="${SMTPS_PORT:-10465}"
dovecot_dir="${DOVECOT_DIR:-${TMPDIR:-/tmp}/pec-connector-dovecot-$(id -u)}"
cache="${PEC_CONNECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pec-connector}"
venv="$cache/moto-venv"
here="$(cd "$(dirname "$0")" && pwd)"

say() { echo "smtpd: $*" >&2; }

python_with_aiosmtpd() {
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import aiosmtpd' 2>/dev/null; then
    echo "$venv/bin/python"
  elif python3 -c 'import aiosmtpd' 2>/dev/null; then
    command -v python3
  else
    return 1
  fi
}

install() {
  python_with_aiosmtpd >/dev/null && return 0
  say "installing aiosmtpd into $venv"
  mkdir -p "$cache"
  if [ ! -x "$venv/bin/pip" ] && ! python3 -m venv "$venv" >/dev/null 2>&1; then
    rm -rf "$venv"
    # Debian ships venv/ensurepip separately.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv "$venv"
    else
      say "python3 -m venv failed: install python3-venv (Debian: sudo apt-get install python3-venv)"
      exit 1
    fi
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'aiosmtpd>=1.4,<1.5'
}

certificate() {
  if [ -f "$dovecot_dir/cert.pem" ] && [ -f "$dovecot_dir/key.pem" ]; then
    cert="$dovecot_dir/cert.pem"; key="$dovecot_dir/key.pem"
    return
  fi
  cert="$dir/cert.pem"; key="$dir/key.pem"
  if [ ! -f "$cert" ]; then
    # CA:FALSE: rustls refuses a CA certificate used as an end-entity certificate.
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$key" -out "$cert" \
      -days 3650 -subj "/CN=localhost" \
      -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
      -addext "basicConstraints=critical,CA:FALSE" -addext "extendedKeyUsage=serverAuth" 2>/dev/null
    chmod 0644 "$cert"
  fi
}

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

case "$cmd" in
  start)
    mkdir -p "$dir/spool"
    dir="$(cd "$dir" && pwd)"
    certificate
    if [ -f "$dir/smtpd.pid" ] && kill -0 "$(cat "$dir/smtpd.pid")" 2>/dev/null; then
      say "already running ($dir)"
    else
      install
      py="$(python_with_aiosmtpd)"
      # Own process group, so `stop` ends the server and nothing else.
      setsid "$py" "$here/smtpd.py" --host 127.0.0.1 --port "$port" --cert "$cert" --key "$key" \
        --spool "$dir/spool" >"$dir/smtpd.log" 2>&1 </dev/null &
      echo $! >"$dir/smtpd.pid"
      for _ in $(seq 1 100); do
        listening && break
        kill -0 "$(cat "$dir/smtpd.pid")" 2>/dev/null || break
        sleep 0.1
      done
      listening || { say "did not start; log:"; cat "$dir/smtpd.log" >&2; exit 1; }
    fi
    echo "SMTP_HOST=localhost SMTP_PORT=$port SMTP_CA_PEM=$cert SMTP_SPOOL=$dir/spool"
    ;;
  stop)
    if [ -f "$dir/smtpd.pid" ]; then
      pid="$(cat "$dir/smtpd.pid")"
      if kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 25); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL -- "-$pid" 2>/dev/null || true
      fi
      rm -f "$dir/smtpd.pid"
    fi
    ;;
  *)
    echo "usage: $0 start|stop [DIR]" >&2
    exit 2
    ;;
esac
