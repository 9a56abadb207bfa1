#!/usr/bin/env python3
"""Checks that binaries hold no private key and none of the sandbox's test certificates.

    no_test_keys.py BINARY...

Fails (exit 1) naming what it found when a binary holds a PEM private key block, or any of the
project's test certificates or keys (the sandbox PEC provider's signing identity and test CA in
functions/pec/testdata/ca, the sandbox TLS CA in functions/sandbox/src/tls), as PEM text or as
DER bytes. Before looking at the binaries it checks itself on a file made of one of those keys:
a check that cannot find it would prove nothing.
"""

import base64
import pathlib
import re
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEST_FILES = sorted(
    list((ROOT / "functions/pec/testdata/ca").glob("*.pem"))
    + list((ROOT / "functions/pec/testdata/ca").glob("*.key"))
    + list((ROOT / "functions/sandbox/src/tls").glob("*.pem"))
    + list((ROOT / "functions/sandbox/src/tls").glob("*.key"))
)
PRIVATE_KEY_PEM = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----\s+[A-Za-z0-9+/=]{40}")
PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z ]+)-----(.*?)-----END \1-----", re.S)


def needles():
    """(what, bytes) pairs to look for: a PEM line and a DER slice of every test block."""
    found = []
    for path in TEST_FILES:
        for n, match in enumerate(PEM_BLOCK.finditer(path.read_bytes())):
            body = b"".join(match.group(2).split())
            lines = [line for line in match.group(2).split() if len(line) >= 48]
            name = f"{path.relative_to(ROOT)} block {n + 1} ({match.group(1).decode()})"
            if len(lines) > 2:
                found.append((name + " as PEM", lines[1]))
            der = base64.b64decode(body)
            if len(der) > 160:
                found.append((name + " as DER", der[96:160]))
    return found


def problems(data, checks):
    out = []
    if PRIVATE_KEY_PEM.search(data):
        out.append("a PEM private key block")
    out.extend(what for what, needle in checks if needle in data)
    return out


def main(paths):
    checks = needles()
    if not checks:
        print("no_test_keys: no test certificates or keys found to look for", file=sys.stderr)
        return 2
    key = next(p for p in TEST_FILES if p.suffix == ".key")
    with tempfile.NamedTemporaryFile() as planted:
        planted.write(b"\0" * 1000 + key.read_bytes() + b"\0" * 1000)
        planted.flush()
        if not problems(pathlib.Path(planted.name).read_bytes(), checks):
            print(f"no_test_keys: the check does not find {key.name} in a file made of it", file=sys.stderr)
            return 2
    failed = False
    for path in paths:
        found = problems(pathlib.Path(path).read_bytes(), checks)
        if found:
            failed = True
            print(f"no_test_keys: {path} holds " + "; ".join(found), file=sys.stderr)
        else:
            print(f"no_test_keys: {path}: no private key, none of the {len(checks)} test certificate and key pieces")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1:]))
