"""The re-ranker (components/rerank.py): learned in fit on the validation users' heads,
switched on only where it ranks held-out validation users better, and served over the
blend's head without breaking what a feed relies on (pagination, filters, exclusions,
exploration, a saved model)."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.events import Interaction
from recsys.recipes.base import ScoredItem, TrainingData
from recsys.recipes.user_personalization import COMPONENT_NAMES, UserPersonalization
from recsys.recipes.user_personalization.components import REGISTRY, UserContext, rerank
from recsys.recipes.user_personalization.settings import RERANK_HEAD
from tests.recsys.test_user_personalization import _ten_times_the_users

T0, HOUR, DAY = 1_700_000_000, 3_600, 86_400
POLLS = 400


def _planted(effect: bool, seed: int = 0, users: int = 3_000) -> TrainingData:
    """Users with short (5 polls) and long (25 polls) histories over polls 100-399. With
    the ``effect``, every user's newest event is a poll of their kind's set: 0-49 for
    short histories, 50-99 for long ones (a third of the users, so the long set is the
    less popular): "which set" depends on history length, which no linear blend column
    multiplies popularity by. Without it, the newest event is any poll at random."""
    rng = np.random.default_rng(seed)
    events = []
    for u in range(users):
        long = u % 3 == 0
        history = rng.choice(np.arange(100, POLLS), 25 if long else 5, replace=False)
        if effect:
            newest = rng.integers(50, 100) if long else rng.integers(0, 50)
        else:
            newest = rng.choice(np.setdiff1d(np.arange(POLLS), history))
        for k, p in enumerate([*history, newest]):
            events.append(Interaction(f"u{u}", f"p{p}", "HUNCH", T0 + u * 10 + k * HOUR))
    items = {f"p{p}": {"CREATION_TIMESTAMP": T0 - DAY} for p in range(POLLS)}
    return TrainingData(events, items, {})


def _fit(data: TrainingData, **params) -> UserPersonalization:
    return UserPersonalization(factors=8, iterations=8, exploration_weight=0.0,
                               **params).fit(data)


@pytest.fixture(scope="module")
def planted() -> TrainingData:
    return _planted(effect=True)


@pytest.fixture(scope="module")
def ranked(planted) -> UserPersonalization:
    return _fit(planted)


def _long_set_hits(model: UserPersonalization, users: range) -> float:
    """Share of long-history users whose top 10 holds a poll of the long set (50-99)."""
    hits = [any(50 <= int(r.item_id[1:]) < 100 for r in model.recommend(f"u{u}", 10))
            for u in users if u % 3 == 0]
    return float(np.mean(hits))


def test_fit_switches_the_ranker_on_where_it_ranks_held_out_users_better(planted, ranked):
    summary = ranked.fit_summary()["rerank"]
    assert summary["on"] and ranked.rerank_ is not None
    assert summary["queries"] >= 100
    # Judged on validation users each part's ranker did not learn from.
    assert summary["ranker_ndcg"] > summary["blend_ndcg"] + 2 * summary["gain_standard_error"]
    # What it learned reaches the feed: long histories get the long set on top.
    blend_only = _fit(planted, components=[c for c in COMPONENT_NAMES if c != "rerank"])
    assert blend_only.rerank_ is None and blend_only.fit_summary()["rerank"] == {"on": False}
    assert _long_set_hits(ranked, range(600)) > _long_set_hits(blend_only, range(600)) + 0.2


def test_the_ranker_stays_off_when_the_newest_events_are_noise():
    model = _fit(_planted(effect=False))
    summary = model.fit_summary()["rerank"]
    assert summary["queries"] >= 20  # judged, and judged worse: not too few to judge
    assert not summary["on"] and model.rerank_ is None
    assert summary["ranker_ndcg"] <= summary["blend_ndcg"]


def _blend_feed(model, user: str, n: int) -> list[ScoredItem]:
    """The blend's feed for ``user``: ``recommend`` without the re-ranker."""
    polls, scores = model._blend_top(user, n, None, (), None)
    return [ScoredItem(model.item_ids_[i], s) for i, s in zip(polls.tolist(), scores.tolist())]


