"""Benchmark of User-Personalization: training time and one-request latency.

Goals (see the recipe's docs): training at most 3x implicit ALS's time on the same data,
and one recommendation (top 25, folding in up to 100 recent events, no filter) with
p99 <= 5 ms on a catalog of 50k polls, one core. Baselines are measured in the same run:
implicit ALS's ``fit`` on the same matrix, and implicit ALS's own ``recommend`` for one
user with ``recalculate_user=True`` (its fold-in path).

Run: ``python bench/bench_user_personalization.py [--users 5000 --polls 50000 --days 30]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

TRAINING_RATIO_GOAL = 3.0
P99_GOAL_MS = 5.0
REQUESTS = 1_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--polls", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data", type=Path, default=None,
                        help="an existing Personalize-format directory instead of demo data")
    args = parser.parse_args()

    from threadpoolctl import threadpool_limits

    from recsys.datasets import load_directory
    from recsys.demo_data import generate_demo_data
    from recsys.recipes.user_personalization import ALS_ALPHA, UserPersonalization

    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(1):
        directory = args.data
        if directory is None:
            directory = Path(tmp) / "demo"
            generate_demo_data(directory, users=args.users, polls=args.polls,
                               days=args.days, seed=args.seed)
        data = load_directory(directory).training_data()
        print(f"data: {len(data.interactions):,} interactions, {len(data.items):,} polls, "
              f"{len(data.users):,} users")

        # Import the libraries both models use before timing: a one-off process cost,
        # not training, and ALS below would otherwise get them for free.
        import implicit.cpu.als  # noqa: F401
        import sklearn.decomposition  # noqa: F401
        import sklearn.feature_extraction.text  # noqa: F401
        import sklearn.linear_model  # noqa: F401

        model = UserPersonalization(num_threads=1, random_state=0)
        started = time.perf_counter()
        model.fit(data)
        up_seconds = time.perf_counter() - started

        # Baseline: implicit ALS alone with the same factors on the same weighted matrix.
        import scipy.sparse as sp
        from implicit.cpu.als import AlternatingLeastSquares

        users = [model.user_index_[e.user_id] for e in data.interactions]
        items = [model.item_index_[e.item_id] for e in data.interactions]
        weights = [model._event_weight(e.event_type) for e in data.interactions]
        matrix = sp.csr_matrix((np.array(weights, np.float32), (users, items)),
                               shape=(len(model.user_ids_), len(model.item_ids_)))
        als = AlternatingLeastSquares(factors=model.factors, regularization=model.regularization,
                                      alpha=ALS_ALPHA, iterations=model.iterations,
                                      num_threads=1, random_state=0)
        started = time.perf_counter()
        als.fit(matrix, show_progress=False)
        als_seconds = time.perf_counter() - started
        ratio = up_seconds / als_seconds
        print(f"training: user-personalization {up_seconds:.2f} s, implicit ALS {als_seconds:.2f} s,"
              f" ratio {ratio:.2f}x (goal <= {TRAINING_RATIO_GOAL}x)")

        rng = np.random.default_rng(0)
        active = [u for u in model.recent_ if len(model.recent_[u][0]) >= 20]
        chosen = rng.choice(active, size=REQUESTS)
        model.recommend(chosen[0], 25)  # warm caches
        up_ms = []
        for user_id in chosen:
            started = time.perf_counter()
            model.recommend(user_id, 25)
            up_ms.append((time.perf_counter() - started) * 1000)
        csr = matrix.tocsr()
        als_ms = []
        for user_id in chosen[:200]:
            u = model.user_index_[user_id]
            started = time.perf_counter()
            als.recommend(u, csr[u], N=25, recalculate_user=True)
            als_ms.append((time.perf_counter() - started) * 1000)
        recent = np.mean([len(model.recent_[u][0]) for u in chosen])
        p50, p99 = np.percentile(up_ms, [50, 99])
        a50, a99 = np.percentile(als_ms, [50, 99])
        print(f"recommend top 25 over {len(model.item_ids_):,} polls, {recent:.0f} recent events"
              f" folded in on average: p50 {p50:.2f} ms, p99 {p99:.2f} ms (goal <= {P99_GOAL_MS} ms)")
        print(f"baseline implicit ALS recommend (recalculate_user): p50 {a50:.2f} ms, "
              f"p99 {a99:.2f} ms; ratio p99 {p99 / a99:.2f}x")


if __name__ == "__main__":
    main()
