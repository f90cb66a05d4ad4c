"""Benchmark of the evaluation's heavy peers: fit time and memory beside implicit ALS.

EASE's item-item matrix is dense (polls x polls) and User-Personalization does more than
factorise, so both are measured against implicit ALS, the usual matrix-factorisation
baseline, on the same demo data in the same run: fit seconds, the peak of memory the
fit allocates (tracemalloc, which sees numpy's allocations) and the peak resident memory
it adds (kernel high-water mark). Each model is fitted in a fresh child process so that one model's
freed memory cannot hide another's peak; every fit is single-threaded (BLAS and
implicit), as the evaluation runs them.

A second table shows why EASE can be tuned at all on 2 cores: the evaluation's tuning
(one eigendecomposition per weighting, then every lambda only scores validation users)
against the previous way, one dense inversion per grid point (measured once and
multiplied by the grid size, since ten of them would take minutes).

Run: ``python bench/bench_evaluation.py [--users 2000 --polls 5000 --days 14 --seed 1]``
or ``--data DIR`` for an existing Personalize-format directory.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from _data import add_data_arguments, data_directory

# Models fitted, in the order printed; ALS is the baseline the others are divided by.
MODELS: tuple[str, ...] = ("als", "ease", "up")
BASELINE = "als"


def _rss_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark so VmHWM measures the fit alone (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _fit_one(model: str, directory: str, queue: Any) -> None:
    from threadpoolctl import threadpool_limits

    from recsys.datasets import load_directory
    from recsys.evaluation.peers import ALS, EASE, UserItemMatrix

    data = load_directory(Path(directory)).training_data()
    catalog = sorted(set(data.items) | {e.item_id for e in data.interactions})
    matrix = UserItemMatrix.build(data.interactions, catalog).matrix
    # Import what each fit uses first: a one-off process cost, not training.
    import implicit.cpu.als  # noqa: F401
    import scipy.linalg  # noqa: F401

    if model == "up":
        from recsys.recipes.user_personalization import UserPersonalization

        import sklearn.decomposition  # noqa: F401
        import sklearn.feature_extraction.text  # noqa: F401
        import sklearn.linear_model  # noqa: F401
        import sklearn.metrics  # noqa: F401 - the item-item lambda's validation NDCG

        import recsys.ease  # noqa: F401
    def fit() -> Any:
        if model == "als":
            return ALS().fit(matrix)
        if model == "ease":
            return EASE().fit(matrix)
        return UserPersonalization(num_threads=1, random_state=0, exploration_weight=0.0).fit(data)

    with threadpool_limits(1):
        before = _rss_kib("VmRSS") or 0
        exact = _reset_peak_rss()
        before_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        fitted = fit()
        seconds = time.perf_counter() - started
        peak = _rss_kib("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        del fitted
        # RSS misses memory the allocator reuses from data loading; tracemalloc sees every
        # numpy/Python allocation of the fit (not BLAS workspaces), so both are printed.
        # A second fit, because tracing slows Python-heavy code and must not skew the time.
        tracemalloc.start()
        fitted = fit()
        traced = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    queue.put({"model": model, "seconds": seconds, "traced_mib": traced,
               "added_mib": max(0, (peak or before_max) - before) / 1024, "exact_peak": exact,
               "shape": matrix.shape, "nnz": matrix.nnz})


def _in_child(model: str, directory: Path) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_fit_one, args=(model, str(directory), queue))
    child.start()
    result = queue.get()
    child.join()
    return result


def _tuning(directory: Path) -> tuple[float, float, int, tuple[int, int]]:
    """EASE's tuning on one validation split: the path vs one inversion per grid point."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    from recsys.datasets import load_directory
    from recsys.evaluation.peers import EASE, UserItemMatrix, ease_grid_rankings
    from recsys.evaluation.split import user_folds, validation_split

    data = load_directory(directory).training_data()
    catalog = sorted(set(data.items) | {e.item_id for e in data.interactions})
    validation = validation_split(user_folds(data.interactions, 10, seed=0)[0], seed=1)
    matrix = UserItemMatrix.build(validation.training, catalog)
    rows = np.array([matrix.user_row[u.user_id] for u in validation.scored_users])
    grid = EASE.GRID
    with threadpool_limits(1):
        started = time.perf_counter()
        for _ in ease_grid_rankings(matrix.matrix, rows, 25, grid["l2"], grid["weighting"]):
            pass
        path = time.perf_counter() - started
        # The previous way, for one grid point: Gram matrix, dense inverse, B, scores.
        started = time.perf_counter()
        x = EASE.weigh(matrix.matrix, "binary")
        gram = (x.T @ x).toarray()
        gram[np.diag_indices_from(gram)] += grid["l2"][0]
        p = np.linalg.inv(gram)
        b = -p / np.diag(p)[np.newaxis, :]
        b[np.diag_indices_from(b)] = 0.0
        _ = x[rows] @ b
        one = time.perf_counter() - started
    points = len(grid["l2"]) * len(grid["weighting"])
    return path, one * points, points, matrix.matrix.shape


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser, users=2_000, polls=5_000, days=14)
    parser.add_argument("--no-tuning", action="store_true", help="skip the EASE tuning table")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        directory = data_directory(args, tmp)
        results = {m: _in_child(m, directory) for m in MODELS}
        shape, nnz = results[BASELINE]["shape"], results[BASELINE]["nnz"]
        print(f"data: {shape[0]:,} users x {shape[1]:,} polls, {nnz:,} user-poll pairs "
              "(single-threaded fits, each in its own process)")
        base = results[BASELINE]
        print(f"{'model':<6} {'fit s':>8} {'x ALS':>7} {'traced peak MiB':>16} {'x ALS':>7} "
              f"{'RSS peak +MiB':>14}")
        for model in MODELS:
            r = results[model]
            print(f"{model:<6} {r['seconds']:>8.2f} {r['seconds'] / base['seconds']:>7.2f} "
                  f"{r['traced_mib']:>16.1f} {r['traced_mib'] / max(base['traced_mib'], 1e-9):>7.1f} "
                  f"{r['added_mib']:>14.1f}")
        if not all(r["exact_peak"] for r in results.values()):
            print("note: /proc/self/clear_refs unavailable; peaks include data loading")
        if not args.no_tuning:
            path, plain, points, vshape = _tuning(directory)
            print(f"EASE tuning on a validation split ({vshape[0]:,} x {vshape[1]:,}), "
                  f"{points} grid points: path {path:.2f} s, one inversion per point "
                  f"{plain:.2f} s (estimated from one), speed-up {plain / path:.1f}x")


if __name__ == "__main__":
    main()
