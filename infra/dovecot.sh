#!/usr/bin/env bash
# A real IMAPS server for tests: Dovecot on 127.0.0.1 with a self-signed certificate.
#
#   infra/dovecot.sh start [DIR]   install (apt) if missing, configure in DIR, start; prints env
#   infra/dovecot.sh stop  [DIR]
#
# Any user name logs in with the password "secret" (static passdb), each with its own Maildir,
# so every test can use a mailbox of its own. Other passwords are refused, for login-failure tests.
# Tests read IMAP_HOST/IMAP_PORT/IMAP_CA_PEM (exported by infra/test.sh).
set -euo pipefail

cmd="${1:-start}"
dir="${2:-${DOVECOT_DIR:-${TMPDIR:-/tmp}/pec-connector-dovecot-$(id -u)}}"
port="${IMAPS_PORT:-10993}"

install() {
  command -v dovecot >/dev/null && command -v openssl >/dev/null && return
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    dovecot-imapd dovecot-core openssl >/dev/null
}

configure() {
  mkdir -p "$dir/run" "$dir/state" "$dir/mail"
  dir="$(cd "$dir" && pwd)"
  local user group login uid gid
  user=$(id -un); group=$(id -gn); login=$user; uid=$(id -u); gid=$(id -g)
  if [ "$uid" = 0 ]; then
    # Dovecot refuses root for imap-login and for mail: use the accounts the package creates.
    user=dovecot; group=dovecot; login=dovenull; uid=$(id -u dovecot); gid=$(id -g dovecot)
    chown -R dovecot:dovecot "$dir/mail"
  fi
  if [ ! -f "$dir/cert.pem" ]; then
    # CA:FALSE: rustls refuses a CA certificate used as an end-entity certificate.
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$dir/key.pem" -out "$dir/cert.pem" \
      -days 3650 -subj "/CN=localhost" \
      -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
      -addext "basicConstraints=critical,CA:FALSE" -addext "extendedKeyUsage=serverAuth" 2>/dev/null
    chmod 0644 "$dir/cert.pem"
  fi
  cat > "$dir/dovecot.conf" <<EOC
base_dir = $dir/run
state_dir = $dir/state
instance_name = pec-connector-test-$port
log_path = $dir/dovecot.log
info_log_path = $dir/dovecot.log
protocols = imap
listen = 127.0.0.1
default_internal_user = $user
default_internal_group = $group
default_login_user = $login
first_valid_uid = 0
mail_location = maildir:~/Maildir
ssl = required
ssl_cert = <$dir/cert.pem
ssl_key = <$dir/key.pem
auth_mechanisms = plain login
passdb {
  driver = static
  args = password=secret
}
userdb {
  driver = static
  args = uid=$uid gid=$gid home=$dir/mail/%u
}
service imap-login {
  chroot =
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $port
    ssl = yes
  }
}
service anvil {
  chroot =
}
EOC
}

case "$cmd" in
  start)
    install
    if [ -f "$dir/run/master.pid" ] && kill -0 "$(cat "$dir/run/master.pid")" 2>/dev/null; then
      echo "dovecot already running ($dir)" >&2
    else
      configure
      dovecot -c "$dir/dovecot.conf"
      for _ in $(seq 1 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
      done
      (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null \
        || { echo "dovecot did not start; see $dir/dovecot.log" >&2; tail -20 "$dir/dovecot.log" >&2; exit 1; }
    fi
    echo "IMAP_HOST=localhost IMAP_PORT=$port IMAP_CA_PEM=$dir/cert.pem DOVECOT_CONF=$dir/dovecot.conf"
    ;;
  stop)
    if [ -f "$dir/run/master.pid" ]; then
      kill "$(cat "$dir/run/master.pid")" 2>/dev/null || true
    fi
    ;;
  *)
    echo "usage: $0 start|stop [DIR]" >&2
    exit 2
    ;;
esac
