"""User-Personalization: what a feed user would notice.

The world is small and built by hand: three communities (football, baking, pets) whose
members vote mostly on their own topic's polls, each poll with a question in words of
its topic. Tests reach for behaviour (what ranks above what), never for internals.
"""

from __future__ import annotations

import numpy as np
import pytest

from recsys.events import Impression, Interaction
from recsys.recipes.base import Recipe, TrainingData
from recsys.recipes.user_personalization import (
    NotFitted,
    UserPersonalization,
    UserPersonalizationError,
)
from recsys.recipes.user_personalization import blend
from recsys.recipes.user_personalization.components.item_item import ItemItem
from recsys.recipes.user_personalization.settings import (
    ITEM_ITEM_CONTENT_NEIGHBOURS,
    ITEM_ITEM_NEIGHBOUR_PRIOR,
    POOL_HEAD_PER_COLUMN,
    POOL_RANDOM_POLLS,
)

DAY = 86_400
T0 = 1_700_000_000
TOPICS = {
    "football": ["football", "goal", "striker", "match", "league", "penalty", "stadium"],
    "baking": ["bread", "flour", "oven", "dough", "cake", "sourdough", "yeast"],
    "pets": ["dog", "cat", "puppy", "kitten", "leash", "vet", "pet"],
}
POLLS_PER_TOPIC = 30
USERS_PER_TOPIC = 20
NEWEST = T0 + 60 * DAY  # the newest training event


def _question(topic: str, n: int) -> str:
    words = TOPICS[topic]
    return (f"Poll {n}: what do you think about the {words[n % 7]} and the "
            f"{words[(n + 2) % 7]}, or maybe the {words[(n + 4) % 7]}?")


def _world(seed: int = 0) -> TrainingData:
    rng = np.random.default_rng(seed)
    items: dict[str, dict] = {}
    for topic in TOPICS:
        for n in range(POLLS_PER_TOPIC):
            items[f"{topic}-{n}"] = {
                "CATEGORY": "GENERAL", "AUTHOR_ID": f"author-{n % 5}",
                # Old polls: well outside the 30-day exploration window.
                "CREATION_TIMESTAMP": T0 + n * DAY // 10,
                "QUESTION": _question(topic, n), "OPTIONS": "yes|no",
            }
    users: dict[str, dict] = {}
    interactions: list[Interaction] = []
    for topic in TOPICS:
        for u in range(USERS_PER_TOPIC):
            user_id = f"{topic}-fan-{u}"
            users[user_id] = {"COMMUNITY": topic, "AGE": 30, "LOCALE": "en_GB"}
            own = rng.choice(POLLS_PER_TOPIC, size=10, replace=False)
            other_topic = rng.choice([t for t in TOPICS if t != topic])
            for k, n in enumerate(own):
                interactions.append(Interaction(
                    user_id, f"{topic}-{n}", "HUNCH", T0 + (k + 1) * 5 * DAY))
            interactions.append(Interaction(
                user_id, f"{other_topic}-{rng.integers(POLLS_PER_TOPIC)}", "HUNCH",
                T0 + 55 * DAY))
    interactions.append(Interaction("football-fan-0", "football-0", "COMMENT", NEWEST))
    # A new user known only from metadata: a baker who has not voted yet.
    users["new-baker"] = {"COMMUNITY": "baking", "AGE": 30, "LOCALE": "en_GB"}
    return TrainingData(interactions=interactions, items=items, users=users)


def _topic_share(recs, topic: str) -> float:
    return sum(r.item_id.startswith(topic) for r in recs) / max(1, len(recs))


@pytest.fixture(scope="module")
def world() -> TrainingData:
    return _world()


@pytest.fixture(scope="module")
def fitted(world: TrainingData) -> UserPersonalization:
    return UserPersonalization(factors=8, iterations=8, exploration_weight=0.0).fit(world)


def _fresh(world: TrainingData, **params) -> UserPersonalization:
    params.setdefault("factors", 8)
    params.setdefault("iterations", 8)
    params.setdefault("exploration_weight", 0.0)
    return UserPersonalization(**params).fit(world)

def _ten_times_the_users(seed: int) -> TrainingData:
    """A world with ten copies of every user: enough validation users to learn the blend.
    Each user's one off-topic vote moves to before their topic's: in _world it is every
    user's newest event, so every validation target would be that noise and the blend
    would rightly learn to serve other topics."""
    big = _world(seed=seed)

    def moved(e: Interaction) -> int:
        off_topic = e.user_id.split("-")[0] != e.item_id.split("-")[0]
        return T0 + DAY if off_topic else e.timestamp

    interactions = [Interaction(f"{e.user_id}#{r}", e.item_id, e.event_type, moved(e) + r)
                    for r in range(10) for e in big.interactions]
    users = {f"{u}#{r}": m for r in range(10) for u, m in big.users.items()}
    return TrainingData(interactions, big.items, users)



