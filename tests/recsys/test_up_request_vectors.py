"""User-Personalization computes a user's request-time vectors (fold-in factor, content
profile, item-item scores and what content neighbours borrow of them) once, and a feed
page asks each source once: a user's next page reuses their vectors while other users'
events stream in, and recomputes them as soon as anything they depend on moves, with
the very scores a model without the memo gives."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from recsys.events import Impression, Interaction
from recsys.feed import FeedService
from recsys.feed_sessions import CursorSigner, InMemoryFeedSessionStore
from recsys.mixer import Mixer
from recsys.backends.local import LocalRecipeSource
from recsys.recipes.popularity_count import PopularityCount
from recsys.recipes.trending_now import TrendingNow
from recsys.recipes.user_personalization import UserPersonalization
from recsys.recipes.user_personalization.components import (
    Collaborative,
    Content,
    ItemItem,
)
from tests.recsys.test_user_personalization import NEWEST, _fresh, _world

USER = "baking-fan-1"
OTHER = "football-fan-3"
# What a request computes from the user's own events, and what it is computed by.
VECTOR_PARTS = ((Collaborative, "user_vector"), (Content, "user_profile"),
                (ItemItem, "user_own"), (ItemItem, "borrowed"))


@pytest.fixture()
def model() -> UserPersonalization:
    up = _fresh(_world(), exploration_weight=0.3)
    # Every part in play, whatever the small world's blend learned.
    up.blend_ = {**up.blend_, "item_item": 0.4, "item_item_recent": 0.3}
    assert up.item_item_ is not None and up.item_item_neighbours_ is not None
    assert any(up.blend_[f] for f in ("collaborative", "content"))
    return up


@pytest.fixture()
def computed(monkeypatch) -> Counter:
    """How many times each vector was computed."""
    calls: Counter = Counter()
    for owner, name in VECTOR_PARTS:
        original = getattr(owner, name)

        def counting(*args, _original=original, _name=name, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(owner, name, staticmethod(counting))
    return calls


def _without_memo(model: UserPersonalization, user: str | None, n: int = 30):
    """What the model answers when it keeps nothing between requests."""
    model._vectors_changed()
    model._changed()
    return model.recommend(user, n)


def test_a_users_next_request_reuses_their_vectors_while_others_events_arrive(
        model, computed) -> None:
    first = model.score_all(USER)
    assert computed == {name: 1 for _, name in VECTOR_PARTS}
    # Another user's vote and impressions move counts, impressions and scores...
    model.observe([Interaction(OTHER, "baking-2", "HUNCH", NEWEST + 5),
                   Impression(OTHER, ("baking-3", "pets-1"), NEWEST + 6)])
    again = model.score_all(USER)
    assert computed == {name: 1 for _, name in VECTOR_PARTS}  # ... not this user's vectors
    assert (again != first).any()  # the memo is not a cache of answers
    ranked = model.recommend(USER, 30)
    assert computed == {name: 1 for _, name in VECTOR_PARTS}
    assert ranked == _without_memo(model, USER)


@pytest.mark.parametrize("change", [
    "own vote", "own impression only", "new poll", "edited poll", "item-item weight",
    "neighbours dropped"])
def test_vectors_follow_whatever_they_are_computed_from(model, computed, change) -> None:
    model.recommend(USER, 30)
    before = computed.copy()
    if change == "own vote":
        model.observe([Interaction(USER, "pets-2", "HUNCH", NEWEST + 5)])
    elif change == "own impression only":
        model.observe([Impression(USER, ("pets-2",), NEWEST + 5)])
    elif change == "new poll":
        model.add_items({"fresh-bread": {"CATEGORY": "GENERAL", "AUTHOR_ID": "a",
                                         "CREATION_TIMESTAMP": NEWEST + 10,
                                         "QUESTION": "sourdough bread flour oven"}})
    elif change == "edited poll":
        model.add_items({"baking-4": {"CATEGORY": "GENERAL", "AUTHOR_ID": "author-4",
                                      "QUESTION": "football striker penalty goal"}})
    elif change == "item-item weight":
        model.blend_ = {**model.blend_, "item_item": 0.9}
    else:  # as the tests of the neighbours do; the score cache is told, as they are new
        model.item_item_neighbours_ = None
        model._changed()
    served = model.recommend(USER, 30)
    if change == "own impression only":  # impressions are not the user's events
        assert computed == before
    else:
        assert computed["user_own"] == before["user_own"] + 1
    assert served == _without_memo(model, USER)


def test_the_memo_holds_a_bounded_number_of_users(model, monkeypatch) -> None:
    import recsys.recipes.user_personalization.model as up_model

    monkeypatch.setattr(up_model, "USER_VECTOR_CACHE_SIZE", 3)
    users = [u for u in model.user_ids_ if u in model.recent_][:6]
    for user in users:
        model.recommend(user, 5)
    assert list(model._user_vector_memo) == users[-3:]


def _feed(model: UserPersonalization, world) -> tuple[FeedService, Counter]:
    asked: Counter = Counter()
    recipes = {"user-personalization": model,
               "trending-now": TrendingNow().fit(world),
               "popularity-count": PopularityCount().fit(world)}

    class Counted(LocalRecipeSource):
        def candidates(self, user_id, n, **kwargs):
            asked[self.name] += 1
            return super().candidates(user_id, n, **kwargs)

    mixer = Mixer({name: Counted(name, recipe) for name, recipe in recipes.items()})
    return FeedService(mixer, InMemoryFeedSessionStore(), CursorSigner("test")), asked


def test_a_feed_page_asks_each_source_once_and_scores_the_catalog_once(
        model, computed, monkeypatch) -> None:
    world = _world()
    feed, asked = _feed(model, world)
    scored = Counter()
    original = UserPersonalization._serving_scores

    def counting(self, *args, **kwargs):
        scored[None] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(UserPersonalization, "_serving_scores", counting)
    page = feed.page(USER, 10)
    assert len(page.items) == 10
    assert dict(asked) == {"user-personalization": 1, "trending-now": 1,
                           "popularity-count": 1}
    assert scored[None] == 1
    # Others page and vote between this user's pages, as concurrent users do: the next
    # page still asks each source once, and reuses this user's vectors.
    feed.page(OTHER, 10)
    model.observe([Interaction(OTHER, "pets-3", "HUNCH", NEWEST + 5)])
    asked.clear()
    feed.page(USER, 10, page.end_cursor)
    assert dict(asked) == {"user-personalization": 1, "trending-now": 1,
                           "popularity-count": 1}
    assert computed["user_own"] == 2  # this user's first page and the other user's


@pytest.mark.parametrize("dropped", ["collaborative", "content"])
def test_a_block_without_blend_weight_is_not_computed_and_scores_stay_the_formula(
        model, computed, tmp_path, dropped) -> None:
    # The demo's learned blend gives collaborative no weight: its fold-in (a solve per
    # user) would only be multiplied by the zeros the serving matrix holds for it.
    model.blend_ = {**model.blend_, dropped: 0.0, f"cold_{dropped}": 0.0}
    model.save(tmp_path)  # the serving matrix is built from the blend at load
    loaded = UserPersonalization.load(tmp_path)
    for user in (USER, "new-baker", None):
        t_ref = loaded._reference_time(user, None)
        np.testing.assert_allclose(loaded.score_all(user),
                                   loaded._combine(*loaded._features(user, t_ref), user),
                                   rtol=1e-5, atol=1e-5)
    computed.clear()
    loaded._vectors_changed()  # forget the vectors the checks above computed
    for user in (USER, OTHER):
        loaded._changed()
        loaded.recommend(user, 10)
    skipped, kept = (("user_vector", "user_profile") if dropped == "collaborative"
                     else ("user_profile", "user_vector"))
    assert computed[skipped] == 0 and computed[kept] == 2


def test_exploration_noise_is_drawn_once_per_user_and_moment(model, monkeypatch) -> None:
    young = {f"young-{i}": {"CATEGORY": "GENERAL", "AUTHOR_ID": "a",
                            "CREATION_TIMESTAMP": NEWEST - i * 3600,
                            "QUESTION": f"bread oven question {i}"} for i in range(8)}
    model.add_items(young)
    draws = []
    original = np.random.default_rng
    monkeypatch.setattr(np.random, "default_rng",
                        lambda *a, **k: draws.append(a) or original(*a, **k))
    first = model.score_all(USER)
    model.observe([Impression(OTHER, ("young-1", "young-2"), NEWEST)])  # moves the bonus
    again = model.recommend(USER, 30)
    assert len(draws) == 1
    assert (model.score_all(USER) != first).any()
    assert any(r.item_id.startswith("young") for r in again)
    assert again == _without_memo(model, USER)
    model.recommend(USER, 30, now=NEWEST + 3600)  # another moment: another draw
    assert len(draws) == 3  # (and the one _without_memo made)


@pytest.mark.parametrize("cold_weight", [0.0, 0.5])
def test_the_product_with_the_serving_matrix_is_kept_until_a_row_moves(
        tmp_path, cold_weight) -> None:
    up = _fresh(_world(), exploration_weight=0.3)
    up.blend_ = {**up.blend_, "content": 0.8, "cold_content": cold_weight}
    up.save(tmp_path)  # the serving matrix is built from the blend at load
    model = UserPersonalization.load(tmp_path)
    model.recommend(USER, 30)
    kept = model._user_vectors(USER).affinity
    # Another user's vote rewrites that poll's row: the same row unless the blend
    # weighs coldness, which the vote moved.
    model.observe([Interaction(OTHER, "baking-5", "HUNCH", NEWEST + 5)])
    served = model.recommend(USER, 30)
    again = model._user_vectors(USER).affinity
    assert (again is kept) == (cold_weight == 0.0)
    assert served == _without_memo(model, USER)


def test_item_item_rows_gathered_or_multiplied_densely_agree(model, monkeypatch) -> None:
    import recsys.recipes.user_personalization.components.item_item as item_item

    b = model.item_item_
    rng = np.random.default_rng(0)
    for k in (3, len(b) // 2, len(b) - 1):  # few polls, the cut, nearly all of B
        items = np.sort(rng.choice(len(b), k, replace=False)).astype(np.int32)
        weights = rng.random(k).astype(np.float32)
        ways = []
        for share in (0.0, 1.0):  # every history dense, every history gathered
            monkeypatch.setattr(item_item, "ITEM_ITEM_GATHER_MAX_SHARE", share)
            ways.append(ItemItem.own(model, items, weights))
        np.testing.assert_allclose(ways[0], ways[1], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ways[1], weights.astype(np.float64) @ b[items],
                                   rtol=1e-5, atol=1e-6)


def test_replaced_poll_arrays_are_not_kept_alive_by_stale_vectors(model) -> None:
    """A new poll replaces the content-neighbour matrix (and a rebuild the serving matrix,
    ~90 MB at 50k polls); every user's kept vectors are stale then, and must not keep the
    replaced arrays alive until that user asks again (64 users: 64 old matrices)."""
    import gc
    import weakref

    for user in (USER, OTHER):
        model.recommend(user, 30)
    neighbours = weakref.ref(model.item_item_neighbours_)
    matrix = weakref.ref(model._matrix_t)
    model.add_items({"older-poll": {"CATEGORY": "GENERAL", "AUTHOR_ID": "a",
                                    "CREATION_TIMESTAMP": NEWEST - 30 * 86400,
                                    "QUESTION": "bread oven"}})  # older: a rebuild
    gc.collect()
    assert neighbours() is None and matrix() is None
    assert model.recommend(USER, 30) == _without_memo(model, USER)
