"""Benchmark: the follow analyses' engagement control at production size.

Goal: the control's cost per user does not grow with the number of users (a served-feed
log of a million users must finish). The first version filtered every member of a
user's community per user, which is quadratic: 1.2 s at 5,000 users, 22 s at 20,000.
This prints the time per user at each size and the ratio to the smallest size, measured
in the same run (1.0: linear).

    PYTHONPATH=. python bench/bench_follow_control.py [--sizes 5000,20000,100000]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from recsys.analysis.follow_control import Reader, swapped_control

COMMUNITIES = 5
POLLS, SERVED, FOLLOWS = 50_000, 20, 10


def _world(n: int, seed: int = 0):
    """n readers in five communities, 20 served polls and 10 followees each."""
    rng = np.random.default_rng(seed)
    readers = [Reader(f"u{k}", [f"p{x}" for x in rng.integers(0, POLLS, SERVED)])
               for k in range(n)]
    followees = {f"u{k}": {f"u{x}" for x in rng.integers(0, n, FOLLOWS)} for k in range(n)}
    group = {f"u{k}": str(k % COMMUNITIES) for k in range(n)}
    written = {f"u{k}": [f"p{k % POLLS}"] for k in range(n)}

    def authored(users):
        return {p: -math.inf for u in users for p in written.get(u, ())}

    return readers, followees, group, authored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5000,20000,100000")
    sizes = [int(s) for s in parser.parse_args().sizes.split(",")]
    base = None
    for n in sizes:
        readers, followees, group, authored = _world(n)
        start = time.perf_counter()
        swapped_control(readers, followees, group, authored)
        per_user = (time.perf_counter() - start) / n * 1e6
        base = base or per_user
        print(f"{n:>9,} users: {per_user:7.1f} us per user, ratio to {sizes[0]:,} users "
              f"{per_user / base:.2f}")


if __name__ == "__main__":
    main()