def test_is_a_recipe_and_serves_a_known_user_their_topic(fitted) -> None:
    assert isinstance(fitted, Recipe)
    recs = fitted.recommend("football-fan-3", 10)
    assert len(recs) == 10
    assert [r.score for r in recs] == sorted((r.score for r in recs), reverse=True)
    assert _topic_share(recs, "football") >= 0.8


def test_cold_poll_scored_from_text_ranks_by_the_users_interests(world) -> None:
    model = _fresh(world)
    model.add_items({
        "cold-football": {"CATEGORY": "GENERAL", "AUTHOR_ID": "newcomer",
                          "CREATION_TIMESTAMP": NEWEST - DAY,
                          "QUESTION": "Which striker scores the winning goal in the league match?"},
        "cold-baking": {"CATEGORY": "GENERAL", "AUTHOR_ID": "newcomer",
                        "CREATION_TIMESTAMP": NEWEST - DAY,
                        "QUESTION": "Which flour makes the best sourdough bread dough?"},
    })
    scores = model.score_all("football-fan-3", now=NEWEST)
    football, baking = (scores[model.item_index_[i]] for i in ("cold-football", "cold-baking"))
    assert np.isfinite(football) and np.isfinite(baking)
    assert football > baking
    scores = model.score_all("baking-fan-3", now=NEWEST)
    assert scores[model.item_index_["cold-baking"]] > scores[model.item_index_["cold-football"]]


def test_without_text_the_cold_polls_cannot_be_told_apart(world) -> None:
    model = _fresh(world, use_text=False)
    same_meta = {"CATEGORY": "GENERAL", "AUTHOR_ID": "newcomer",
                 "CREATION_TIMESTAMP": NEWEST - DAY}
    model.add_items({
        "cold-football": {**same_meta, "QUESTION": "striker goal league match"},
        "cold-baking": {**same_meta, "QUESTION": "flour sourdough bread dough"},
    })
    scores = model.score_all("football-fan-3", now=NEWEST)
    assert scores[model.item_index_["cold-football"]] == pytest.approx(
        scores[model.item_index_["cold-baking"]])


def test_text_fields_select_what_is_read(world) -> None:
    # Only OPTIONS is read, and every poll's OPTIONS is "yes|no": text says nothing.
    model = _fresh(world, text_fields=("OPTIONS",))
    same_meta = {"CATEGORY": "GENERAL", "AUTHOR_ID": "newcomer", "OPTIONS": "yes|no",
                 "CREATION_TIMESTAMP": NEWEST - DAY}
    model.add_items({
        "cold-football": {**same_meta, "QUESTION": "striker goal league match"},
        "cold-baking": {**same_meta, "QUESTION": "flour sourdough bread dough"},
    })
    scores = model.score_all("football-fan-3", now=NEWEST)
    assert scores[model.item_index_["cold-football"]] == pytest.approx(
        scores[model.item_index_["cold-baking"]])


def test_text_on_without_any_text_is_the_model_without_text(world) -> None:
    # Amazon Toys and Beauty have no item metadata at all. The encoder fitted on no
    # words gave one zero column, and the item-item component then built all-zero
    # content neighbours for the cold polls (Beauty fold 1: 0.0335 against 0.0298).
    bare = {i: {"CREATION_TIMESTAMP": m["CREATION_TIMESTAMP"]} for i, m in world.items.items()}
    data = TrainingData(world.interactions, bare, world.users)
    text_on = _fresh(data)
    text_off = _fresh(data, use_text=False)
    assert text_on.encoder_ is None and text_on.content_.shape == text_off.content_.shape
    new_polls = {"cold-1": {"CREATION_TIMESTAMP": NEWEST - DAY},
                 "cold-2": {"CREATION_TIMESTAMP": NEWEST - 2 * DAY}}
    for model in (text_on, text_off):
        model.add_items(new_polls)
        model.observe([Interaction("pets-fan-2", "cold-1", "HUNCH", NEWEST + 1)])
    for user in ("pets-fan-1", "baking-fan-4", "new-baker", None):
        np.testing.assert_array_equal(text_on.score_all(user, now=NEWEST + 5),
                                      text_off.score_all(user, now=NEWEST + 5))


def test_cold_user_is_served_from_their_segment_then_from_their_first_events(world) -> None:
    model = _fresh(world)
    before = model.recommend("new-baker", 10, now=NEWEST)
    assert _topic_share(before, "baking") >= 0.6
    model.observe([Interaction("new-baker", f"pets-{n}", "HUNCH", NEWEST + n)
                   for n in range(5)])
    after = model.recommend("new-baker", 10, now=NEWEST + 10)
    assert _topic_share(after, "pets") > _topic_share(before, "pets")
    assert not {f"pets-{n}" for n in range(5)} & {r.item_id for r in after}


