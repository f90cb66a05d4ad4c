"""Fits shared between the models of one analysis (issue 15).

The analyses fit User-Personalization a dozen times on the same events, changing only
user labels or text fields. Two of its parts never see those: EASE's item-item weights
(recsys/ease.py, an eigendecomposition that was most of every fit) and the ALS factors
(collaborative component). Both are pure functions of their matrix and settings, so
inside :func:`shared_fits` each is computed once per distinct input and reused: a reused
result is the result. Scoped, not global: outside the block nothing is kept, and a
served model holds no catalog-sized matrices beyond its own.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import numpy as np
import scipy.sparse as sp

# Results kept inside one block (oldest dropped first). Per model seed an analysis
# needs EASE's spectrum and B on the blend's training events and on every event, and
# one ALS fit; at 5,000 polls an EASE entry is 80-200 MB.
SHARED_FIT_ENTRIES = 8

T = TypeVar("T")
_shared: ContextVar[OrderedDict | None] = ContextVar("shared_fits", default=None)


@contextmanager
def shared_fits() -> Iterator[None]:
    """Within the block, :func:`memo` computes each distinct input once."""
    token = _shared.set(OrderedDict())
    try:
        yield
    finally:
        _shared.reset(token)


def sharing() -> bool:
    return _shared.get() is not None


def matrix_key(x: np.ndarray | sp.spmatrix) -> tuple:
    """A digest of the matrix's content: equal matrices, equal keys (sparse matrices
    in any layout, duplicates summed)."""
    digest = hashlib.blake2b(digest_size=16)
    if sp.issparse(x):
        xs = sp.csr_matrix(x, copy=True)
        xs.sum_duplicates()  # also sorts the indices: one layout per matrix
        parts = (xs.indptr, xs.indices, xs.data)
        digest.update(str(xs.dtype).encode())
    else:
        arr = np.asarray(x)
        parts = (arr,)
        digest.update(str(arr.dtype).encode())
    for part in parts:
        digest.update(np.ascontiguousarray(part).tobytes())
    return (tuple(x.shape), digest.hexdigest())


def memo(kind: str, x: np.ndarray | sp.spmatrix, compute: Callable[[], T], *settings: Any) -> T:
    """``compute()``, or its result for an equal ``x`` and ``settings`` computed earlier
    in the same :func:`shared_fits` block. Callers must not write to what it returns."""
    cache = _shared.get()
    if cache is None:
        return compute()
    key = (kind, matrix_key(x), *settings)
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = compute()
    cache[key] = value
    while len(cache) > SHARED_FIT_ENTRIES:
        cache.popitem(last=False)
    return value
