"""The walk component: RP3beta over the whole catalog, inside the blend.

The planted world: polls come in small groups and each user engages with polls of one
group; the held-out event is another poll of that group. Two ALS factors cannot hold 40
groups, and item-item's EASE is switched off (as past its catalog limit without a
window), so what finds the group is the walk poll -> user -> poll."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.evaluation.peers import RP3beta
from recsys.events import Interaction
from recsys.recipes.base import TrainingData
from recsys.recipes.user_personalization import COMPONENT_NAMES, UserPersonalization
from recsys.recipes.user_personalization.components.base import FitEvents
from recsys.recipes.user_personalization.components.walk import (
    Walk,
    latest_polls,
    ndcg_sum,
    polls_per_user,
    top_per_row,
    walk_matrices,
)
from recsys.recipes.user_personalization.settings import WALK_BETA_GRID, WALK_HALF_LIFE_EVENTS

GROUPS, GROUP_SIZE, USERS, EVENTS = 40, 10, 800, 6
START = 1_700_000_000
# Sequence would find the groups too (from order within a user): it is dropped from both
# arms, so the comparison isolates the walk.
WITH = [c for c in COMPONENT_NAMES if c not in ("sequence", "item_item")]
WITHOUT = [c for c in WITH if c != "walk"]


def _world(planted: bool, seed: int = 0) -> tuple[TrainingData, dict[str, str]]:
    rng = np.random.default_rng(seed)
    n_polls = GROUPS * GROUP_SIZE
    interactions, held_out = [], {}
    for u in range(USERS):
        if planted:
            group = rng.integers(GROUPS)
            polls = group * GROUP_SIZE + rng.choice(GROUP_SIZE, EVENTS + 1, replace=False)
        else:  # the same amount of events, with no group behind them
            polls = rng.choice(n_polls, EVENTS + 1, replace=False)
        user = f"u{u}"
        held_out[user] = f"p{polls[-1]}"
        interactions += [Interaction(user, f"p{p}", "HUNCH", START + u * 1_000 + 10 * k)
                         for k, p in enumerate(polls[:-1])]
    items = {f"p{p}": {"CREATION_TIMESTAMP": START} for p in range(n_polls)}
    return TrainingData(interactions, items=items), held_out


def _hit_rate(data: TrainingData, held_out: dict[str, str], components) -> tuple[float, dict]:
    model = UserPersonalization(factors=2, iterations=8, exploration_weight=0.0,
                                components=components).fit(data)
    hits = [held_out[u] in {r.item_id for r in model.recommend(u, 3)} for u in held_out]
    return float(np.mean(hits)), model.blend_


def test_the_walk_finds_what_people_who_share_polls_engage_with() -> None:
    data, held_out = _world(planted=True)
    with_it, blend = _hit_rate(data, held_out, WITH)
    without, _ = _hit_rate(data, held_out, WITHOUT)
    assert blend["walk"] > 0
    assert with_it >= without + 0.25, (with_it, without)


def test_without_planted_groups_the_walk_adds_nothing() -> None:
    data, held_out = _world(planted=False)
    with_it, _ = _hit_rate(data, held_out, WITH)
    without, _ = _hit_rate(data, held_out, WITHOUT)
    assert with_it <= without + 0.05, (with_it, without)


def test_the_walk_is_the_rp3beta_peers_matrix() -> None:
    # One formula, two implementations: the evaluation's peer (dense blocks) and the
    # component (sparse chunks). With every neighbour kept the cut cannot differ.
    rng = np.random.default_rng(1)
    x = sp.csr_matrix((rng.random((60, 35)) < 0.15).astype(np.float64))
    for alpha, beta in ((0.5, 0.2), (1.0, 0.6)):
        peer = RP3beta(alpha=alpha, beta=beta, neighbours=35).fit(x).similarity_.toarray()
        [ours] = walk_matrices(x, alpha, [beta], neighbours=35)
        np.testing.assert_allclose(ours.toarray(), peer, rtol=1e-5, atol=1e-7)
        assert not ours.diagonal().any()


def test_each_poll_keeps_its_strongest_arrivals() -> None:
    m = sp.csr_matrix(np.array([[0.1, 0.5, 0.3, 0.0], [0.0, 0.0, 0.2, 0.0],
                                [0.4, 0.4, 0.4, 0.9]]))
    top = top_per_row(m, 2).toarray()
    np.testing.assert_array_equal(top, [[0, 0.5, 0.3, 0], [0, 0, 0.2, 0],
                                        [0.4, 0, 0, 0.9]])  # a tie keeps the lower column


def test_a_user_walks_from_their_latest_distinct_polls() -> None:
    # User 0 touched 0, 1, 2, 3, then 0 again: their latest three distinct are 0, 3, 2.
    users = np.array([0, 0, 0, 0, 1, 0])
    items = np.array([0, 1, 2, 3, 4, 0])
    x = latest_polls(users, items, 2, 5, max_pairs=10).toarray()  # 3² + 1² pairs
    np.testing.assert_array_equal(x, [[1, 0, 1, 1, 0], [0, 0, 0, 0, 1]])


def test_beta_is_the_one_whose_walk_ranks_the_validation_targets_best() -> None:
    # Three users, each with one kept event and one target; matrix 1 points every kept
    # poll at its user's target, matrix 0 elsewhere: whichever order, the right one wins.
    model = UserPersonalization()
    model.user_ids_, model.item_ids_ = ["a", "b", "c"], [f"p{i}" for i in range(6)]
    users = np.array([0, 1, 2, 0, 1, 2])
    items = np.array([0, 1, 2, 3, 4, 5])
    is_target = np.array([False] * 3 + [True] * 3)
    events = FitEvents(users, items, np.ones(6), np.arange(6), ~is_target, is_target, {}, {})
    right = sp.csr_matrix((np.ones(3), ([0, 1, 2], [3, 4, 5])), shape=(6, 6))
    wrong = sp.csr_matrix((np.ones(3), ([0, 1, 2], [4, 5, 3])), shape=(6, 6))
    assert Walk.choose(model, events, [wrong, right]) == 1
    assert Walk.choose(model, events, [right, wrong]) == 0


def test_served_scores_are_the_blends_formula_after_a_save_and_new_polls(tmp_path) -> None:
    data, _ = _world(planted=True)
    model = UserPersonalization(factors=2, iterations=8, exploration_weight=0.0).fit(data)
    assert model.walk_beta_ in WALK_BETA_GRID
    model.blend_ = {f: 0.0 for f in model.blend_} | {"walk": 1.0}
    model.save(tmp_path)
    loaded = UserPersonalization.load(tmp_path)
    assert loaded.walk_beta_ == model.walk_beta_
    np.testing.assert_array_equal(loaded.walk_.toarray(), model.walk_.toarray())
    # A poll added after fit has no walk of its own: it scores 0 and nothing breaks.
    loaded.add_items({"brand-new": {"CREATION_TIMESTAMP": START}})
    loaded.observe([Interaction("u1", "brand-new", "HUNCH", START + 5_000)])
    walk_column = loaded._blend_features().index("walk")
    for user in ("u0", "u1", "u7"):
        t_ref = loaded._reference_time(user, None)
        features, ages = loaded._features(user, t_ref)
        assert features[walk_column].any()
        np.testing.assert_allclose(loaded.score_all(user), loaded._combine(features, ages, user),
                                   rtol=1e-5, atol=1e-6)
    assert loaded._features("u0", START)[0][walk_column][loaded.item_index_["brand-new"]] == 0


@pytest.mark.parametrize("newer", [0, 1])
def test_the_latest_events_weigh_most(newer) -> None:
    # Two events on polls that reach disjoint polls: the newer one's arrivals score
    # higher, whichever poll it is.
    model = UserPersonalization()
    model.item_ids_ = [f"p{i}" for i in range(4)]
    model.walk_ = sp.csr_matrix((np.ones(2, np.float32), ([0, 1], [2, 3])), shape=(4, 4))
    older = 1 - newer
    model.recent_ = {"u": (np.array([older, newer], np.int32), np.ones(2, np.float32),
                           np.array([1, 2]))}
    row = Walk.row(model, "u")
    assert row[2 + newer] > row[2 + older] > 0


def test_the_cap_is_the_largest_that_keeps_the_pairs_within_budget() -> None:
    lengths = np.array([1, 2, 5])  # 1 + 4 + 25 = 30 pairs uncapped
    assert polls_per_user(lengths, 30) == 5
    assert polls_per_user(lengths, 29) == 4  # 1 + 4 + 16
    assert polls_per_user(lengths, 8) == 1  # c = 2 would be 1 + 4 + 4
    assert polls_per_user(np.zeros(0, np.int64), 8) == 0


def test_walking_some_rows_gives_those_rows_of_the_whole_walk() -> None:
    rng = np.random.default_rng(2)
    x = sp.csr_matrix((rng.random((80, 50)) < 0.1).astype(np.float64))
    rows = np.array([0, 7, 8, 31, 49])
    whole = walk_matrices(x, 0.5, [0.1, 0.5], 10)
    some = walk_matrices(x, 0.5, [0.1, 0.5], 10, rows)
    for w, s in zip(whole, some):
        dense, part = w.toarray(), s.toarray()
        np.testing.assert_array_equal(part[rows], dense[rows])
        assert not np.delete(part, rows, axis=0).any()


def test_the_ndcg_that_chooses_beta_is_sklearns_without_ties() -> None:
    from sklearn.metrics import ndcg_score

    rng = np.random.default_rng(3)
    truth = rng.random((40, 30)) < 0.1
    truth[np.arange(40), rng.integers(0, 30, 40)] = True  # every row has a target
    scores = rng.random((40, 30))
    assert ndcg_sum(truth, scores, 10) / 40 == pytest.approx(
        ndcg_score(truth.astype(float), scores, k=10))


def test_beta_is_chosen_on_the_column_as_it_is_served() -> None:
    # User 0: events on polls 0, 1, 0 (then a withheld target); user 1's events are kept
    # out of the rows asked for. The latest event weighs 1, each older one halves every
    # WALK_HALF_LIFE_EVENTS; only the latest max_recent_events count.
    model = UserPersonalization(max_recent_events=2)
    model.user_ids_, model.item_ids_ = ["a", "b"], [f"p{i}" for i in range(4)]
    users = np.array([0, 1, 0, 0, 0])
    items = np.array([0, 2, 1, 0, 3])
    is_target = np.array([False, False, False, False, True])
    events = FitEvents(users, items, np.array([1.0, 1.0, 2.0, 1.0, 1.0]), np.arange(5),
                       ~is_target, is_target, {}, {})
    seen, latest = Walk.histories(model, events, np.array([0]))
    np.testing.assert_array_equal(seen.toarray() > 0, [[True, True, False, False]])
    half = 0.5 ** (1 / WALK_HALF_LIFE_EVENTS)
    np.testing.assert_allclose(latest.toarray(), [[1.0, 2.0 * half, 0, 0]])


def test_building_only_the_rows_read_before_finish_changes_nothing(monkeypatch) -> None:
    """Before finish the walk and the sequence matrix are read only from the validation
    users' latest events, so fit builds those polls' rows alone. Histories here are
    longer than either reads (40 events against their 20), so fewer rows are built; the
    model must be the one built from every row: the same beta, blend and
    recommendations."""
    from recsys.recipes.user_personalization.components import sequence, walk

    rng = np.random.default_rng(3)
    interactions = []
    for u in range(300):
        group = rng.integers(8)
        polls = np.r_[group * 50 + rng.choice(50, 30, replace=False), rng.choice(400, 10)]
        interactions += [Interaction(f"u{u}", f"p{p}", "HUNCH", START + u * 1_000 + 10 * k)
                         for k, p in enumerate(rng.permutation(polls))]
    data = TrainingData(interactions, items={f"p{p}": {"CREATION_TIMESTAMP": START}
                                             for p in range(400)})
    built: list[int] = []
    narrow = walk.polls_read_before_finish

    def counted(up, events, depth):
        built.append(len(rows := narrow(up, events, depth)))
        return rows

    def every_row(up, events, depth):
        return np.arange(len(up.item_ids_))

    models = []
    for rows in (counted, every_row):
        for module in (walk, sequence):
            monkeypatch.setattr(module, "polls_read_before_finish", rows)
        models.append(UserPersonalization(factors=4, iterations=4, exploration_weight=0.0,
                                          random_state=0).fit(data))
    assert len(built) == 2 and max(built) < 400  # fewer rows, or this tests nothing
    narrowed, whole = models
    assert narrowed.walk_beta_ == whole.walk_beta_ and narrowed.blend_ == whole.blend_
    assert narrowed.blend_["sequence"] > 0 and narrowed.blend_["walk"] > 0
    for user in ("u0", "u7", "u150", "u299"):
        assert ([(r.item_id, r.score) for r in narrowed.recommend(user, 25)]
                == [(r.item_id, r.score) for r in whole.recommend(user, 25)])


def test_each_row_keeps_its_k_largest_ties_to_the_lower_column() -> None:
    """top_per_row against a plain per-row sort (value descending, then column), on rows
    full of exact ties at the cut, short rows, empty rows and k = 0."""
    rng = np.random.default_rng(5)
    dense = rng.choice([0.0, 0.0, 0.25, 0.5, 0.5, 1.0, 2.0], size=(300, 60))
    dense[::7] = 0.0  # empty rows
    m = sp.csr_matrix(dense)
    for k in (0, 1, 3, 8, 60):
        expected = np.zeros_like(dense)
        for r in range(dense.shape[0]):
            columns = np.flatnonzero(dense[r])
            best = sorted(columns, key=lambda c: (-dense[r, c], c))[:k]
            expected[r, best] = dense[r, best]
        cut = top_per_row(m, k)
        np.testing.assert_array_equal(cut.toarray(), expected)
        assert cut.has_sorted_indices


def test_a_users_latest_polls_are_their_most_recently_touched_distinct_polls() -> None:
    """latest_polls against a plain reading of the events, newest first, with repeats,
    users without events and a cap that cuts long histories."""
    rng = np.random.default_rng(6)
    users = rng.integers(0, 30, 2_000)
    items = rng.integers(0, 40, 2_000)
    for max_pairs in (10**6, 2_000, 300):
        got = latest_polls(users, items, 35, 40, max_pairs)
        latest: dict[int, list[int]] = {}
        for u, i in zip(users[::-1].tolist(), items[::-1].tolist()):  # newest first
            if i not in latest.setdefault(u, []):
                latest[u].append(i)
        cap = polls_per_user(np.array([len(v) for v in latest.values()]), max_pairs)
        expected = np.zeros((35, 40))
        for u, polls in latest.items():
            expected[u, polls[:cap]] = 1.0
        np.testing.assert_array_equal(got.toarray(), expected)
        assert got.has_canonical_format
