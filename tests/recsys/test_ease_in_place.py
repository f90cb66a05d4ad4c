"""EASE's B is built in the memory of P (recsys/ease.py): the in-place steps must give
the values of the formulas they replace bit for bit, since tuned peers and UP's
item-item component compare runs made before and after the change."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys import ease


@pytest.mark.parametrize("n", [1, 7, ease._MIRROR_ROWS, ease._MIRROR_ROWS + 3, 1_100])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("order", ["C", "F"])  # LAPACK's potri returns Fortran order
def test_the_symmetric_matrix_is_triu_plus_its_transpose_in_c_order(n, dtype, order) -> None:
    p = np.asarray(np.random.default_rng(n).standard_normal((n, n)).astype(dtype), order=order)
    expected = np.triu(p) + np.triu(p, 1).T
    memory = p.__array_interface__["data"][0]
    q = ease._symmetric_from_upper(p)
    assert q.dtype == dtype and q.flags.c_contiguous
    assert q.__array_interface__["data"][0] == memory  # p's own memory, no copy
    np.testing.assert_array_equal(q, expected)


def test_b_is_c_ordered_on_every_path() -> None:
    """A Fortran-ordered B changed UP's scores in the last bits (BLAS sums x @ B in
    another order), so each path returns C order, as before B was built in place."""
    for shape in ((400, 150), (150, 400)):
        x = sp.random(*shape, density=0.05, random_state=3, format="csr")
        x.data[:] = 1.0
        assert ease.ease_weights(x, 10.0).flags.c_contiguous
        if shape[1] > shape[0]:
            assert ease.ease_weights(x, 10.0, ease.ease_spectrum(x)).flags.c_contiguous


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_b_in_place_is_minus_p_over_its_diagonal_with_a_zero_diagonal(dtype) -> None:
    rng = np.random.default_rng(1)
    p = rng.standard_normal((300, 300)).astype(dtype)
    d = rng.uniform(0.5, 2.0, 300).astype(dtype)
    expected = -p / d[np.newaxis, :]
    expected[np.diag_indices_from(expected)] = 0.0
    b = ease._zero_diagonal_ratio(p, d)
    assert b is p  # no second n x n matrix
    np.testing.assert_array_equal(b, expected)


@pytest.mark.parametrize("shape", [(400, 150), (150, 400)])  # inversion; Woodbury
def test_every_path_is_still_the_closed_form(shape) -> None:
    x = sp.random(*shape, density=0.05, random_state=2, format="csr")
    x.data[:] = 1.0
    l2 = 10.0
    gram = (x.T @ x).toarray() + l2 * np.eye(shape[1])
    p = np.linalg.inv(gram)
    expected = -p / np.diag(p)[np.newaxis, :]
    expected[np.diag_indices_from(expected)] = 0.0
    np.testing.assert_allclose(ease.ease_weights(x, l2), expected, atol=1e-10)
    if shape[1] > shape[0]:
        np.testing.assert_allclose(ease.ease_weights(x, l2, ease.ease_spectrum(x)), expected,
                                   atol=1e-10)
