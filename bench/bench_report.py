"""Benchmark of ``hunch report``: wall and CPU time of each section on a data directory.

Goal (issue 15): the full report on the default demo data (``hunch data generate``:
2,000 users, 5,000 polls, 14 days) in under 10 minutes on a 2-core machine. The
sections are the ones ``hunch report`` runs, in its order and through the same CLI
functions (gateway/cli/analyze.py), then the page is written to a temporary directory.

``--old`` also runs the sections that fit User-Personalization many times (follow
impact, text ablation) with shared fits switched off (each fit decomposes its own
user-poll matrix, as before issue 15's fix) and prints the ratio, same run, same data.
That path takes tens of minutes on the default demo data: use it on a small one
(``hunch data generate DIR --users 600 --polls 1500``).
``--profile N`` prints each section's N most expensive calls (cProfile, cumulative).

Run from the repository root: ``PYTHONPATH=. python bench/bench_report.py --data DIR
[--seeds 2] [--old] [--profile 20]`` (PYTHONPATH: this checkout, not the installed one).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

GOAL_SECONDS = 600.0  # issue 15: under 10 minutes for the whole report


def _timed(name: str, run: Callable[[], Any], profile: int) -> tuple[Any, float, float]:
    load = os.getloadavg()[0]
    profiler = cProfile.Profile() if profile else None
    wall, cpu = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    try:
        result = run()
    finally:
        if profiler:
            profiler.disable()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{name:22s} wall {wall:8.1f} s  cpu {cpu:8.1f} s  load at start {load:.1f}",
          flush=True)
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(profile)
        print(out.getvalue(), flush=True)
    return result, wall, cpu


@contextlib.contextmanager
def _without_shared_fits():
    """The path before issue 15's fix: every fit decomposes its own matrix."""
    import importlib

    # By module path: recsys.analysis exports functions of the same names.
    follow_impact = importlib.import_module("recsys.analysis.follow_impact")
    text_ablation = importlib.import_module("recsys.analysis.text_ablation")
    saved = follow_impact.shared_fits, text_ablation.shared_fits
    follow_impact.shared_fits = text_ablation.shared_fits = contextlib.nullcontext
    try:
        yield
    finally:
        follow_impact.shared_fits, text_ablation.shared_fits = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True,
                        help="a data directory (hunch data generate DIR)")
    parser.add_argument("--seeds", type=int, default=2, help="as hunch report --seeds")
    parser.add_argument("--old", action="store_true",
                        help="also time follow impact and text ablation without shared "
                             "fits (EASE, ALS), and print the ratio (slow: small data only)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="print each section's N most expensive calls")
    args = parser.parse_args()

    from gateway.cli.analyze import (
        run_exploration,
        run_follow_impact,
        run_text_ablation,
        run_trend_tuning,
    )
    from recsys.analysis.report import write_report

    from recsys.datasets import load_directory

    data = args.data
    print(f"data {data}, seeds {args.seeds}, {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    ds, total_wall, total_cpu = _timed("loading the data", lambda: load_directory(data), 0)
    seeds = tuple(range(args.seeds))
    sections = {
        "follow impact": lambda: run_follow_impact(data, seeds=seeds, dataset=ds),
        "trend tuning": lambda: run_trend_tuning(data, dataset=ds),
        "text ablation": lambda: run_text_ablation(data, dataset=ds),
        "exploration": lambda: run_exploration(data, dataset=ds),
    }
    results, times = {}, {}
    for name, run in sections.items():
        results[name], wall, cpu = _timed(name, run, args.profile)
        times[name] = wall, cpu
        total_wall, total_cpu = total_wall + wall, total_cpu + cpu
    with tempfile.TemporaryDirectory() as out:
        _, wall, cpu = _timed("writing the report", lambda: write_report(
            out, follow=results["follow impact"], trend=results["trend tuning"],
            text=results["text ablation"], exploration=results["exploration"]), 0)
    total_wall, total_cpu = total_wall + wall, total_cpu + cpu
    print(f"{'total':22s} wall {total_wall:8.1f} s  cpu {total_cpu:8.1f} s  "
          f"(goal: wall under {GOAL_SECONDS:.0f} s)  load now {os.getloadavg()[0]:.1f}")

    if args.old:
        print("without shared fits (EASE, its lambda and ALS per fit, as before):", flush=True)
        for name in ("follow impact", "text ablation"):
            new_json = results[name].to_json()
            with _without_shared_fits():
                old, wall, cpu = _timed(f"{name} (old)", sections[name], 0)
            # CPU seconds are the fairer ratio on a shared machine (load varies).
            print(f"  old / shared: wall {wall / times[name][0]:.2f}x, cpu "
                  f"{cpu / times[name][1]:.2f}x; same numbers: {old.to_json() == new_json}",
                  flush=True)


if __name__ == "__main__":
    main()
