#!/usr/bin/env python3
"""The corpus half of the parser benchmark, in Python's standard `email` package.

Does for each sample what `cargo bench -p pec --bench parse -- corpus` does in Rust, the way
Python PEC tools do it: `email.message_from_bytes` with the default (compat32) policy, then
walk the parts; decode `daticert.xml` and parse it with `xml.etree`; walk `postacert.eml`
(the message itself for non-PEC mail), decode its headers, its text bodies and every
attachment (`get_payload(decode=True)`, then a CRC over its bytes as Rust reads
them). Python does not check the S/MIME signature; Rust does.

Usage: python_email.py [SAMPLES_DIR] (default $PEC_SAMPLES_DIR); $BENCH_ITERATIONS (200).
       python_email.py --once FILE...: the same work once per file, nothing printed: what
       infra/bench/compare.sh times against `pec-connector inspect FILE...`.
"""

import email
import email.header
import email.utils
import os
import pathlib
import sys
import time
import xml.etree.ElementTree as ET
import zlib


def header(msg, name):
    value = msg.get(name)
    if value is None:
        return None
    return str(email.header.make_header(email.header.decode_header(str(value))))


def read_original(msg):
    """Headers, text bodies and attachments of the original message."""
    facts = {
        "from": email.utils.getaddresses(msg.get_all("From", [])),
        "to": email.utils.getaddresses(msg.get_all("To", []) + msg.get_all("Cc", [])),
        "subject": header(msg, "Subject"),
        "message_id": msg.get("Message-ID"),
    }
    date = msg.get("Date")
    if date:
        try:
            facts["date"] = email.utils.parsedate_to_datetime(date)
        except (TypeError, ValueError):
            facts["date"] = None
    touched = 0
    for part in msg.walk():
        if part.is_multipart():
            continue
        data = part.get_payload(decode=True) or b""
        if part.get_filename() is None and part.get_content_type() in ("text/plain", "text/html"):
            charset = part.get_content_charset() or "utf-8"
            try:
                data.decode(charset, errors="replace")
            except LookupError:
                data.decode("latin-1")
        else:
            touched ^= zlib.crc32(data)
    return facts, touched


def work(raw):
    msg = email.message_from_bytes(raw)
    kind = msg.get("X-Trasporto") or msg.get("X-Ricevuta")
    daticert = postacert = None
    for part in msg.walk():
        name = (part.get_filename() or "").lower()
        if name == "daticert.xml" and daticert is None:
            daticert = part
        elif postacert is None and (
            name == "postacert.eml" or (not name and part.get_content_type() == "message/rfc822")
        ):
            postacert = part
    facts = {"kind": kind}
    if daticert is not None:
        try:
            root = ET.fromstring(daticert.get_payload(decode=True) or b"")
            facts["tipo"] = root.get("tipo")
            facts["mittente"] = root.findtext("intestazione/mittente")
            facts["msgid"] = root.findtext("dati/msgid")
        except ET.ParseError:
            facts["daticert"] = "unreadable"
    if postacert is not None:
        payload = postacert.get_payload()
        original = payload[0] if isinstance(payload, list) and payload else None
        if original is not None:
            facts["original"] = read_original(original)
    elif not kind:
        facts["original"] = read_original(msg)
    return facts


def main():
    if sys.argv[1:2] == ["--once"]:
        for path in sys.argv[2:]:
            work(pathlib.Path(path).read_bytes())
        return
    directory = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
        "PEC_SAMPLES_DIR", pathlib.Path(__file__).resolve().parents[3] / "shared" / "pec-samples"))
    iterations = max(1, int(os.environ.get("BENCH_ITERATIONS", "200")))
    files = sorted((p.name, p.read_bytes()) for p in directory.glob("*.eml"))
    print(f"== python email (compat32): {len(files)} files in {directory}, {iterations} iterations")
    for _, raw in files:
        work(raw)
    per_file = [0.0] * len(files)
    started = time.perf_counter()
    for _ in range(iterations):
        for i, (_, raw) in enumerate(files):
            t = time.perf_counter()
            work(raw)
            per_file[i] += time.perf_counter() - t
    total = time.perf_counter() - started
    for (name, raw), spent in zip(files, per_file):
        print(f"  {name:<58} {len(raw):>7} B  {spent * 1e6 / iterations:>8.1f} us")
    messages = len(files) * iterations
    print(f"total: {messages} messages in {total:.3f} s")
    print(f"per-message: {total * 1e6 / messages:.2f} us")


if __name__ == "__main__":
    main()
