"""Throughput of the demo-data generator (`hunch data generate`), against plain CSV writing.

Goal: 1,000,000 interactions in at most 60 s on one core. The baseline, measured in the
same run, is the time csv.writer alone needs to write the same number of interaction
rows (ids, timestamp, type, value, a 5-poll impression list), so the ratio says how much
the generator's modelling costs on top of the unavoidable file writing.

    python bench/bench_generator.py          # ~280k interactions (the CLI's defaults)
    python bench/bench_generator.py --full   # 1M interactions, checks the 60 s goal
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

GOAL_SECONDS_PER_MILLION = 60.0  # the roadmap's budget for 1M interactions on one core
DEFAULT_SIZE = dict(users=2000, polls=5000, days=14)  # the CLI's defaults
FULL_SIZE = dict(users=7000, polls=20000, days=14, interactions=1_000_000)


def _baseline_write(path: Path, rows: int) -> float:
    """Seconds for csv.writer to write ``rows`` interaction-shaped rows."""
    started = time.perf_counter()
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", "EVENT_VALUE",
                         "IMPRESSION", "RECOMMENDATION_ID"])
        writer.writerows(
            (f"u{i % 7000:04d}", f"p{i % 20000:05d}", 1_704_067_200 + i, "HUNCH", 1.0,
             f"p{i % 20000:05d}|p{(i + 1) % 20000:05d}|p{(i + 2) % 20000:05d}|"
             f"p{(i + 3) % 20000:05d}|p{(i + 4) % 20000:05d}", "")
            for i in range(rows)
        )
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="generate 1M interactions")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    # One core, as the goal says; numpy's BLAS would otherwise use every core.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from recsys.demo_data import generate_demo_data

    size = FULL_SIZE if args.full else DEFAULT_SIZE
    with tempfile.TemporaryDirectory(prefix="bench_generator_") as tmp:
        started, cpu_started = time.perf_counter(), time.process_time()
        summary = generate_demo_data(Path(tmp) / "demo", seed=args.seed, **size)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        baseline = _baseline_write(Path(tmp) / "baseline.csv", summary.interactions)

    rate = summary.interactions / elapsed
    per_million = 1_000_000 / rate
    print(f"size: {size}")
    print(summary.describe())
    print(f"generator: {elapsed:8.2f} s wall, {cpu:.2f} s CPU, {rate:12,.0f} interactions/s")
    print(f"baseline:  {baseline:8.2f} s to csv.write {summary.interactions:,} rows "
          f"({summary.interactions / baseline:,.0f} rows/s)")
    print(f"ratio generator/baseline: {elapsed / baseline:.1f}x")
    verdict = "meets" if per_million <= GOAL_SECONDS_PER_MILLION else "MISSES"
    measured = "measured" if args.full else "extrapolated"
    print(f"time for 1M interactions ({measured}): {per_million:.1f} s wall "
          f"({1_000_000 / summary.interactions * cpu:.1f} s CPU); "
          f"{verdict} the {GOAL_SECONDS_PER_MILLION:.0f} s goal")
    # On a shared machine wall time includes waiting for a core; CPU time does not.
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
