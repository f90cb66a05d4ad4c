"""Collaborative fold-in: implicit's ALS over event-weighted votes and comments.

A user's vector is not looked up but *solved at request time* from their latest events
(an ALS fold-in, a k×k solve), so an event streamed a second ago changes the next feed
without retraining, and a held-out or brand-new user is served exactly like a known one.
Cold polls have no ALS vector worth trusting: a ridge regression learned on warm polls
maps a poll's metadata (model's side features) into the factor space, and a poll's
vector is the ALS one shrunk towards that prediction by how few interactions it has.
A user without events starts from their segments' mean factor (when the segments
component is registered) or the mean user's.

Hand-written: the fold-in solve (implicit's ``recalculate_user`` builds a sparse matrix
per call, too slow for a 5 ms budget) and the metadata ridge solved exactly through
sparse normal equations (``ridge``: scikit-learn's iterative solvers took longer than
the ALS fit on thousands of AUTHOR_ID columns).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from recsys.recipes.user_personalization.components.base import (
    BaseComponent,
    FitEvents,
    UserContext,
    recent_weights,
)
from recsys.recipes.user_personalization.settings import (
    ALS_ALPHA,
    COLD_ITEM_PRIOR_STRENGTH,
    METADATA_RIDGE_ALPHA,
    WARM_ITEM_MIN_INTERACTIONS,
)
from recsys.shared_fits import memo

if TYPE_CHECKING:  # pragma: no cover
    from recsys.recipes.user_personalization.model import UserPersonalization, _UserVectors


def ridge(features: sp.csr_matrix, targets: np.ndarray, alpha: float
          ) -> tuple[np.ndarray, np.ndarray]:
    """Exact ridge regression (centred, unpenalised intercept) of ``targets`` on sparse
    ``features``, as (coef k×d, intercept k).

    Solved through the sparse normal equations: with a few dense text columns and
    thousands of one-hot AUTHOR_ID columns, X^T X is an "arrow" matrix whose sparse LU is
    cheap, where scikit-learn's iterative solvers needed seconds per factor column.
    """
    from scipy.sparse.linalg import splu

    x_mean = np.asarray(features.mean(0)).ravel()
    y_mean = targets.mean(0)
    n = features.shape[0]
    gram = (features.T @ features).tocsc().astype(np.float64)
    # Centring X^T X densely would fill the author block; the rank-one correction is
    # applied through the Sherman-Morrison formula instead.
    system = (gram + alpha * sp.identity(gram.shape[0], format="csc")).tocsc()
    lu = splu(system)
    rhs = np.asarray(features.T @ (targets - y_mean), np.float64)  # X^T Yc = Xc^T Yc
    solved = lu.solve(rhs)
    u = lu.solve(x_mean * n)
    # (G - n m m^T + aI)^-1 b = A^-1 b + A^-1 m (n m^T A^-1 b) / (1 - n m^T A^-1 m)
    denom = 1.0 - x_mean @ u
    coef = solved + np.outer(u, x_mean @ solved) / denom
    intercept = y_mean - x_mean @ coef
    return coef.T.astype(np.float32), intercept.astype(np.float32)


class Collaborative(BaseComponent):
    name = "collaborative"
    features = ("collaborative",)
    weights = ("collaborative", "cold_collaborative")
    affinities = ("collaborative",)

    def fit(self, up: UserPersonalization, events: FitEvents) -> None:
        keep = events.keep
        als_items, als_users = self._als(up, events.users[keep], events.items[keep],
                                         events.weights[keep])
        up._als_users = als_users
        features = up._metadata_features_
        warm = up._train_counts >= WARM_ITEM_MIN_INTERACTIONS
        up.ridge_coef_ = np.zeros((up.factors, features.shape[1]), np.float32)
        up.ridge_intercept_ = als_items[warm].mean(0) if warm.any() else np.zeros(
            up.factors, np.float32)
        if warm.sum() >= 2:
            up.ridge_coef_, up.ridge_intercept_ = ridge(
                features[warm], als_items[warm], METADATA_RIDGE_ALPHA)
        predicted = up._predict_factors(features)
        shrink = (up._train_counts / (up._train_counts + COLD_ITEM_PRIOR_STRENGTH))[:, None]
        up.item_factors_ = (shrink * als_items + (1 - shrink) * predicted).astype(np.float32)
        up.global_user_factor_ = als_users.mean(0).astype(np.float32)

    @staticmethod
    def _als(up: UserPersonalization, users: np.ndarray, items: np.ndarray,
             weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        matrix = sp.csr_matrix((weights, (users, items)),
                               shape=(len(up.user_ids_), len(up.item_ids_)), dtype=np.float32)
        matrix.sum_duplicates()

        def als() -> tuple[np.ndarray, np.ndarray]:
            # implicit's own loops are parallel; BLAS threads on top only oversubscribe.
            with threadpool_limits(1, "blas"):
                model = AlternatingLeastSquares(
                    factors=up.factors, regularization=up.regularization, alpha=ALS_ALPHA,
                    iterations=up.iterations, num_threads=up.num_threads,
                    random_state=up.random_state,
                )
                model.fit(matrix, show_progress=False)
            return (np.asarray(model.item_factors, np.float32),
                    np.asarray(model.user_factors, np.float32))

        # Inside an analysis's shared_fits block, variants on the same events share it.
        items_f, users_f = memo("als", matrix, als, up.factors, up.regularization, ALS_ALPHA,
                                up.iterations, up.num_threads, up.random_state)
        return items_f.copy(), users_f.copy()

    def empty(self, up: UserPersonalization, events: FitEvents) -> None:
        """Dropped: zero factors of the same shape (the serving matrix and the fold-in
        keep their form, every collaborative score is 0), and no ALS fit."""
        k = up.factors
        up._als_users = np.zeros((len(up.user_ids_), k), np.float32)
        up.ridge_coef_ = np.zeros((k, up._metadata_features_.shape[1]), np.float32)
        up.ridge_intercept_ = np.zeros(k, np.float32)
        up.item_factors_ = np.zeros((len(up.item_ids_), k), np.float32)
        up.global_user_factor_ = np.zeros(k, np.float32)

    def score(self, up: UserPersonalization, user: UserContext) -> np.ndarray:
        return (up.item_factors_ @ self.user_vector(up, user.user_id))[None, :]

    def score_at(self, up: UserPersonalization, user: UserContext, polls: np.ndarray
                 ) -> np.ndarray:
        vector = self.request_vector(up, user.user_id, up._user_vectors(user.user_id))
        return (up.item_factors_[polls] @ vector)[None, :]

    @staticmethod
    def request_vector(up: UserPersonalization, user_id: str | None, vectors: _UserVectors
                       ) -> np.ndarray:
        """:meth:`user_vector`, solved once per entry of the request memo ``vectors``
        (``UserPersonalization._user_vectors``): the serving product and the
        re-ranker's head both read it."""
        return vectors.once("fold_in", lambda: Collaborative.user_vector(up, user_id))

    @staticmethod
    def user_vector(up: UserPersonalization, user_id: str | None) -> np.ndarray:
        """The user's factor, solved from their latest events (a fold-in), or their
        segments' mean factor (the mean user's without segments) when they have none."""
        summed = recent_weights(up, user_id)
        if summed is None:
            segs = up.user_segments_.get(user_id, []) if user_id is not None else []
            return up.segment_factors_[segs].mean(0) if segs else up.global_user_factor_
        uniq, w = summed
        y = up.item_factors_[uniq].astype(np.float64)
        confidence = ALS_ALPHA * w
        a = up._yty + (y.T * (confidence - 1)) @ y
        a[np.diag_indices_from(a)] += up.regularization
        return np.linalg.solve(a, y.T @ confidence).astype(np.float32)

    def save(self, up: UserPersonalization) -> dict[str, np.ndarray]:
        return {"item_factors": up.item_factors_, "global_user_factor": up.global_user_factor_,
                "ridge_coef": up.ridge_coef_, "ridge_intercept": up.ridge_intercept_}

    def load(self, up: UserPersonalization, arrays: Mapping[str, np.ndarray]) -> None:
        for name in ("item_factors", "global_user_factor", "ridge_coef", "ridge_intercept"):
            setattr(up, name + "_", arrays[name])