def test_rescaling_the_segment_weight_rescales_its_share_of_the_scores(world) -> None:
    # Follow impact's trade-off curve rescales the learned weight in place; scores must
    # follow it (cached segment rows once kept the old weight: a flat curve).
    model = _fresh(world)
    learned = model.blend_["segment"] or 1.0

    def scores(multiplier: float) -> np.ndarray:
        model.blend_ = {**model.blend_, "segment": learned * multiplier}
        return model.score_all("new-baker", now=NEWEST)

    base, once, twice = scores(0.0), scores(1.0), scores(2.0)
    assert np.abs(once - base).max() > 1e-3
    np.testing.assert_allclose(twice - once, once - base, atol=1e-4)
    np.testing.assert_allclose(scores(0.0), base, atol=1e-6)


def test_events_after_training_change_the_next_feed_without_retraining(world) -> None:
    model = _fresh(world)
    before = model.recommend("football-fan-5", 10)
    assert _topic_share(before, "football") >= 0.8
    model.observe([Interaction("football-fan-5", f"pets-{n}", "COMMENT", NEWEST + n)
                   for n in range(10, 30)])
    after = model.recommend("football-fan-5", 10)
    assert _topic_share(after, "pets") > _topic_share(before, "pets")


def test_unknown_poll_in_an_event_becomes_recommendable(fitted, world) -> None:
    model = _fresh(world)
    model.observe([Interaction("someone", "brand-new-poll", "HUNCH", NEWEST + 5)])
    assert "brand-new-poll" in model.item_index_
    assert np.isfinite(model.score_all("football-fan-1")[model.item_index_["brand-new-poll"]])


def test_event_weights_change_the_ranking(world) -> None:
    events = [Interaction("mixed", "baking-1", "COMMENT", NEWEST + 1)] + [
        Interaction("mixed", f"pets-{n}", "HUNCH", NEWEST + 2 + n) for n in range(3)]

    def baking_share(comment_weight: float) -> float:
        model = _fresh(world, event_weights={"HUNCH": 1.0, "COMMENT": comment_weight})
        model.observe(events)
        return _topic_share(model.recommend("mixed", 10), "baking")

    assert baking_share(8.0) > baking_share(0.5)


def _with_new_polls(world: TrainingData) -> TrainingData:
    items = dict(world.items)
    for n in range(6):
        items[f"fresh-{n}"] = {"CATEGORY": "GENERAL", "AUTHOR_ID": "author-9",
                               "CREATION_TIMESTAMP": NEWEST - 2 * DAY,
                               "QUESTION": f"Totally new question number {n}"}
    return TrainingData(interactions=world.interactions, items=items, users=world.users)


def test_exploration_weight_zero_adds_nothing(world) -> None:
    data = _with_new_polls(world)
    model = _fresh(data, exploration_weight=0.0)
    plain = model.score_all("pets-fan-2")
    recs = model.recommend("pets-fan-2", 25)
    assert not model.exploration_bonus("pets-fan-2").any()
    model.exploration_weight = 0.8
    assert not np.array_equal(model.score_all("pets-fan-2"), plain)
    model.exploration_weight = 0.0
    np.testing.assert_array_equal(model.score_all("pets-fan-2"), plain)
    assert model.recommend("pets-fan-2", 25) == recs


def test_exploration_gives_new_polls_exposure_shrinking_with_impressions(world) -> None:
    data = _with_new_polls(world)
    model = _fresh(data, exploration_weight=0.0)
    fresh = {f"fresh-{n}" for n in range(6)}

    def exposure() -> int:
        return sum(len(fresh & {r.item_id for r in model.recommend(u, 25)})
                   for u in ("pets-fan-2", "baking-fan-4", "football-fan-7"))

    without = exposure()
    model.exploration_weight = 1.0
    assert exposure() > without

    model.observe([Impression(f"viewer-{k}", ("fresh-0",), NEWEST + k) for k in range(40)])
    bonus = model.exploration_bonus("pets-fan-2")
    assert bonus[model.item_index_["fresh-0"]] < bonus[model.item_index_["fresh-1"]]
    # Older than the 30-day cut-off: no bonus at all.
    assert bonus[model.item_index_["pets-0"]] == 0.0
    model.exploration_item_age_cutoff_days = 1.0
    assert not model.exploration_bonus("pets-fan-2")[model.item_index_["fresh-1"]]


def test_one_account_reporting_a_poll_seen_again_and_again_is_one_viewer(world) -> None:
    """Exposure counts the users shown a poll: one account reporting a new poll seen
    500 times (separate events, under a minute of the mutation limit) counted 500 and
    took away its exploration for everyone; now it is one viewer, streamed or trained."""
    data = _with_new_polls(world)
    model = _fresh(data, exploration_weight=1.0)
    i, other = model.item_index_["fresh-0"], model.item_index_["fresh-1"]
    before = model.impressions_[i]
    assert before == model.impressions_[other]
    spam = [Impression("spammer", ("fresh-0",), NEWEST + k, event_id=f"m{k}")
            for k in range(500)]
    model.observe(spam)
    assert model.impressions_[i] == before + 1
    one_viewer = model.exploration_bonus("pets-fan-2")[i]
    model.observe([Impression(f"viewer-{k}", ("fresh-1",), NEWEST + k) for k in range(40)])
    bonus = model.exploration_bonus("pets-fan-2")
    assert bonus[i] == one_viewer > 3 * bonus[other]
    # The same list inside interactions, and trained on: one viewer.
    model.observe([Interaction("spammer", "pets-3", "HUNCH", NEWEST + k,
                               impression=("fresh-0",), event_id=f"v{k}") for k in range(50)])
    assert model.impressions_[i] == before + 1
    retrained = _fresh(TrainingData(data.interactions, data.items, data.users,
                                    [*data.impressions, *spam]), exploration_weight=1.0)
    assert retrained.impressions_[retrained.item_index_["fresh-0"]] == before + 1


