"""Small numpy helpers the fits share."""

from __future__ import annotations

import numpy as np


def sorted_distinct(keys: np.ndarray) -> np.ndarray:
    """``np.unique(keys)`` (sorted distinct values) by one sort.

    numpy 2.4's plain ``np.unique`` hashes first: on 1.5M int64 keys with 1.35M distinct
    values it took 1.4 s, the sort below 0.1 s (the variants with return_counts or
    return_index still sort, and are as fast).
    """
    keys = np.sort(np.ravel(keys))
    if len(keys) < 2:
        return keys
    return keys[np.r_[True, keys[1:] != keys[:-1]]]
