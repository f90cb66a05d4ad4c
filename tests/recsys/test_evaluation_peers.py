"""Peers and intervals: EASE's closed form, exclusion of seen polls, honest intervals."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.evaluation import (
    ALS,
    BPR,
    EASE,
    ItemKNN,
    ItemKNNShrunk,
    MostPopular,
    PeerSkipped,
    RandomPolls,
    RP3beta,
    ease_weights,
    mean_interval,
    paired_ratio,
)


# More users than polls decomposes X^T X; fewer users than polls decomposes X X^T.
@pytest.mark.parametrize("users", [30, 4], ids=["items-gram", "users-gram"])
def test_ease_closed_form_matches_brute_force_ridge(users: int) -> None:
    rng = np.random.default_rng(0)
    x = (rng.random((users, 6)) < 0.4).astype(float)
    x[0, :2] = 2.0  # counts, as the log weighting sees them
    l2 = 3.0
    closed = ease_weights(sp.csr_matrix(x), l2)
    # Brute force: each poll's column regressed on the others with ridge penalty l2.
    brute = np.zeros((6, 6))
    for j in range(6):
        others = [k for k in range(6) if k != j]
        a = x[:, others]
        brute[others, j] = np.linalg.solve(a.T @ a + l2 * np.eye(5), a.T @ x[:, j])
    np.testing.assert_allclose(closed, brute, atol=1e-9)
    assert np.all(np.diag(closed) == 0)


def _matrix() -> sp.csr_matrix:
    rng = np.random.default_rng(1)
    return sp.csr_matrix((rng.random((40, 25)) < 0.2).astype(np.float32))


@pytest.mark.parametrize("peer", [
    MostPopular(), RandomPolls(random_state=0), EASE(l2=10.0), ALS(factors=4, iterations=3),
    BPR(factors=4, iterations=5), ItemKNN(neighbours=10), RP3beta(neighbours=10),
    ItemKNNShrunk(neighbours=10, shrink=5.0),
], ids=lambda p: p.name)
def test_peers_never_recommend_polls_already_seen(peer) -> None:
    m = _matrix()
    rows = np.arange(m.shape[0])
    top = peer.fit(m).recommend(rows, m, 10)
    assert top.shape[0] == len(rows)
    for r in rows:
        picked = [j for j in top[r] if j >= 0]
        assert picked, "every user has unseen polls to recommend"
        assert set(picked).isdisjoint(m[r].indices)
        assert len(set(picked)) == len(picked)


def test_most_popular_ranks_by_distinct_users() -> None:
    m = sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 0, 1, 0], [5, 0, 1, 0], [0, 0, 0, 0]], float))
    top = MostPopular().fit(m).recommend(np.array([3]), m, 3)
    assert list(top[0]) == [2, 0, 1] or list(top[0]) == [2, 0, 3]


def test_ease_refuses_a_catalog_past_its_limit() -> None:
    with pytest.raises(PeerSkipped, match="--ease-max-items"):
        EASE(max_items=10).fit(_matrix())


def test_interval_shrinks_as_users_grow() -> None:
    rng = np.random.default_rng(5)
    small = mean_interval(rng.random(40), seed=0)
    large = mean_interval(rng.random(4000), seed=0)
    assert small.low < small.mean < small.high
    assert (large.high - large.low) < (small.high - small.low) / 4


def test_paired_ratio_sees_a_consistent_small_gain() -> None:
    rng = np.random.default_rng(6)
    base = rng.random(500)
    better = base * 1.05 + 0.001
    ratio = paired_ratio(better, base, seed=0)
    assert ratio.low > 1.0  # paired: the per-user noise cancels
    assert ratio.mean == pytest.approx(better.mean() / base.mean())


@pytest.mark.parametrize("users", [40, 12], ids=["items-gram", "users-gram"])
def test_ease_regularization_path_matches_each_closed_form(users: int) -> None:
    from recsys.ease import ease_regularization_path

    rng = np.random.default_rng(7)
    x = sp.csr_matrix((rng.random((users, 25)) < 0.2).astype(float))
    rows = np.array([0, 3, 5])
    path = list(ease_regularization_path(x, (1.0, 10.0, 100.0), rows))
    assert [l2 for l2, _ in path] == [1.0, 10.0, 100.0]
    for l2, scores in path:
        np.testing.assert_allclose(scores, x[rows].toarray() @ ease_weights(x, l2), atol=1e-9)


def test_ease_tuned_on_its_path_picks_what_a_plain_grid_search_picks() -> None:
    from sklearn.model_selection import ParameterGrid

    from recsys.evaluation.peers import ease_grid_rankings

    m = _matrix()
    m.data = np.random.default_rng(3).integers(1, 4, m.nnz).astype(np.float32)  # counts
    rows = np.arange(0, 40, 3)
    l2s, weightings = (0.5, 5.0, 50.0), ("binary", "log")
    got = {(p["l2"], p["weighting"]): top
           for p, top in ease_grid_rankings(m, rows, 10, l2s, weightings)}
    assert len(got) == len(ParameterGrid({"l2": l2s, "weighting": weightings}))
    for (l2, weighting), top in got.items():
        plain = EASE(l2=l2, weighting=weighting).fit(m).recommend(rows, m, 10)
        np.testing.assert_array_equal(top, plain)


def _rp3beta_by_hand(x: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """Paudel et al.'s RP3beta written out densely: P(i->u) P(u->j), each ^alpha, over
    popularity(j)^beta, no self-similarity."""
    b = (x > 0).astype(float)
    p_ui = b / np.maximum(b.sum(axis=1, keepdims=True), 1)
    p_iu = b.T / np.maximum(b.T.sum(axis=1, keepdims=True), 1)
    w = (p_iu ** alpha) @ (p_ui ** alpha)
    popularity = b.sum(axis=0)
    w = w / np.where(popularity > 0, popularity, 1.0)[None, :] ** beta
    np.fill_diagonal(w, 0.0)
    return w


@pytest.mark.parametrize("block_cells", [1 << 24, 30], ids=["one-block", "many-blocks"])
def test_rp3beta_matches_its_formula_and_keeps_the_top_neighbours(block_cells, monkeypatch) -> None:
    from recsys.evaluation import peers

    monkeypatch.setattr(peers, "_SIMILARITY_BLOCK_CELLS", block_cells)
    m = _matrix()
    m.data = np.random.default_rng(4).integers(1, 4, m.nnz).astype(np.float32)  # counts
    expected = _rp3beta_by_hand(m.toarray(), alpha=0.8, beta=0.5)
    full = RP3beta(alpha=0.8, beta=0.5, neighbours=m.shape[1]).fit(m).similarity_.toarray()
    np.testing.assert_allclose(full, expected, rtol=1e-5, atol=1e-7)
    top3 = RP3beta(alpha=0.8, beta=0.5, neighbours=3).fit(m).similarity_.toarray()
    for i in range(m.shape[1]):
        kept = np.flatnonzero(top3[i])
        assert len(kept) <= 3
        np.testing.assert_allclose(top3[i, kept], expected[i, kept], rtol=1e-5)
        # Nothing dropped beats what was kept.
        assert expected[i][np.setdiff1d(np.arange(m.shape[1]), kept)].max(initial=0) <= \
            top3[i, kept].min() + 1e-7


def test_item_knn_with_shrinkage_matches_its_formula() -> None:
    m = _matrix()
    b = m.toarray() > 0
    dot = b.T.astype(float) @ b
    norms = np.sqrt(np.diag(dot))
    expected = dot / (norms[:, None] * norms[None, :] + 7.0)
    np.fill_diagonal(expected, 0.0)
    got = ItemKNNShrunk(neighbours=m.shape[1], shrink=7.0).fit(m).similarity_.toarray()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_rp3beta_beats_popularity_where_users_follow_topics() -> None:
    from recsys.evaluation import evaluate
    from tests.recsys._evaluation_data import synthetic_polls

    data = synthetic_polls(users=200, polls=70, seed=11)
    report = evaluate(data, folds=2, seed=0, models="rp3beta-textbook,most-popular",
                      bootstrap_samples=50)
    ndcg = {m.key: float(np.mean(m.pooled("normalized_discounted_cumulative_gain_at_10")))
            for m in report.ok_models()}
    assert set(ndcg) == {"rp3beta-textbook", "most-popular"}
    assert ndcg["rp3beta-textbook"] > ndcg["most-popular"] + 0.03, ndcg
