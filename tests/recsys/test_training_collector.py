"""Training fits with the loaded data frozen out of the garbage collector's full passes
(a pass over 2.35M event objects took 1.3 s of a 50k-poll fit), and gives it back."""

from __future__ import annotations

import gc

import pytest

from recsys import training
from recsys.recipes.popularity_count import PopularityCount


@pytest.fixture
def no_freeze():
    gc.unfreeze()  # whatever an earlier test left
    yield
    gc.unfreeze()


def test_objects_loaded_before_the_fit_are_frozen_during_it_and_given_back(no_freeze):
    loaded = [object() for _ in range(1_000)]  # noqa: F841 - held while "fitting"
    assert gc.get_freeze_count() == 0
    with training.loaded_data_frozen():
        frozen = gc.get_freeze_count()
        assert frozen >= 1_000
        made_in_fit = [[] for _ in range(100)]  # noqa: F841
        assert gc.get_freeze_count() == frozen  # what the fit makes is collected as usual
    assert gc.get_freeze_count() == 0


def test_a_freeze_someone_else_made_is_left_as_it_was(no_freeze):
    gc.freeze()
    before = gc.get_freeze_count()
    with training.loaded_data_frozen():
        pass
    assert gc.get_freeze_count() == before  # not undone by us


def test_an_error_in_the_fit_still_unfreezes(no_freeze):
    with pytest.raises(RuntimeError), training.loaded_data_frozen():
        raise RuntimeError("fit failed")
    assert gc.get_freeze_count() == 0


def test_train_fits_inside_it(no_freeze, tmp_path, monkeypatch):
    from recsys.demo_data import generate_demo_data

    data_dir = tmp_path / "demo"
    generate_demo_data(data_dir, users=30, polls=40, days=2, seed=1)
    frozen_during_fit = []
    real_fit = PopularityCount.fit

    def fit(self, data):
        frozen_during_fit.append(gc.get_freeze_count())
        return real_fit(self, data)

    monkeypatch.setattr(PopularityCount, "fit", fit)
    training.train("popularity-count", data_dir, tmp_path / "artifacts", with_metrics=False)
    assert frozen_during_fit and frozen_during_fit[0] > 0
    assert gc.get_freeze_count() == 0
