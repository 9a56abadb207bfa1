#!/usr/bin/env python3
"""Times the shipped `pec-connector inspect` against Python's `email` on the same files.

Both sides are whole processes, started the same way and run in turns (Rust, Python, Rust, ...)
so that a busy machine slows both alike; each figure is the median over the rounds:

* one process for the corpus: `pec-connector inspect F1 ... Fn` (signatures checked, JSON
  printed) against `python_email.py --once F1 ... Fn` (parse only, nothing printed); per
  message = the process's wall time / n. This is the acceptance: Rust at least 5x faster.
  Each side starts once for the same files; of the two figures with the process start, this is
  the stricter one (Python's start, tens of milliseconds with its imports, counts once).
* one process per file: the same, one process per file; per message = the sum / n.
* after start: the corpus 1 and K times in one process; per message = the difference / (n(K-1)),
  the work of a message without the process start (what a long-lived poller pays).

Usage: inspect_vs_python.py --inspect BIN --python PYTHON --samples DIR [--rounds N] [--repeat K]
Exit status 0 when the acceptance passes, 1 when it fails, 2 when a run fails.
"""

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import time

TARGET = 5.0


def timed(cmd):
    """Wall and CPU seconds of one process; exits when it fails."""
    started = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        print(f"inspect_vs_python: {cmd[0]} {cmd[1]} ... failed (wait status {status})",
              file=sys.stderr)
        sys.exit(2)
    return wall, usage.ru_utime + usage.ru_stime


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inspect", required=True, help="the pec-connector binary")
    parser.add_argument("--python", required=True, help="the Python interpreter")
    parser.add_argument("--samples", required=True, help="directory of .eml files")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=10, help="K of the after-start figure")
    args = parser.parse_args()

    files = sorted(str(p) for p in pathlib.Path(args.samples).glob("*.eml"))
    if not files:
        print(f"inspect_vs_python: no .eml files in {args.samples}", file=sys.stderr)
        return 2
    n, k = len(files), max(2, args.repeat)
    script = str(pathlib.Path(__file__).with_name("python_email.py"))
    rust = [args.inspect, "inspect"]
    python = [args.python, script, "--once"]

    # The processes of each case, for a side's command prefix; both sides run in turns.
    cases = {
        "corpus": lambda side: [side + files],
        "per-file": lambda side: [side + [f] for f in files],
        "corpus x1": lambda side: [side + files],
        "corpus xK": lambda side: [side + files * k],
    }
    samples = {(case, side): [] for case in cases for side in ("rust", "python")}
    for _ in range(args.rounds):
        for case, commands in cases.items():
            for side, prefix in (("rust", rust), ("python", python)):
                runs = [timed(cmd) for cmd in commands(prefix)]
                samples[case, side].append(tuple(map(sum, zip(*runs))))

    def median(case, side, what=0):
        return statistics.median(s[what] for s in samples[case, side])

    def per_message(side, what=0):
        """Microseconds per message of each case."""
        return {
            "corpus": median("corpus", side, what) * 1e6 / n,
            "per-file": median("per-file", side, what) * 1e6 / n,
            "after start": (median("corpus xK", side, what) - median("corpus x1", side, what))
            * 1e6
            / (n * (k - 1)),
        }

    wall = {side: per_message(side) for side in ("rust", "python")}
    cpu = {side: per_message(side, 1) for side in ("rust", "python")}
    size = sum(os.path.getsize(f) for f in files)
    print(
        f"== pec-connector inspect ({args.inspect}) against Python's email ({args.python}),\n"
        f"   {n} files ({size / 1e3:.0f} KB) in {args.samples}, {args.rounds} rounds in turns, "
        "medians; us per message (CPU in brackets)"
    )
    labels = {
        "corpus": "one process for the corpus",
        "per-file": "one process per file",
        "after start": f"after start (corpus x{k} - x1)",
    }
    ok = True
    print(f"   {'':<32} {'rust':>16} {'python':>18} {'faster':>8}")
    for key, label in labels.items():
        ratio = wall["python"][key] / wall["rust"][key]
        if key == "corpus":
            ok = ratio >= TARGET
            verdict = f"  [{'PASS' if ok else 'FAIL'} >= {TARGET:g}x: the acceptance]"
        else:
            verdict = f"  ({'at least' if ratio >= TARGET else 'under'} {TARGET:g}x)"
        print(
            f"   {label:<32} {wall['rust'][key]:>7.0f} ({cpu['rust'][key]:>6.0f}) "
            f"{wall['python'][key]:>9.0f} ({cpu['python'][key]:>6.0f}) {ratio:>7.1f}x{verdict}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
