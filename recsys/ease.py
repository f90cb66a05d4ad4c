"""EASE (Steck, 2019): the closed-form item-item model, shared by the EASE peer of the
evaluation and User-Personalization's item-item component.

B = I - P diag(1/diag(P)) with P = (X^T X + l2 I)^-1: the ridge regression of every
poll's column on all the others, with a zero diagonal. A lambda path goes through one
eigendecomposition of the smaller Gram matrix, so that every l2 of a grid is cheap; one
lambda is a Cholesky factorisation of the smaller Gram matrix.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from recsys.shared_fits import memo, sharing

# Up to this size EASE works in float64; above it float32 halves the memory.
# With lambda >= 50 the regularised Gram matrix is well conditioned enough for float32.
_EASE_FLOAT64_MAX_ITEMS = 8_000

def ease_spectrum(x: np.ndarray | sp.spmatrix) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs ``(w, V)`` with ``X^T X = V diag(w) V^T`` (V: items x rank).

    Decomposes whichever Gram matrix is smaller: ``X^T X`` (items x items) or
    ``X X^T`` (users x users), taking ``V = X^T U / sqrt(w)`` in the second case. On the
    demo data (2,000 users, 5,000 polls) that is an eigendecomposition of 2,000 x 2,000
    instead of an inversion of 5,000 x 5,000 per lambda. Directions outside V have
    eigenvalue 0, which :func:`ease_inverse_terms` accounts for exactly.
    Inside ``recsys.shared_fits.shared_fits`` the arrays are shared: read them, never write.
    """
    return memo("ease spectrum", x, lambda: _ease_spectrum(x))


def _ease_spectrum(x: np.ndarray | sp.spmatrix) -> tuple[np.ndarray, np.ndarray]:
    n_users, n_items = x.shape
    dtype = np.float64 if n_items <= _EASE_FLOAT64_MAX_ITEMS else np.float32
    xs = sp.csr_matrix(x, dtype=dtype)
    if n_items <= n_users:
        w, v = scipy.linalg.eigh((xs.T @ xs).toarray(), driver="evd", overwrite_a=True)
        return np.clip(w, 0.0, None), v
    w, u = scipy.linalg.eigh((xs @ xs.T).toarray(), driver="evd", overwrite_a=True)
    # Eigenvalues at rounding level carry no direction; dividing by their root would
    # amplify noise, and dropping them is exact (they are zeros of the Gram matrix).
    keep = w > max(float(w.max(initial=0.0)), 1.0) * max(n_users, n_items) * np.finfo(dtype).eps
    w, u = w[keep], u[:, keep]
    v = np.asarray(xs.T @ u) / np.sqrt(w)
    return w, v.astype(dtype, copy=False)


