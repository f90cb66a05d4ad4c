import numpy as np
import pytest

from recsys.arrays import sorted_distinct


@pytest.mark.parametrize("keys", [
    np.zeros(0, np.int64),
    np.array([7], np.int64),
    np.array([3, 3, 3], np.int64),
    np.random.default_rng(0).integers(-50, 50, 1_000),
    np.random.default_rng(1).integers(0, 2**40, 5_000),
])
def test_sorted_distinct_is_np_unique(keys):
    got = sorted_distinct(keys)
    np.testing.assert_array_equal(got, np.unique(keys))
    assert got.dtype == keys.dtype


def test_sorted_distinct_leaves_its_input_alone():
    keys = np.array([5, 1, 5, 2])
    sorted_distinct(keys)
    np.testing.assert_array_equal(keys, [5, 1, 5, 2])