def test_served_order_is_the_rankers_over_the_blends_head(ranked):
    user = "u3"
    blend_head = _blend_feed(ranked, user, RERANK_HEAD)
    served = ranked.recommend(user, RERANK_HEAD)
    # The same polls as the blend's head, in the ranker's order.
    assert {s.item_id for s in served} == {s.item_id for s in blend_head}
    polls = np.array([ranked.item_index_[s.item_id] for s in blend_head])
    t_ref = ranked._reference_time(user, None)
    # Fit learns from heads taken as serving takes them.
    np.testing.assert_array_equal(rerank.head_polls(ranked, user, t_ref), polls)
    rows = rerank.head_rows(ranked, user, t_ref, polls)
    predicted = ranked.rerank_.predict(rows)
    expected = [blend_head[j].item_id for j in np.argsort(-predicted, kind="stable")]
    assert [s.item_id for s in served] == expected
    assert [s.item_id for s in served] != [s.item_id for s in blend_head]
    # Scores stay in the blend's units: the head's blend scores, dealt best first.
    np.testing.assert_allclose([s.score for s in served],
                               sorted((s.score for s in blend_head), reverse=True))


def test_heads_keep_touched_polls_where_the_feed_does():
    """With ``exclude_interacted`` off a feed may show polls the user touched, so the
    heads the ranker learns from hold them too: fit's head is the served one."""
    model = _fit(_planted(effect=True, users=1_000), exclude_interacted=False)
    user = "u3"
    touched = set(model.interacted_[user].tolist())
    head = rerank.head_polls(model, user, model._reference_time(user, None))
    assert touched & set(head.tolist())  # the user's own polls rank high under the blend
    served = _blend_feed(model, user, RERANK_HEAD)
    np.testing.assert_array_equal(head, [model.item_index_[s.item_id] for s in served])


def test_pages_are_prefixes_and_past_the_head_the_blend_orders(ranked):
    user = "u6"
    long = ranked.recommend(user, RERANK_HEAD + 50)
    for n in (1, 10, 25, RERANK_HEAD):
        assert ranked.recommend(user, n) == long[:n]
    tail = _blend_feed(ranked, user, RERANK_HEAD + 50)[RERANK_HEAD:]
    assert long[RERANK_HEAD:] == tail


def test_exclusions_and_filters_choose_the_head_before_the_ranker(ranked):
    user = "u9"
    first = ranked.recommend(user, 10)
    excluded = {s.item_id for s in first[:3]}
    kept = ranked.recommend(user, 10, exclude=excluded)
    assert not excluded & {s.item_id for s in kept}

    def even(poll_id: str) -> bool:
        return int(poll_id[1:]) % 2 == 0

    filtered = ranked.recommend(user, 30, allow=even)
    assert len(filtered) == 30 and all(even(s.item_id) for s in filtered)
    # Polls the user touched are never served (exclude_interacted).
    touched = {ranked.item_ids_[i] for i in ranked.interacted_[user]}
    assert not touched & {s.item_id for s in ranked.recommend(user, RERANK_HEAD)}


def test_feed_scores_are_the_blends_without_the_polls_a_feed_never_holds(ranked):
    user = "u15"
    touched = ranked.interacted_[user]
    feed = ranked.feed_scores(user)
    everything = ranked.score_all(user)
    assert len(touched) and np.isneginf(feed[touched]).all()
    untouched = np.setdiff1d(np.arange(len(feed)), touched)
    np.testing.assert_array_equal(feed[untouched], everything[untouched])
    # The blend's feed is exactly the top of these scores (ties to the lower poll id).
    polls, scores = ranked._blend_top(user, 30, None, (), None)
    np.testing.assert_array_equal(polls, np.lexsort((np.arange(len(feed)), -feed))[:30])
    np.testing.assert_array_equal(scores, feed[polls])


def test_a_filter_is_asked_only_until_the_head_is_full(ranked):
    asked: list[str] = []

    def allow(poll_id: str) -> bool:  # a caller's predicate may be costly, or strict
        asked.append(poll_id)
        return True

    feed = ranked.recommend("u18", 5, allow=allow)
    assert len(feed) == 5 and len(asked) == RERANK_HEAD  # the ranker's head, no more
    assert set(asked) >= {s.item_id for s in feed}