def test_impressions_in_interactions_count_as_exposure(world) -> None:
    model = _fresh(_with_new_polls(world), exploration_weight=1.0)
    model.observe([Interaction(f"voter-{k}", "pets-3", "HUNCH", NEWEST + k,
                               impression=("fresh-2", "pets-3")) for k in range(30)])
    bonus = model.exploration_bonus("x")
    assert bonus[model.item_index_["fresh-2"]] < bonus[model.item_index_["fresh-3"]]


def test_exclude_and_allow_are_respected(fitted) -> None:
    full = fitted.recommend("baking-fan-1", 10)
    banned = {full[0].item_id, full[3].item_id}
    recs = fitted.recommend("baking-fan-1", 10, exclude=banned)
    assert len(recs) == 10 and not banned & {r.item_id for r in recs}
    only_pets = fitted.recommend("baking-fan-1", 10, allow=lambda i: i.startswith("pets"))
    assert len(only_pets) == 10 and _topic_share(only_pets, "pets") == 1.0
    assert fitted.recommend("baking-fan-1", 5, allow=lambda i: False) == []


def test_polls_the_user_voted_on_are_not_shown_again(fitted, world) -> None:
    voted = {e.item_id for e in world.interactions if e.user_id == "pets-fan-0"}
    recs = fitted.recommend("pets-fan-0", 60)
    assert not voted & {r.item_id for r in recs}


def test_save_load_round_trip_gives_identical_recommendations(world, tmp_path) -> None:
    model = _fresh(_with_new_polls(world), exploration_weight=0.3)
    model.observe([Interaction("late-user", "pets-2", "HUNCH", NEWEST + 3),
                   Impression("late-user", ("fresh-1",), NEWEST + 4)])
    model.save(tmp_path)
    loaded = UserPersonalization.load(tmp_path)
    for user in ("late-user", "football-fan-2", "new-baker", None, "stranger"):
        assert loaded.recommend(user, 25) == model.recommend(user, 25)
    new_poll = {"cold": {"CATEGORY": "GENERAL", "AUTHOR_ID": "a",
                         "CREATION_TIMESTAMP": NEWEST, "QUESTION": "bread flour oven"}}
    model.add_items(new_poll)
    loaded.add_items(new_poll)
    assert loaded.recommend("baking-fan-2", 25) == model.recommend("baking-fan-2", 25)


def test_blend_is_learned_from_training_users_when_there_are_enough(world) -> None:
    model = _fresh(_ten_times_the_users(seed=1))
    assert model.validation_size_["users"] >= 30
    assert model.blend_["collaborative"] > 0 or model.blend_["content"] > 0
    assert _topic_share(model.recommend("pets-fan-1#3", 10), "pets") >= 0.8


