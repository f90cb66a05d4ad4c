"""Benchmark of training time (issue 14, item 6) on a development dataset, in one run.

1. End to end, as a new user runs it, each command in its own process with a fresh
   ``HUNCH_HOME``: ``hunch data import DIR`` then ``hunch train`` (every recipe, offline
   metrics on). Printed: import, train, and the time to a personalized feed (import plus
   train until ``user-personalization`` is published; the offline metrics come after
   that), wall and CPU seconds each. The goal: a personalized feed within 30 s for
   100k interactions.
2. User-Personalization's, EASE's and implicit ALS's fit time and peak memory, each
   single-threaded in a fresh process (bench_evaluation.py's measurement), with ratios.
   Goal: on catalogs up to 10k polls UP's fit at most EASE's. EASE here is the
   evaluation's peer at one lambda; "EASE tuned" adds the evaluation's lambda/weighting
   search on one validation split, as ``hunch evaluate`` fits it.
3. Where UP's fit goes (its item-item component is EASE's B twice plus a lambda path,
   then ALS factors, the sequence and walk components and the blend), to say what bar UP
   can fairly meet.

The machine's load average is printed before and after: on a shared machine wall times
move with it, CPU seconds much less.

Run: ``PYTHONPATH=. python bench/bench_train_time.py [--data DIR]``; without ``--data``
MovieLens 100k is converted from the cached RecBole wheel
(``~/.cache/hunch/public-data/recbole-1.2.1-py3-none-any.whl``, see ``hunch data
convert-ratings``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_evaluation import _in_child, _tuning  # noqa: E402 - the same measurement

RECBOLE_WHEEL = Path.home() / ".cache/hunch/public-data/recbole-1.2.1-py3-none-any.whl"
DEFAULT_DATASET = "movielens-100k"
# The goal for import + train to a personalized feed at 100k interactions.
FEED_GOAL_SECONDS = 30.0
# Ratings datasets store RATING events; a home must accept them to import them.
EVENT_TYPES = '["HUNCH","COMMENT","RATING"]'
UP = "user-personalization"


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f} (1 min) {five:.2f} (5 min) on {os.cpu_count()} cores"


def _cpu_children() -> float:
    usage = os.times()
    return usage.children_user + usage.children_system


def _hunch(args: list[str], env: dict[str, str], marker: str | None = None
           ) -> tuple[float, float, float | None, str]:
    """Run ``hunch ARGS``: wall seconds, CPU seconds, seconds until a stdout line
    starting with ``marker`` appeared (None without one), and the output."""
    cpu = _cpu_children()
    started = time.perf_counter()
    seen = None
    lines = []
    with subprocess.Popen([sys.executable, "-m", "gateway", *args], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as p:
        for line in p.stdout:
            lines.append(line)
            if marker and seen is None and line.startswith(marker):
                seen = time.perf_counter() - started
    wall = time.perf_counter() - started
    if p.returncode != 0:
        raise SystemExit(f"hunch {' '.join(args)} failed ({p.returncode}):\n{''.join(lines)}")
    return wall, _cpu_children() - cpu, seen, "".join(lines)


def end_to_end(directory: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hunch-bench-home-") as home:
        env = {**os.environ, "HUNCH_HOME": home, "HUNCH_EVENT_TYPES": EVENT_TYPES,
               "PYTHONPATH": str(ROOT)}
        for name in ("HUNCH_DB_PATH", "HUNCH_ARTIFACTS_PATH", "HUNCH_ARTIFACTS_URL"):
            env.pop(name, None)
        imp_wall, imp_cpu, _, _ = _hunch(["data", "import", str(directory)], env)
        train_wall, train_cpu, feed, _ = _hunch(["train"], env, marker=f"published {UP} ")
        manifests = sorted((Path(home) / "artifacts" / UP).glob("*/manifest.json"))
        interactions = json.loads(manifests[-1].read_text())["dataset"]["interactions"]
    return {"interactions": interactions, "import_wall": imp_wall, "import_cpu": imp_cpu,
            "train_wall": train_wall, "train_cpu": train_cpu, "feed_after_train": feed}


def _up_profile(directory: str, queue: Any) -> None:
    """UP's fit, timed by part, single-threaded."""
    # threadpoolctl limits only the BLAS libraries already loaded: load them first.
    import implicit.cpu.als  # noqa: F401
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_limits

    from recsys.datasets import load_directory
    from recsys.recipes.user_personalization import UserPersonalization, blend
    from recsys.recipes.user_personalization.components import (
        collaborative,
        item_item,
        sequence,
        walk,
    )

    data = load_directory(Path(directory)).training_data()
    spent: dict[str, float] = {}

    def timed(owner: Any, name: str, label: str, static: bool) -> None:
        real = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - started
        setattr(owner, name, staticmethod(wrapper) if static else wrapper)

    import recsys.ease

    timed(recsys.ease, "ease_spectrum", "item-item: eigendecomposition (lambda path)", False)
    timed(item_item.ItemItem, "choose_l2", "item-item: lambda path + validation NDCG", True)
    timed(item_item.ItemItem, "weights_of", "item-item: B before the blend and on all", True)
    timed(item_item.ItemItem, "fit_neighbours", "item-item: content neighbours", True)
    timed(collaborative.Collaborative, "fit", "collaborative: ALS factors, metadata ridge", False)
    timed(blend, "learn", "blend: learned on validation", False)
    timed(sequence.SequenceAware, "fit", "sequence: transitions before the blend", False)
    timed(sequence.SequenceAware, "finish", "sequence: pairs ending in a target added", False)
    timed(walk.Walk, "fit", "walk: beta's grid over the validation users' polls", False)
    timed(walk.Walk, "finish", "walk: the whole catalog at the chosen beta", False)

    def fit() -> None:
        UserPersonalization(num_threads=1, random_state=0, exploration_weight=0.0).fit(data)

    with threadpool_limits(1):
        fit()  # warm: imports and first-call costs are not training
        spent.clear()
        started = time.perf_counter()
        fit()
        total = time.perf_counter() - started
    queue.put({"total": total, "parts": spent})