def test_exploration_bonus_weighs_what_it_does_without_the_ranker(ranked):
    user = "u12"
    try:
        ranked.exploration_weight = 1.0  # read live at serving
        bonus = ranked.exploration_bonus(user)
        assert bonus.max() > 0
        served = ranked.recommend(user, RERANK_HEAD)
        blend_head = _blend_feed(ranked, user, RERANK_HEAD)
    finally:
        ranked.exploration_weight = 0.0
    assert [s.score for s in served] == sorted((s.score for s in served), reverse=True)
    # Take each poll's bonus off: what is left is the blend's scores of the head, dealt
    # to the ranker's order; the bonus itself is each poll's own.
    without = sorted((s.score - bonus[ranked.item_index_[s.item_id]] for s in served),
                     reverse=True)
    blend_scores = sorted((s.score - bonus[ranked.item_index_[s.item_id]]
                           for s in blend_head), reverse=True)
    np.testing.assert_allclose(without, blend_scores, rtol=1e-5, atol=1e-5)


def test_a_saved_model_serves_the_same_ranked_feed(ranked, tmp_path):
    ranked.save(tmp_path / "up")
    loaded = UserPersonalization.load(tmp_path / "up")
    assert loaded.rerank_ is not None
    for user in ("u0", "u1", "u3", "u2999"):
        assert loaded.recommend(user, 50) == ranked.recommend(user, 50)


def test_a_model_saved_before_the_ranker_loads_without_one(ranked):
    model = UserPersonalization()
    REGISTRY["rerank"]().load(model, {})
    assert model.rerank_ is None