def _sparse_world(seed: int) -> tuple[TrainingData, dict[str, str]]:
    """Many polls, few events each (Amazon Toys' shape): each user draws 60 % of their
    votes from one cluster of 100 polls, the rest from a long-tailed catalog of 3,000.
    Every fifth user's newest vote is held out of training."""
    rng = np.random.default_rng(seed)
    n_polls, cluster, events = 3_000, 100, 8
    popularity = 1 / np.arange(1, n_polls + 1) ** 0.8
    popularity /= popularity.sum()
    interactions: list[Interaction] = []
    held_out: dict[str, str] = {}
    for u in range(3_000):
        home = rng.integers(n_polls // cluster) * cluster
        for k in range(events):
            poll = (home + rng.integers(cluster) if rng.random() < 0.6
                    else rng.choice(n_polls, p=popularity))
            if k == events - 1 and u % 5 == 0:
                held_out[f"u{u}"] = f"p{poll}"
            else:
                interactions.append(Interaction(f"u{u}", f"p{poll}", "HUNCH", T0 + u * 10 + k))
    return TrainingData(interactions, {}, {}), held_out


@pytest.mark.parametrize("seed", [0, 1])
def test_the_learned_blend_keeps_item_item_where_targets_seldom_reach_the_head(seed) -> None:
    # Negatives drawn from the head of the ranking, with every target taken wherever it
    # ranked, made a high item-item score mark a negative here: both weights floored to 0,
    # every score 0, a hit rate of 0 (Amazon Toys: 0.0004 NDCG@10). The candidate pool
    # selects targets and non-targets alike. With the pool but unscaled columns, the L2
    # penalty floored these ~0.003-sized affinities too (seed 1).
    data, held_out = _sparse_world(seed)

    def hit_rate(model: UserPersonalization) -> float:
        return float(np.mean([any(r.item_id == poll for r in model.recommend(user, 10))
                              for user, poll in held_out.items()]))

    learned = _fresh(data, components=("item_item",))
    unlearned = _fresh(data, components=("item_item",), learn_blend=False)
    assert learned.validation_size_["users"] >= 30  # the blend was learned, not defaulted
    assert learned.blend_["item_item"] > 0 or learned.blend_["item_item_recent"] > 0
    assert hit_rate(unlearned) > 0.05
    assert hit_rate(learned) >= 0.8 * hit_rate(unlearned)


def test_candidate_pool_is_every_columns_head_and_random_polls_never_seen_ones() -> None:
    rng = np.random.default_rng(0)
    features = np.zeros((3, 1_000), np.float32)
    features[0, :60] = np.arange(60, 0, -1)  # column 0's head: polls 0..59
    features[1, 500:560] = 1.0  # column 1's head: polls 500..559
    # column 2 is constant: it has no head and adds nothing
    seen = np.array([0, 1, 500])
    pool = blend.candidate_pool(features, seen, rng)
    assert not np.isin(seen, pool).any()
    assert set(range(2, POOL_HEAD_PER_COLUMN + 2)) <= set(pool.tolist())
    assert len(set(range(501, 560)) & set(pool.tolist())) >= POOL_HEAD_PER_COLUMN  # ties
    extra = set(pool.tolist()) - set(range(2, 52)) - set(range(501, 560))
    assert len(extra) <= POOL_RANDOM_POLLS


def test_the_blend_learns_poll_ages_as_serving_sees_them(monkeypatch) -> None:
    # Without CREATION_TIMESTAMP a poll is as old as its first event. While the blend
    # learns, that is its first *visible* event: a poll that only validation targets
    # name is new there (as an event-less poll is at serving), not dated by the very
    # targets it is to predict; and no poll sits in step 0 ("created after the request"),
    # which serving never fills.
    world = _ten_times_the_users(seed=2)
    undated = {i: {k: v for k, v in m.items() if k != "CREATION_TIMESTAMP"}
               for i, m in world.items.items()}
    # Every user's newest vote is on a poll of their own, so validation users' are
    # polls that only targets name.
    solo = [Interaction(u, f"solo-{u}", "HUNCH", NEWEST + 10 + k)
            for k, u in enumerate(sorted({e.user_id for e in world.interactions}))]
    data = TrainingData([*world.interactions, *solo], undated, world.users)
    seen: dict[str, list] = {"steps": [], "creation": []}
    design, learn = blend.Recency.design, blend.learn

    def recording_design(ages, on):
        seen["steps"].append(int(ages.min()))
        return design(ages, on)

    def recording_learn(up, users, items, stamps, is_target):
        only_targets = np.setdiff1d(items[is_target], items[~is_target])
        seen["creation"] = up.creation_[only_targets].tolist()
        seen["newest"] = up.newest_timestamp_
        return learn(up, users, items, stamps, is_target)

    monkeypatch.setattr(blend.Recency, "design", staticmethod(recording_design))
    monkeypatch.setattr(blend, "learn", recording_learn)
    model = _fresh(data)
    assert seen["steps"] and min(seen["steps"]) >= 1
    assert len(seen["creation"]) >= 30  # the validation users' solo polls ...
    assert set(seen["creation"]) == {seen["newest"]}  # ... undated while the blend learned
    dated = {e.item_id: e.timestamp for e in solo}
    assert all(model.creation_[model.item_index_[i]] == t for i, t in dated.items())


def test_misuse_is_a_typed_error_that_says_what_to_fix(tmp_path) -> None:
    with pytest.raises(UserPersonalizationError, match=r"exploration_weight must be in \[0, 1\]"):
        UserPersonalization(exploration_weight=1.5)
    with pytest.raises(UserPersonalizationError, match="text_fields"):
        UserPersonalization(text_fields=("TITLE",))
    with pytest.raises(NotFitted, match="fit"):
        UserPersonalization().recommend("u")
    with pytest.raises(UserPersonalizationError, match="no interactions|none"):
        UserPersonalization().fit(TrainingData(interactions=[]))
    with pytest.raises(UserPersonalizationError, match="holds no saved"):
        UserPersonalization.load(tmp_path)


def test_recommend_ranks_exactly_as_score_all_orders_the_polls(fitted) -> None:
    scores = fitted.score_all("pets-fan-4")
    voted = set(fitted.interacted_["pets-fan-4"].tolist())
    best = [fitted.item_ids_[i] for i in np.argsort(-scores, kind="stable") if i not in voted]
    recs = fitted.recommend("pets-fan-4", 15)
    assert [r.item_id for r in recs] == best[:15]
    assert [r.score for r in recs] == pytest.approx([scores[fitted.item_index_[i]]
                                                     for i in best[:15]])


def test_streamed_votes_lift_a_poll_for_everyone_at_once(world) -> None:
    model = _fresh(world)
    before = model.score_all("baking-fan-6")[model.item_index_["pets-7"]]
    model.observe([Interaction(f"crowd-{k}", "pets-7", "HUNCH", NEWEST + k) for k in range(50)])
    after = model.score_all("baking-fan-6")[model.item_index_["pets-7"]]
    assert after > before


def test_one_accounts_repeated_votes_do_not_lift_a_poll_for_everyone(world) -> None:
    """A poll's popularity counts users: one account voting 500 times (under a minute
    of the API's mutation limit) moved it by one user, streamed or trained on, while
    500 users lift it as above. Counted per event, 3,000 votes from one account put a
    poll from rank ~400 into the top 25 of 70 % of other users' feeds."""
    model = _fresh(world)
    i = model.item_index_["pets-7"]
    before, counted = model.score_all("baking-fan-6")[i], model.counts_[i]
    spam = [Interaction("spammer", "pets-7", "HUNCH", NEWEST + k, event_id=f"v{k}")
            for k in range(500)]
    model.observe(spam)
    assert model.counts_[i] == counted + 1
    after_spam = model.score_all("baking-fan-6")[i]
    model.observe([Interaction(f"crowd-{k}", "pets-7", "HUNCH", NEWEST + k) for k in range(50)])
    after_crowd = model.score_all("baking-fan-6")[i]
    assert after_crowd - after_spam > 10 * abs(after_spam - before)
    # Trained on, the same: the spammer is one user of the poll.
    retrained = _fresh(TrainingData([*world.interactions, *spam], world.items, world.users,
                                    world.impressions))
    assert retrained.counts_[retrained.item_index_["pets-7"]] == counted + 1


def test_a_just_posted_poll_outranks_its_week_old_twin(world) -> None:
    model = _fresh(world)
    twin = {"CATEGORY": "GENERAL", "AUTHOR_ID": "newcomer",
            "QUESTION": "Which flour makes the best sourdough bread dough?"}
    model.add_items({"fresh-twin": {**twin, "CREATION_TIMESTAMP": NEWEST - 3_600},
                     "stale-twin": {**twin, "CREATION_TIMESTAMP": NEWEST - 9 * DAY}})
    scores = model.score_all("baking-fan-1", now=NEWEST)
    assert scores[model.item_index_["fresh-twin"]] > scores[model.item_index_["stale-twin"]]
    no_recency = _fresh(world, use_recency=False)
    no_recency.add_items({"fresh-twin": {**twin, "CREATION_TIMESTAMP": NEWEST - 3_600},
                          "stale-twin": {**twin, "CREATION_TIMESTAMP": NEWEST - 9 * DAY}})
    flat = no_recency.score_all("baking-fan-1", now=NEWEST)
    assert flat[no_recency.item_index_["fresh-twin"]] == pytest.approx(
        flat[no_recency.item_index_["stale-twin"]])


def _brute_force_ease(world: TrainingData, model: UserPersonalization, l2: float) -> np.ndarray:
    """Steck's closed form by a dense inverse, on the model's poll order."""
    x = np.zeros((len(model.user_ids_), len(model.item_ids_)))
    for e in world.interactions:
        x[model.user_ids_.index(e.user_id), model.item_index_[e.item_id]] = 1.0
    p = np.linalg.inv(x.T @ x + l2 * np.eye(x.shape[1]))
    b = np.eye(x.shape[1]) - p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


def test_item_item_scores_are_eases_closed_form(world) -> None:
    model = _fresh(world, learn_blend=False, use_recency=False)
    expected_b = _brute_force_ease(world, model, model.item_item_l2_)
    # Only the item-item term left in the blend, and no borrowing from content
    # neighbours (tested below): a user's scores are EASE's, x_u @ B.
    model.blend_ = {name: 0.0 for name in model.blend_} | {"item_item": 1.0}
    model.item_item_neighbours_ = None
    model._refresh_static()
    user = "baking-fan-4"
    x_u = np.zeros(len(model.item_ids_))
    x_u[[model.item_index_[e.item_id] for e in world.interactions if e.user_id == user]] = 1
    np.testing.assert_allclose(model.score_all(user), x_u @ expected_b, atol=1e-4)
    # And a user with a single recent vote is served that poll's EASE neighbours first.
    model.observe([Interaction("newcomer", "pets-3", "HUNCH", NEWEST + 1)])
    top = [r.item_id for r in model.recommend("newcomer", 5)]
    row = expected_b[model.item_index_["pets-3"]].copy()
    row[model.item_index_["pets-3"]] = -np.inf
    assert top[0] == model.item_ids_[int(np.argmax(row))]


def test_item_item_can_be_switched_off_above_its_catalog_size_limit(world, tmp_path) -> None:
    limited = _fresh(world, item_item_max_items=len(world.items) - 1, item_item_active_polls=0)
    assert limited.item_item_ is None
    # Without it the recipe still serves each fan their topic, and saves and loads.
    assert _topic_share(limited.recommend("pets-fan-5", 10), "pets") >= 0.8
    limited.save(tmp_path)
    loaded = UserPersonalization.load(tmp_path)
    assert loaded.item_item_ is None
    assert loaded.recommend("pets-fan-5", 10) == limited.recommend("pets-fan-5", 10)
    on = _fresh(world, item_item_max_items=len(world.items))
    assert on.item_item_ is not None and on.item_item_.shape == (len(world.items),) * 2


def test_above_its_catalog_size_limit_item_item_covers_the_most_active_polls(
        world, tmp_path) -> None:
    # 90 polls, B limited to 50: the 40 most-voted polls form B's active window.
    model = _fresh(world, learn_blend=False, use_recency=False,
                   item_item_max_items=50, item_item_active_polls=40)
    assert model.item_item_ is not None and model.item_item_.shape == (40, 40)
    counts = np.bincount([model.item_index_[e.item_id] for e in world.interactions],
                         minlength=len(model.item_ids_))
    window = model.item_item_polls_
    assert len(window) == 40 and counts[window].min() >= np.delete(counts, window).max()
    # Only the item-item term in the blend, no borrowing: the window's scores are EASE's
    # closed form over the window's polls.
    model.blend_ = {name: 0.0 for name in model.blend_} | {"item_item": 1.0}
    neighbours = model.item_item_neighbours_
    model.item_item_neighbours_ = None
    model._refresh_static()
    x = np.zeros((len(model.user_ids_), len(window)))
    for e in world.interactions:
        at = np.flatnonzero(window == model.item_index_[e.item_id])
        x[model.user_ids_.index(e.user_id), at] = 1.0
    p = np.linalg.inv(x.T @ x + model.item_item_l2_ * np.eye(len(window)))
    b = np.eye(len(window)) - p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    user = "baking-fan-4"
    scores = model.score_all(user)
    expected = x[model.user_ids_.index(user)] @ b
    np.testing.assert_allclose(scores[window], expected, atol=1e-4)
    # Non-zero, and highest on a poll of the user's own topic.
    assert model.item_ids_[window[int(np.argmax(scores[window]))]].startswith("baking")
    # With the content neighbours back, polls outside the window are scored from the
    # window polls they resemble, and item-item alone serves each fan their topic.
    model.item_item_neighbours_ = neighbours
    model._changed()
    outside = np.setdiff1d(np.arange(len(model.item_ids_)), window)
    assert np.abs(model.score_all(user)[outside]).max() > 0
    for fan, topic in (("pets-fan-5", "pets"), ("baking-fan-2", "baking"),
                       ("football-fan-7", "football")):
        assert _topic_share(model.recommend(fan, 10), topic) >= 0.8
    model.save(tmp_path)
    loaded = UserPersonalization.load(tmp_path)
    np.testing.assert_array_equal(loaded.item_item_polls_, window)
    assert loaded.recommend("pets-fan-5", 10) == model.recommend("pets-fan-5", 10)


def test_item_item_in_the_learned_blend_changes_the_ranking_past_the_size_limit() -> None:
    data = _ten_times_the_users(seed=2)
    windowed = _fresh(data, item_item_max_items=50, item_item_active_polls=40)
    off = _fresh(data, item_item_max_items=50, item_item_active_polls=0)
    assert off.item_item_ is None and windowed.item_item_ is not None
    assert windowed.blend_["item_item"] + windowed.blend_["item_item_recent"] > 0
    user = "football-fan-3#0"
    assert not np.allclose(windowed.score_all(user), off.score_all(user))


def test_served_scores_with_both_item_item_features_are_the_blends_formula(world) -> None:
    # Serving sums the two item-item features before spreading them to the polls outside
    # B; that must score exactly as the blend's formula, which adds them spread apart.
    model = _fresh(world, item_item_max_items=50, item_item_active_polls=40)
    model.blend_ |= {"item_item": 0.7, "item_item_recent": 1.3}
    model.add_items({"cold-pets": {"CATEGORY": "GENERAL", "AUTHOR_ID": "newcomer",
                                   "CREATION_TIMESTAMP": NEWEST - DAY,
                                   "QUESTION": "Which puppy leash does the vet like?"}})
    model._refresh_static()
    for user in ("pets-fan-2", "football-fan-0", "new-baker"):
        formula = model._combine(*model._features(user, model._reference_time(user, None)), user)
        np.testing.assert_allclose(model.score_all(user), formula, rtol=1e-5, atol=1e-5)


def test_item_item_sizes_must_not_be_negative() -> None:
    with pytest.raises(UserPersonalizationError, match="item_item_active_polls"):
        UserPersonalization(item_item_active_polls=-1)


def test_item_item_lambda_is_chosen_on_training_users_validation(world) -> None:
    from recsys.recipes.user_personalization import ITEM_ITEM_L2_GRID

    data = _ten_times_the_users(seed=2)
    model = _fresh(data)
    assert model.item_item_l2_ in ITEM_ITEM_L2_GRID
    # The shipped B is refitted on every event with that lambda.
    np.testing.assert_allclose(
        model.item_item_,
        _brute_force_ease(TrainingData(data.interactions), model, model.item_item_l2_),
        atol=1e-4)


def test_a_new_polls_item_item_score_comes_from_the_polls_its_text_resembles(world) -> None:
    # EASE alone gives a poll nobody voted on a score of 0 for everyone; the item-item
    # term instead borrows the scores of the voted polls its text resembles.
    model = _fresh(world, learn_blend=False, use_recency=False)
    model.blend_ = {name: 0.0 for name in model.blend_} | {"item_item": 1.0}
    model._refresh_static()
    same_meta = {"CATEGORY": "GENERAL", "AUTHOR_ID": "newcomer",
                 "CREATION_TIMESTAMP": NEWEST - DAY}
    model.add_items({
        "cold-football": {**same_meta, "QUESTION": "Which striker scores the goal in the "
                                                   "league match at the stadium?"},
        "cold-baking": {**same_meta, "QUESTION": "Which flour makes the best sourdough "
                                                 "bread dough in the oven?"},
    })
    for fan, own, other, other_topic in (
            ("football-fan-3", "cold-football", "cold-baking", "baking"),
            ("baking-fan-3", "cold-baking", "cold-football", "football")):
        scores = model.score_all(fan)
        own_score = scores[model.item_index_[own]]
        assert own_score > scores[model.item_index_[other]]
        # Above the voted polls of the topic the fan does not follow. (Not above every
        # one: a new poll borrows only as far as its neighbours resemble it, here ~84 %,
        # and one off-topic poll's own score may edge it in item-item alone; the learned
        # blend below puts it first.)
        assert own_score > np.mean([scores[model.item_index_[f"{other_topic}-{n}"]]
                                    for n in range(POLLS_PER_TOPIC)])


def test_content_neighbours_weigh_as_much_as_they_resemble_the_poll(world) -> None:
    # Neighbours weigh similarity / (sum + ITEM_ITEM_NEIGHBOUR_PRIOR); a poll of B keeps
    # the rest on its own column. Weights summing to 1 whatever the similarity let
    # twenty barely similar polls (HetRec Last.fm's artist names) take a cold poll's score.
    model = _fresh(world, learn_blend=False, use_recency=False)
    polls, pool = model.item_item_polls_, model.item_item_pool_
    k = min(ITEM_ITEM_CONTENT_NEIGHBOURS, len(pool) - 1)
    content = np.zeros_like(model.content_)
    content[:, 0] = 1.0  # every poll alike ...
    faint, close = [p for p in range(len(model.item_ids_)) if p not in set(polls[pool])][:2]
    content[faint, 0] = 0.01  # ... but one, whose content says almost nothing
    model.content_ = content
    rows = ItemItem.content_neighbours(model, np.array([close, faint])).toarray()
    own = np.searchsorted(polls, [close, faint])  # B covers this small catalog
    assert np.array_equal(polls[own], [close, faint])
    borrowed = rows.sum(1) - rows[[0, 1], own]
    prior = ITEM_ITEM_NEIGHBOUR_PRIOR
    np.testing.assert_allclose(borrowed, [k / (k + prior), 0.01 * k / (0.01 * k + prior)],
                               rtol=1e-5)
    np.testing.assert_allclose(rows.sum(1), 1.0, rtol=1e-5)
    assert borrowed[1] < 0.2 < 0.9 < borrowed[0]
    # A poll outside B keeps the rest on 0: its score is the neighbours' weighted sum.
    model.item_item_polls_ = np.setdiff1d(polls, [faint])
    model.item_item_pool_ = np.searchsorted(model.item_item_polls_, polls[pool])
    model.item_item_ = model.item_item_[np.ix_(polls != faint, polls != faint)]
    row = ItemItem.content_neighbours(model, np.array([faint])).toarray()
    np.testing.assert_allclose(row.sum(), 0.01 * k / (0.01 * k + prior), rtol=1e-5)


def test_a_cold_poll_matching_the_users_history_ranks_high_in_a_learned_blend() -> None:
    # A learned blend (enough validation users), one CATEGORY for every poll: only the
    # text says which new poll is about football.
    model = _fresh(_ten_times_the_users(seed=3))
    same_meta = {"CATEGORY": "GENERAL", "AUTHOR_ID": "newcomer",
                 "CREATION_TIMESTAMP": NEWEST - DAY}
    model.add_items({
        "cold-football": {**same_meta, "QUESTION": "Which striker scores the goal in the "
                                                   "league match at the stadium?"},
        "cold-pets": {**same_meta, "QUESTION": "Does your puppy pull the leash when the "
                                               "kitten and the cat are at the vet?"},
    })
    recs = [r.item_id for r in model.recommend("football-fan-4#2", 10, now=NEWEST)]
    # A young poll on the fan's topic is what they engage with next: it leads the feed;
    # its equally young twin on another topic, if shown at all, comes after it.
    assert recs[0] == "cold-football"
    recs = [r.item_id for r in model.recommend("pets-fan-4#2", 10, now=NEWEST)]
    assert recs[0] == "cold-pets"
