"""pair.py DATASET A B [C ...]: UP's per-user NDCG@10 of study runs A and B (same folds,
seed), the mean difference B - A and its 95 % interval over users (the evaluation's own
paired bootstrap, recsys/evaluation/intervals.py)."""

from __future__ import annotations

import pickle
import sys

import numpy as np

from _common import RUNS
from recsys.evaluation.intervals import paired_difference

METRIC = "normalized_discounted_cumulative_gain_at_10"


def per_user(dataset: str, tag: str) -> list[np.ndarray]:
    # Fold files are pickles written by this project's own runs: load no others.
    folds = sorted((RUNS / f"{dataset}-{tag}").glob("fold-*.pickle"))
    return [np.asarray(pickle.loads(f.read_bytes())["record"]["outcomes"]["up"]
                       .per_user[METRIC]) for f in folds]


def main(dataset: str, base: str, *others: str) -> None:
    a = per_user(dataset, base)
    for other in others:
        b = per_user(dataset, other)
        if [len(x) for x in a] != [len(x) for x in b]:
            raise SystemExit(f"{base} and {other} are not the same folds")
        x, y = np.concatenate(a), np.concatenate(b)
        d = paired_difference(y, x)
        print(f"{dataset} ({d.users} users): {base} {x.mean():.4f}, {other} {y.mean():.4f}, "
              f"difference {d.mean:+.4f} [{d.low:+.4f}, {d.high:+.4f}]")


if __name__ == "__main__":
    main(*sys.argv[1:])