@pytest.fixture(scope="module")
def windowed():
    """Item-item over an active window smaller than the catalog: B's polls are not a
    prefix, and polls outside it borrow from their content neighbours."""
    data = _ten_times_the_users(seed=3)
    n_polls = len({e.item_id for e in data.interactions} | set(data.items))
    return _fit(data, item_item_max_items=n_polls // 2, item_item_active_polls=n_polls // 3)


@pytest.mark.parametrize("which", ["planted", "windowed"])
def test_score_at_is_the_catalog_columns_at_those_polls(which, ranked, windowed):
    model = {"planted": ranked, "windowed": windowed}[which]
    rng = np.random.default_rng(0)
    n = len(model.item_ids_)
    users = [model.user_ids_[0], model.user_ids_[len(model.user_ids_) // 2], "nobody", None]
    for user_id in users:
        context = UserContext(user_id, model._reference_time(user_id, None))
        for polls in (rng.choice(n, 37, replace=False), np.arange(n)):
            for name in COMPONENT_NAMES:
                component = model._components[name]
                np.testing.assert_allclose(
                    component.score_at(model, context, polls),
                    component.score(model, context)[:, polls], rtol=1e-5, atol=1e-6,
                    err_msg=f"{name} for {user_id}")
    if which == "windowed":
        assert not (model.item_item_polls_ == np.arange(len(model.item_item_polls_))).all()


def test_a_ranked_request_solves_each_user_vector_once(ranked, monkeypatch, tmp_path):
    """The serving row and the head's columns share the request memo: one fold-in, one
    pass per item-item column and one gather of the successors and of the walk's
    arrivals a request, and a memo made before the user's next
    event is not read after it."""
    from recsys.recipes.user_personalization.components import (
        Collaborative,
        ItemItem,
        sequence,
        walk,
    )

    ranked.save(tmp_path / "up")
    model = UserPersonalization.load(tmp_path / "up")  # observe below must not touch `ranked`
    calls = {"fold_in": 0, "item_item": 0, "sequence": 0, "walk": 0}

    def counted(name, f):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return f(*args, **kwargs)
        return staticmethod(wrapper)

    monkeypatch.setattr(Collaborative, "user_vector", counted("fold_in", Collaborative.user_vector))
    monkeypatch.setattr(ItemItem, "own", counted("item_item", ItemItem.own))
    for module in (sequence, walk):  # the successors' and the arrivals' gathers
        monkeypatch.setattr(module, "weighted_rows",
                            counted(module.__name__.rsplit(".", 1)[1], module.weighted_rows))
    assert model.rerank_ is not None
    assert min(model.blend_[n] for n in ("collaborative", "sequence", "walk")) > 0
    model.recommend("u0", 10)
    # Both item-item columns (every touched poll, the latest events) once each: the
    # head's columns read what the serving row computed.
    assert calls == {"fold_in": 1, "item_item": 2, "sequence": 1, "walk": 1}
    model.observe([Interaction("u0", "p60", "VOTE", int(model.newest_timestamp_) + 60)])
    model.recommend("u0", 10)
    assert calls == {"fold_in": 2, "item_item": 4, "sequence": 2, "walk": 2}
    context = UserContext("u0", model._reference_time("u0", None))
    polls = np.arange(len(model.item_ids_))
    for name in ("collaborative", "content", "item_item", "sequence", "walk"):
        component = model._components[name]
        np.testing.assert_allclose(component.score_at(model, context, polls),
                                   component.score(model, context), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("errors, on", [(0.5, False), (2.0, True)])
def test_the_switch_wants_a_gain_beyond_its_standard_error(planted, monkeypatch, errors, on):
    """The held-out judgement says the ranker gains ``errors`` standard errors."""
    def judged(queries, random_state):
        n = len(queries)
        spread = np.where(np.arange(n) % 2 == 0, 0.1, -0.1)
        error = spread.std(ddof=1) / np.sqrt(n)
        return np.column_stack([np.full(n, 0.2), 0.2 + spread + errors * error])

    monkeypatch.setattr(rerank, "judge", judged)
    model = _fit(planted)
    summary = model.fit_summary()["rerank"]
    assert summary["on"] is on and (model.rerank_ is not None) is on
    assert summary["ranker_ndcg"] > summary["blend_ndcg"]  # a gain, either way


def _serve_in_child(model: UserPersonalization, user: str, queue) -> None:
    queue.put([s.item_id for s in model.recommend(user, 20)])


def test_a_forked_worker_serves_the_ranked_feed(ranked):
    """Servers and the analyses fork workers after the model served: LightGBM's OpenMP
    pool, had the parent started one, would hang the child's first prediction."""
    import multiprocessing as mp

    expected = [s.item_id for s in ranked.recommend("u3", 20)]  # the parent serves first
    context = mp.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_serve_in_child, args=(ranked, "u3", queue))
    child.start()
    try:
        assert queue.get(timeout=60) == expected
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()


def test_the_exploration_analysis_reads_gaps_in_the_served_order(ranked):
    """The replay's "gap below the feed's last slot" is read in the order the feed
    serves: the polls a feed holds are exactly the best of the served scores (the
    ranker's head, the user's own polls left out), none of them below the last slot."""
    from recsys.analysis.exploration import served_scores

    posted = np.ones(len(ranked.item_ids_), bool)
    moved = 0
    for user in (f"u{u}" for u in range(0, 3_000, 150)):
        feed = [ranked.item_index_[s.item_id] for s in ranked.recommend(user, 10)]
        served = served_scores(ranked, user, None, posted)
        last_slot = np.sort(served)[-10]
        assert (served[feed] >= last_slot).all()
        assert set(np.flatnonzero(served > last_slot)) <= set(feed)
        blend = ranked.feed_scores(user)
        moved += int((blend[feed] < np.sort(blend)[-10]).any())
    assert moved  # the ranker did lift polls the blend alone ranked below the slot


def test_the_replays_posted_polls_are_what_its_feed_may_hold(ranked, tmp_path):
    """A poll first named by a replayed vote holds feed slots (the replay's filter lets
    it through), so the served scores the gaps are read from keep it: with it left out,
    the ranker's head and so its order differed from the feed for most users."""
    from recsys.analysis.exploration import posted_mask, served_scores

    ranked.save(tmp_path / "up")
    model = UserPersonalization.load(tmp_path / "up")
    created_at = np.full(len(model.item_ids_), -np.inf)  # every poll posted before
    now = float(model.newest_timestamp_) + 120
    model.observe([Interaction("u1", "brand-new", "VOTE", int(now) - 60)])
    posted = posted_mask(model, created_at, now)
    assert posted[model.item_index_["brand-new"]]
    for user in (f"u{u}" for u in range(0, 3_000, 150)):
        feed = [model.item_index_[s.item_id] for s in model.recommend(user, 10, now=now)]
        served = served_scores(model, user, now, posted)
        assert set(np.argsort(-served, kind="stable")[:10]) == set(feed), user