def ease_inverse_terms(w: np.ndarray, v: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """``d`` and ``diag(P)`` for ``P = (X^T X + l2 I)^-1 = I / l2 + V diag(d) V^T``."""
    d = 1.0 / (w + l2) - 1.0 / l2
    return d, 1.0 / l2 + (v * v) @ d


Spectrum = tuple[np.ndarray, np.ndarray]


def ease_weights(x: np.ndarray | sp.spmatrix, l2: float,
                 spectrum: Spectrum | None = None) -> np.ndarray:
    """EASE's closed form: B = I - P diag(1/diag(P)), P = (X^T X + l2 I)^-1.

    The ridge regression of every poll's column on all the others, with a zero
    diagonal so that a poll cannot predict itself. With no more polls than users P is
    one Cholesky inversion of the items x items Gram matrix (n³ flops: several times
    cheaper than an eigendecomposition, which only pays when it serves a whole lambda
    path); with more polls than users it is one Cholesky solve with the users x users
    Gram matrix (Woodbury's identity), or, when ``spectrum`` (:func:`ease_spectrum` of
    ``x``) is at hand because a lambda path just used it, one product of its
    eigenvectors (0.14 s against 0.23 s on MovieLens 100k). Inside
    ``recsys.shared_fits.shared_fits`` the result is computed once per matrix and
    lambda, and each call gets its own copy.
    """
    if not sharing():
        return _ease_weights(x, l2, spectrum)
    return memo("ease weights", x, lambda: _ease_weights(x, l2, spectrum), float(l2)).copy()


def _ease_weights(x: np.ndarray | sp.spmatrix, l2: float,
                  spectrum: Spectrum | None = None) -> np.ndarray:
    n_users, n_items = x.shape
    if n_items <= n_users:
        dtype = np.float64 if n_items <= _EASE_FLOAT64_MAX_ITEMS else np.float32
        xs = sp.csr_matrix(x, dtype=dtype)
        gram = (xs.T @ xs).toarray()
        gram[np.diag_indices_from(gram)] += l2
        potrf, potri = scipy.linalg.get_lapack_funcs(("potrf", "potri"), (gram,))
        factor, info = potrf(gram, lower=False, overwrite_a=True)
        if info == 0:
            p, info = potri(factor, lower=False, overwrite_c=True)
        if info != 0:  # l2 > 0 makes the matrix positive definite; only rounding fails
            raise np.linalg.LinAlgError(f"EASE: Cholesky inversion failed (LAPACK info {info})")
        p = _symmetric_from_upper(p)  # potri fills the upper triangle only
        return _zero_diagonal_ratio(p, np.diag(p).copy())
    if spectrum is not None:  # V is items x users: B is one items x users x items product
        w, v = spectrum
        d, diag_p = ease_inverse_terms(w, v, l2)
        p = (v * d) @ v.T
        p[np.diag_indices_from(p)] += 1.0 / l2
        return _zero_diagonal_ratio(p, diag_p)
    # More polls than users: Woodbury's identity, P = (I - X^T (X X^T + l2 I)^-1 X) / l2,
    # one Cholesky solve with the users x users Gram matrix. On MovieLens 100k (943 x
    # 1,682) 0.28 s against 0.45 s through the eigendecomposition, which only pays when
    # it serves a whole lambda path (ease_regularization_path).
    dtype = np.float64 if n_items <= _EASE_FLOAT64_MAX_ITEMS else np.float32
    xs = sp.csr_matrix(x, dtype=dtype)
    kernel = (xs @ xs.T).toarray()
    kernel[np.diag_indices_from(kernel)] += l2
    try:
        factor = scipy.linalg.cho_factor(kernel, overwrite_a=True, check_finite=False)
    except np.linalg.LinAlgError as exc:  # positive definite for l2 > 0: only rounding
        raise np.linalg.LinAlgError(f"EASE: Cholesky factorisation failed ({exc})") from exc
    z = scipy.linalg.cho_solve(factor, xs.toarray(), overwrite_b=True, check_finite=False)
    p = np.asarray(xs.T.tocsr() @ z)
    del z
    p *= -1.0
    p[np.diag_indices_from(p)] += 1.0
    p /= l2
    return _zero_diagonal_ratio(p, np.diag(p).copy())


# Rows per block when one triangle is copied onto the other: a block's transpose is a
# strided copy of rows x n, small beside the matrix.
_MIRROR_ROWS = 512


def _symmetric_from_upper(p: np.ndarray) -> np.ndarray:
    """The symmetric matrix whose upper triangle ``p`` holds, C-ordered, in ``p``'s own
    memory: what ``np.triu(p) + np.triu(p, 1).T`` gives without its three n x n
    temporaries (7 GB at the 24,000 polls of a confirmation run). C order matters
    beyond memory: BLAS sums a product with B in another order for a Fortran-ordered
    B, and UP's scores moved in the last bits. LAPACK returns Fortran order, whose
    transpose is C-ordered with the filled triangle below the diagonal."""
    if p.flags.f_contiguous and not p.flags.c_contiguous:
        q = p.T
        _mirror_lower(q)
        return q
    _mirror_lower(p.T)  # copied through the transposed view: same values, C order kept
    return p


def _mirror_lower(q: np.ndarray) -> None:
    """Fill ``q``'s strict upper triangle from its lower one, in place."""
    n = q.shape[0]
    for start in range(0, n, _MIRROR_ROWS):
        stop = min(start + _MIRROR_ROWS, n)
        for i in range(start, stop):  # the block's own triangle, a row at a time
            q[i, i + 1:stop] = q[i + 1:stop, i]
        q[start:stop, stop:] = q[stop:, start:stop].T


def _zero_diagonal_ratio(p: np.ndarray, diag_p: np.ndarray) -> np.ndarray:
    """B = -P diag(1/diag(P)) with a zero diagonal, computed in ``p``'s own memory
    (-(p / d) is (-p) / d bit for bit: negation is exact)."""
    p /= diag_p[np.newaxis, :]
    np.negative(p, out=p)
    p[np.diag_indices_from(p)] = 0.0
    return p


def ease_scores(xr: np.ndarray, xrv: np.ndarray, w: np.ndarray, v: np.ndarray,
                 l2: float) -> np.ndarray:
    """``xr @ B`` for lambda ``l2`` without forming B (``xrv`` is ``xr @ V``)."""
    d, diag_p = ease_inverse_terms(w, v, l2)
    xp = xr / l2 + (xrv * d) @ v.T
    # X B = X - X P diag(1/diag(P)); B's diagonal is zero by construction.
    return xr - xp / diag_p[np.newaxis, :]


def ease_regularization_path(
    x: sp.csr_matrix, l2s: Sequence[float], rows: np.ndarray,
    spectrum: Spectrum | None = None,
) -> Iterator[tuple[float, np.ndarray]]:
    """EASE's scores of ``rows`` of ``x`` for every lambda, from one eigendecomposition.

    With ``X^T X = V diag(w) V^T`` every lambda costs ``rows x rank x items`` work
    instead of a new items x items inversion, which is what makes tuning lambda cheap.
    Yields ``(l2, scores)``, scores equal to ``x[rows] @ ease_weights(x, l2)``.
    ``spectrum`` is :func:`ease_spectrum` of ``x`` when the caller already has it.
    """
    w, v = spectrum if spectrum is not None else ease_spectrum(x)
    xr = np.asarray(x[rows].toarray(), dtype=v.dtype)
    xrv = xr @ v
    for l2 in l2s:
        yield float(l2), ease_scores(xr, xrv, w, v, l2)
