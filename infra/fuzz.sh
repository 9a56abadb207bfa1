#!/usr/bin/env bash
# Fuzzes the PEC parser with cargo-fuzz (libFuzzer): `infra/fuzz.sh [parse|daticert] [seconds]`.
# Extra arguments go to libFuzzer (e.g. `-jobs=2`). Installs cargo-fuzz when missing, builds the
# seed corpus from the PEC samples ($PEC_SAMPLES_DIR, default ../shared/pec-samples) plus a few
# synthetic seeds, then runs the target; a crash or a hang (>10 s on one input) fails the run and
# leaves the input in functions/pec/fuzz/artifacts/<target>/. Corpus and artifacts are git-ignored:
# the samples are not ours to commit.
# Only the stable toolchain is needed: RUSTC_BOOTSTRAP=1 lets it take cargo-fuzz's -Z flags.
# FUZZ_SANITIZER=none skips AddressSanitizer (faster; Rust code is memory-safe anyway).
set -euo pipefail
cd "$(dirname "$0")/.."

target="${1:-parse}"
seconds="${2:-600}"
shift $(( $# < 2 ? $# : 2 ))
sanitizer="${FUZZ_SANITIZER:-address}"
root="$(pwd)"
fuzz_dir="$root/functions/pec/fuzz"
corpus="$fuzz_dir/corpus/$target"
samples="${PEC_SAMPLES_DIR:-$root/../shared/pec-samples}"

case "$target" in
  parse | daticert) ;;
  *) echo "usage: $0 [parse|daticert] [seconds] [libFuzzer args...]" >&2; exit 2 ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi

echo "== seed corpus: $corpus"
mkdir -p "$corpus"
if [ "$target" = parse ]; then
  if [ -d "$samples" ]; then
    cp "$samples"/*.eml "$corpus"/ 2>/dev/null || true
  fi
  # A minimal receipt and a minimal ordinary mail, in case no samples are at hand.
  printf '%s\r\n' \
    'From: posta-certificata@pec.example.it' 'To: a@pec.example.it' 'Subject: ACCETTAZIONE: x' \
    'X-Ricevuta: accettazione' 'Content-Type: multipart/signed; protocol="application/x-pkcs7-signature"; boundary="s"' \
    '' '--s' 'Content-Type: multipart/mixed; boundary="m"' '' '--m' 'Content-Type: text/plain' '' 'testo' \
    '--m' 'Content-Type: application/xml; name="daticert.xml"' 'Content-Transfer-Encoding: base64' '' \
    'PHBvc3RhY2VydCB0aXBvPSJhY2NldHRhemlvbmUiPjwvcG9zdGFjZXJ0Pg==' '--m--' \
    '--s' 'Content-Type: application/x-pkcs7-signature; name="smime.p7s"' 'Content-Transfer-Encoding: base64' '' \
    'MIIB' '--s--' >"$corpus/seed-receipt.eml"
  printf 'From: a@b.it\nTo: c@d.it\nSubject: ciao\n\nciao\n' >"$corpus/seed-plain.eml"
else
  if [ -d "$samples" ] && command -v python3 >/dev/null; then
    python3 - "$corpus" "$samples"/*.eml <<'PY'
import email, pathlib, sys
out = pathlib.Path(sys.argv[1])
for path in map(pathlib.Path, sys.argv[2:]):
    msg = email.message_from_bytes(path.read_bytes())
    for n, part in enumerate(msg.walk()):
        if (part.get_filename() or "").lower() == "daticert.xml":
            data = part.get_payload(decode=True)
            if data:
                (out / f"{path.stem}-{n}.xml").write_bytes(data)
PY
  fi
  cat >"$corpus/seed-daticert.xml" <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<postacert tipo="avvenuta-consegna" errore="nessuno">
  <intestazione>
    <mittente>mario@pec.example.it</mittente>
    <destinatari tipo="certificato">uffici@pec.example.it</destinatari>
    <risposte>mario@pec.example.it</risposte>
    <oggetto>Fattura &amp; allegati</oggetto>
  </intestazione>
  <dati>
    <gestore-emittente>Gestore di prova</gestore-emittente>
    <data zona="+0100"><giorno>13/11/2018</giorno><ora>16:39:26</ora></data>
    <identificativo>opec.1@pec.example.it</identificativo>
    <msgid>&lt;abc@example.it&gt;</msgid>
    <ricevuta tipo="breve"/>
    <consegna>uffici@pec.example.it</consegna>
  </dati>
</postacert>
XML
fi
echo "   $(ls "$corpus" | wc -l) inputs"

echo "== cargo fuzz run $target for ${seconds}s (sanitizer: $sanitizer)"
cd "$root/functions/pec"
RUSTC_BOOTSTRAP=1 cargo fuzz run -s "$sanitizer" "$target" "$corpus" -- \
  -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -dict="$fuzz_dir/pec.dict" -print_final_stats=1 "$@"
