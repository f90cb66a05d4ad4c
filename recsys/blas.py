"""One way to cap the threads of every BLAS library a process uses.

threadpoolctl only reaches libraries already loaded, and numpy and scipy.linalg each
bring their own OpenBLAS; limiting before scipy.linalg is imported leaves scipy's
eigendecompositions on every core (on a loaded 2-core machine two spinning threads made
one 943x943 eigendecomposition 5-20x slower than one thread).
"""

from __future__ import annotations


def limit_blas(threads: int):
    """Limit every BLAS library to ``threads``; returns threadpoolctl's limiter (also a
    context manager that restores the previous limits on exit)."""
    import numpy  # noqa: F401
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_limits

    return threadpool_limits(threads, user_api="blas")