def up_profile(directory: Path) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_up_profile, args=(str(directory), queue))
    child.start()
    result = queue.get()
    child.join()
    return result


def _convert_default(out: Path) -> Path:
    if not RECBOLE_WHEEL.exists():
        raise SystemExit(f"{RECBOLE_WHEEL} is missing: give --data DIR (a Personalize-format "
                         "directory) or fetch the public data (`hunch data --help`)")
    # --no-items: the ratings alone, as every earlier run of this bench measured them.
    subprocess.run([sys.executable, "-m", "gateway", "data", "convert-ratings",
                    str(RECBOLE_WHEEL), str(out), "--dataset", DEFAULT_DATASET, "--no-items"],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None,
                        help=f"a Personalize-format directory [default: {DEFAULT_DATASET}]")
    parser.add_argument("--no-end-to-end", action="store_true",
                        help="skip the import + train commands")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        directory = args.data or _convert_default(Path(tmp) / DEFAULT_DATASET)
        print(f"data: {directory}; before: {_load()}")
        if not args.no_end_to_end:
            e = end_to_end(directory)
            feed = e["import_wall"] + e["feed_after_train"]
            print(f"\n1. end to end, {e['interactions']:,} interactions, fresh SQLite home "
                  "(wall s / CPU s)")
            print(f"   hunch data import          {e['import_wall']:7.2f} / {e['import_cpu']:6.2f}")
            print(f"   hunch train (3 recipes)    {e['train_wall']:7.2f} / {e['train_cpu']:6.2f}"
                  "   (offline metrics included, computed after publishing)")
            print(f"   to a personalized feed     {feed:7.2f}           (import + train until "
                  f"{UP} is published; goal <= {FEED_GOAL_SECONDS:g} s: "
                  f"{'met' if feed <= FEED_GOAL_SECONDS else 'NOT met'})")
            print(f"   import + whole train       {e['import_wall'] + e['train_wall']:7.2f}")

        results = {m: _in_child(m, directory) for m in ("als", "ease", "up")}
        path, _, points, vshape = _tuning(directory)
        shape, nnz = results["als"]["shape"], results["als"]["nnz"]
        print(f"\n2. fits, {shape[0]:,} users x {shape[1]:,} polls, {nnz:,} user-poll pairs "
              "(single-threaded, each in its own process)")
        print(f"   {'model':<11} {'fit s':>7} {'traced peak MiB':>16} {'RSS peak +MiB':>14}")
        for model in ("als", "ease", "up"):
            r = results[model]
            print(f"   {model:<11} {r['seconds']:7.2f} {r['traced_mib']:16.1f} "
                  f"{r['added_mib']:14.1f}")
        up, ease, als = (results[m]["seconds"] for m in ("up", "ease", "als"))
        tuned = ease + path
        print(f"   EASE tuned  {tuned:7.2f}   (fit + lambda/weighting search over {points} "
              f"grid points on a {vshape[0]:,}-user validation split: {path:.2f} s)")
        print(f"   ratios: UP/EASE {up / ease:.2f}  UP/EASE tuned {up / tuned:.2f}  "
              f"UP/ALS {up / als:.2f}  EASE/ALS {ease / als:.2f}  "
              f"UP/(EASE+ALS) {up / (ease + als):.2f}  UP/(EASE tuned+ALS) "
              f"{up / (tuned + als):.2f}")
        print(f"   memory: UP/EASE traced peak "
              f"{results['up']['traced_mib'] / max(results['ease']['traced_mib'], 1e-9):.2f}")

        profile = up_profile(directory)
        print(f"\n3. UP's fit by part ({profile['total']:.2f} s, single-threaded, warm)")
        for label, seconds in sorted(profile["parts"].items(), key=lambda kv: -kv[1]):
            print(f"   {label:<52} {seconds:6.2f}")
        rest = profile["total"] - sum(profile["parts"].values())
        print(f"   {'the rest (indexing, metadata, segments, history)':<52} {rest:6.2f}")
        print(f"\nafter: {_load()}")


if __name__ == "__main__":
    main()
