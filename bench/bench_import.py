"""Benchmark: what reading a Personalize-format directory costs (``load_directory``, the
validation every ``hunch data import``, ``train --data`` and ``evaluate --data`` runs
before anything is written), against the plainest reading of the same files.

Printed: wall time and peak memory (RSS, each in a fresh process) of

- the baseline: ``csv.reader`` over every file, each row kept as its list of strings
  (what a first version that only parsed would hold), and
- ``load_directory``: every cell typed and checked, every event built and checked as the
  store would, ids interned,

with their ratios, and the peak against the files' size (a 1.5M-event demo directory once
needed 2.1 GB, ~13x its CSVs; interned ids brought it to 1.1 GB). Goal: the validation's
peak memory at most the baseline's, within 5 % (it keeps typed events, not rows of
strings).

    python bench/bench_import.py [--users 5000 --polls 50000 --days 30] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _data import add_data_arguments, data_directory

REPO = Path(__file__).resolve().parents[1]
# load_directory's peak RSS / the baseline's: typed, checked events should not cost more
# than rows of strings (5 %: what RSS peaks move between runs of the same code).
MEMORY_GOAL = 1.05

_MEASURE = r"""
import csv, json, resource, sys, time
from pathlib import Path
directory, how, names = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
started = time.perf_counter()
if how == "baseline":
    kept = []
    for path in (directory / n for n in names):
        if path.exists():
            with path.open(newline="", encoding="utf-8") as fh:
                kept.append(list(csv.reader(fh)))
else:
    from recsys.datasets import load_directory
    kept = load_directory(directory)
seconds = time.perf_counter() - started
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
print(json.dumps({"seconds": seconds, "peak_mib": peak_kib / 1024}))
"""


# The files load_directory reads (demo data also writes comments and follows).
NAMES = ("interactions.csv", "impressions.csv", "items.csv", "users.csv")


def _measure(directory: Path, how: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(directory), how, *NAMES],
                         capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser, users=5_000, polls=50_000, days=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = data_directory(args, tmp)
        size_mib = sum((directory / n).stat().st_size for n in NAMES
                       if (directory / n).exists()) / 2**20
        baseline = _measure(directory, "baseline")
        loaded = _measure(directory, "load_directory")
    print(f"files: {size_mib:,.0f} MiB ({', '.join(NAMES)})")
    print(f"baseline (csv.reader, rows kept):  {baseline['seconds']:6.1f} s, "
          f"peak {baseline['peak_mib']:,.0f} MiB")
    print(f"load_directory (typed, checked):   {loaded['seconds']:6.1f} s, "
          f"peak {loaded['peak_mib']:,.0f} MiB ({loaded['peak_mib'] / size_mib:.1f}x the files)")
    ratio = loaded["peak_mib"] / baseline["peak_mib"]
    print(f"ratios load_directory / baseline: time {loaded['seconds'] / baseline['seconds']:.1f}x, "
          f"peak memory {ratio:.2f}x (goal <= {MEMORY_GOAL}x: "
          f"{'met' if ratio <= MEMORY_GOAL else 'not met'})")


if __name__ == "__main__":
    main()
