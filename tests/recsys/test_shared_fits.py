"""Shared fits (issue 15): inside ``shared_fits`` a matrix is decomposed once,
the reused result is the result, and a different matrix or lambda is never mixed up."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp

from recsys import ease
from recsys.ease import ease_regularization_path, ease_spectrum, ease_weights
from recsys.shared_fits import shared_fits


def _votes(seed: int, users: int = 8, polls: int = 12) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    return sp.csr_matrix((rng.random((users, polls)) < 0.4).astype(float))


@pytest.fixture
def eigh_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every decomposition EASE makes with more polls than users: eigendecompositions
    (a lambda path's spectrum) and Cholesky factorisations (one lambda's B)."""
    calls: list[int] = []
    for name in ("eigh", "cho_factor"):
        real = getattr(scipy.linalg, name)

        def counting(*args, _real=real, **kwargs):
            calls.append(1)
            return _real(*args, **kwargs)

        monkeypatch.setattr(ease.scipy.linalg, name, counting)
    return calls


def test_equal_matrices_are_decomposed_once_and_give_the_unshared_result(
        eigh_calls: list[int]) -> None:
    x = _votes(0)
    alone = ease_weights(x, 5.0)
    spectrum_alone = ease_spectrum(x)
    eigh_calls.clear()
    with shared_fits():
        # A copy with unsorted duplicates is the same matrix: one decomposition.
        coo = x.tocoo()
        twin = sp.csr_matrix((np.r_[coo.data, 0.0 * coo.data[:1]],
                              (np.r_[coo.row, coo.row[:1]], np.r_[coo.col, coo.col[:1]])),
                             shape=x.shape)
        first = ease_weights(x, 5.0)
        first[0, 0] = 99.0  # each call gets its own copy: this must not leak
        second = ease_weights(twin, 5.0)
        w, v = ease_spectrum(twin)
        list(ease_regularization_path(x, (5.0,), np.arange(3)))
    # One factorisation for B, one eigendecomposition for the spectrum and the path.
    assert len(eigh_calls) == 2
    np.testing.assert_array_equal(second, alone)
    np.testing.assert_array_equal(w, spectrum_alone[0])
    np.testing.assert_array_equal(v, spectrum_alone[1])


def test_other_matrix_or_lambda_is_computed_afresh(eigh_calls: list[int]) -> None:
    x, y = _votes(0), _votes(1)
    with shared_fits():
        bx, by = ease_weights(x, 5.0), ease_weights(y, 5.0)
        bx_other_l2 = ease_weights(x, 50.0)
    # Fewer users than polls: each (matrix, lambda) is its own Cholesky factorisation.
    assert len(eigh_calls) == 3
    np.testing.assert_array_equal(bx, ease_weights(x, 5.0))
    np.testing.assert_array_equal(by, ease_weights(y, 5.0))
    np.testing.assert_array_equal(bx_other_l2, ease_weights(x, 50.0))
    assert not np.array_equal(bx, by)


def test_outside_the_block_nothing_is_kept(eigh_calls: list[int]) -> None:
    x = _votes(0)
    with shared_fits():
        ease_weights(x, 5.0)
    ease_weights(x, 5.0)
    ease_weights(x, 5.0)
    assert len(eigh_calls) == 3


def test_label_variants_share_als_and_ease_and_serve_as_if_fitted_alone(
        eigh_calls: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """What follow impact does: one fit per user labelling on the same events."""
    from dataclasses import replace

    from implicit.cpu.als import AlternatingLeastSquares

    from recsys.recipes.user_personalization import UserPersonalization
    from tests.recsys.test_user_personalization import _ten_times_the_users

    data = _ten_times_the_users(seed=3)
    labelled = replace(data, users={u: {**m, "COMMUNITY": str(len(u) % 3)}
                                    for u, m in data.users.items()})
    params = {"factors": 8, "iterations": 8, "exploration_weight": 0.0}
    als_fits: list[int] = []
    real_fit = AlternatingLeastSquares.fit
    monkeypatch.setattr(AlternatingLeastSquares, "fit",
                        lambda self, *a, **k: (als_fits.append(1), real_fit(self, *a, **k))[1])
    eigh_calls.clear()
    alone = [UserPersonalization(**params).fit(d) for d in (data, labelled)]
    als_alone, eigh_alone = len(als_fits), len(eigh_calls)
    assert als_alone == 2 and eigh_alone >= 2
    als_fits.clear()
    eigh_calls.clear()
    with shared_fits():
        shared = [UserPersonalization(**params).fit(d) for d in (data, labelled)]
    # The second labelling costs no ALS and no eigendecomposition.
    assert len(als_fits) == 1
    assert len(eigh_calls) == eigh_alone // 2
    user = next(iter(data.users))
    for a, s in zip(alone, shared):
        np.testing.assert_array_equal(a.item_factors_, s.item_factors_)
        np.testing.assert_array_equal(a.item_item_, s.item_item_)
        assert [(r.item_id, r.score) for r in a.recommend(user, 10)] == \
            [(r.item_id, r.score) for r in s.recommend(user, 10)]


def test_b_from_a_spectrum_at_hand_is_the_closed_form() -> None:
    x = _votes(2)  # more polls than users
    np.testing.assert_allclose(ease_weights(x, 5.0, ease_spectrum(x)), ease_weights(x, 5.0),
                               atol=1e-12)


def test_up_decomposes_once_for_lambda_and_b_and_factorises_once_for_the_final_b(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """More polls than users (MovieLens 100k's shape): the lambda path's eigenvectors
    also give B before the blend; only B on every event is a new (Cholesky) fit."""
    from recsys.events import Interaction
    from recsys.recipes.base import TrainingData
    from recsys.recipes.user_personalization import UserPersonalization

    calls = {"eigh": 0, "cho_factor": 0}
    for name in calls:
        real = getattr(scipy.linalg, name)

        def counting(*args, _name=name, _real=real, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(ease.scipy.linalg, name, counting)
    # 300 users (30 validation users, the blend's minimum) on 400 polls.
    rng = np.random.default_rng(4)
    events = [Interaction(f"u{u}", f"p{p}", "HUNCH", 1_000_000 + 60 * k)
              for k, (u, p) in enumerate(zip(rng.integers(0, 300, 6000),
                                             rng.integers(0, 400, 6000)))]
    model = UserPersonalization(factors=8, iterations=4, exploration_weight=0.0).fit(
        TrainingData(events))
    assert model.item_item_ is not None and model.item_item_.shape == (400, 400)
    assert calls == {"eigh": 1, "cho_factor": 1}


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "tied"])
def test_item_item_validation_ndcg_is_sklearns(ties: bool) -> None:
    from sklearn.metrics import ndcg_score

    from recsys.recipes.user_personalization.components.item_item import ndcg_at

    rng = np.random.default_rng(5)
    truth = (rng.random((40, 60)) < 0.08).astype(float)
    truth[3] = 0.0  # a row without targets scores 0, as in sklearn
    scores = rng.random((40, 60))
    if ties:  # whole blocks tied across the top 10, as empty B columns score 0
        scores = np.round(scores * 4) / 4
    for k in (1, 10, 60):
        assert ndcg_at(truth, scores, k) == pytest.approx(ndcg_score(truth, scores, k=k),
                                                         abs=1e-12)
