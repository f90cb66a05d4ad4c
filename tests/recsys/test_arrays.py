import numpy as np
import pytest

from recsys.arrays import TOP_BLOCK, sorted_distinct, top_candidates, top_k


@pytest.mark.parametrize("keys", [
    np.zeros(0, np.int64),
    np.array([7], np.int64),
    np.array([3, 3, 3], np.int64),
    np.random.default_rng(0).integers(-50, 50, 1_000),
    np.random.default_rng(1).integers(0, 2**40, 5_000),
    # Past 4,096 keys, keys from 0 to 2**32 - 1 sort as uint32: the edges, a key just
    # past them, a negative one and an unsigned input.
    np.r_[np.random.default_rng(2).integers(0, 2**32, 10_000), 0, 2**32 - 1, 2**32 - 1],
    np.r_[np.random.default_rng(3).integers(0, 2**32, 10_000), 2**32],
    np.r_[np.random.default_rng(4).integers(0, 1_000, 10_000), -1],
    np.random.default_rng(5).integers(0, 2**32, 10_000).astype(np.uint64),
])
def test_sorted_distinct_is_np_unique(keys):
    got = sorted_distinct(keys)
    np.testing.assert_array_equal(got, np.unique(keys))
    assert got.dtype == keys.dtype


def test_sorted_distinct_leaves_its_input_alone():
    keys = np.array([5, 1, 5, 2])
    sorted_distinct(keys)
    np.testing.assert_array_equal(keys, [5, 1, 5, 2])


def _score_arrays():
    """Scores as the recipes make them: continuous, integer-like (vote counts, many
    ties), mostly zero (a sparse column), with -inf (excluded polls), and short."""
    rng = np.random.default_rng(0)
    yield rng.standard_normal(20_000).astype(np.float32)
    yield np.log1p(rng.integers(0, 40, 20_000)).astype(np.float32)
    sparse = np.zeros(20_000, np.float32)
    sparse[rng.integers(0, 20_000, 30)] = rng.random(30)
    yield sparse
    excluded = rng.standard_normal(20_000)
    excluded[rng.random(20_000) < 0.5] = -np.inf
    yield excluded
    yield np.zeros(20_000)
    yield rng.standard_normal(3 * TOP_BLOCK)  # fewer blocks than some k below
    yield np.sort(rng.standard_normal(20_000))  # the best all in the last block


@pytest.mark.parametrize("scores", list(_score_arrays()))
@pytest.mark.parametrize("k", [0, 1, 5, 75, 300])
def test_top_candidates_hold_the_k_best_and_every_tie_of_the_kth(scores, k):
    got = top_candidates(scores, k)
    assert np.all(np.diff(got) > 0)  # ascending, distinct
    if k == 0:
        assert len(got) == 0
        return
    kth = np.sort(scores)[::-1][min(k, len(scores)) - 1]
    assert set(np.flatnonzero(scores >= kth)) <= set(got.tolist())
    assert len(got) >= min(k, len(scores))


@pytest.mark.parametrize("scores", list(_score_arrays()))
@pytest.mark.parametrize("k", [0, 1, 5, 50, 300])
def test_top_k_is_the_set_argpartition_gives(scores, k):
    # The blend's candidate pools were built with argpartition: the same set, ties
    # included, keeps the learned weights where they were.
    want = np.argpartition(-scores, k)[:k] if k < len(scores) else np.arange(len(scores))
    assert sorted(top_k(scores, k).tolist()) == sorted(want.tolist())
