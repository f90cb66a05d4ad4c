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


def collected(obj) -> bool:
    """Whether the collector's generations hold ``obj`` (a frozen object is in none).
    Not gc.get_freeze_count(): other threads of the test process free frozen objects
    meanwhile, so the count moves on its own."""
    return any(o is obj for o in gc.get_objects())


def test_objects_loaded_before_the_fit_are_frozen_during_it_and_given_back(no_freeze):
    loaded = []  # stands for the training data
    assert collected(loaded)
    with training.loaded_data_frozen():
        assert not collected(loaded)
        made_in_fit = []
        assert collected(made_in_fit)  # what the fit makes is collected as usual
    assert collected(loaded) and gc.get_freeze_count() == 0


def test_a_freeze_someone_else_made_is_left_as_it_was(no_freeze):
    theirs = []
    gc.freeze()
    with training.loaded_data_frozen():
        ours = []
    assert not collected(theirs)  # still frozen: not undone by us
    assert collected(ours)


def test_an_error_in_the_fit_still_unfreezes(no_freeze):
    loaded = []
    with pytest.raises(RuntimeError), training.loaded_data_frozen():
        raise RuntimeError("fit failed")
    assert collected(loaded) and gc.get_freeze_count() == 0


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
