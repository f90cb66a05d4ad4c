"""The sequence component: what people engage with right after a poll, read in order.

The planted world: every poll a has a successor f(a), and each user's events come in
pairs (a, f(a)). As a set, a co-occurs with f(a) and with its predecessor f^-1(a)
equally, so only the order says which comes next."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.events import Interaction
from recsys.recipes.base import TrainingData
from recsys.recipes.user_personalization import COMPONENT_NAMES, UserPersonalization
from recsys.recipes.user_personalization.components.sequence import transitions
from recsys.recipes.user_personalization.settings import (
    SEQUENCE_SUCCESSORS,
    SEQUENCE_WINDOW_EVENTS,
)

POLLS, USERS, PAIRS = 150, 500, 6
START = 1_700_000_000


def _world(ordered: bool, seed: int = 0) -> tuple[TrainingData, dict[str, str]]:
    """Each user's last event (the first half of a pair) is followed by a held-out one,
    its successor; returns the training data and, per user, the held-out poll."""
    rng = np.random.default_rng(seed)
    successor = rng.permutation(POLLS)
    interactions, held_out = [], {}
    for u in range(USERS):
        firsts = rng.choice(POLLS, PAIRS, replace=False)
        polls = [p for a in firsts for p in (a, successor[a])]
        if not ordered:  # the same events in a random order: no sequence to learn
            polls = list(rng.permutation(polls))
        user = f"u{u}"
        held_out[user] = f"p{polls[-1]}"
        interactions += [Interaction(user, f"p{p}", "HUNCH", START + u * 1_000 + 10 * k)
                         for k, p in enumerate(polls[:-1])]
    items = {f"p{p}": {"CREATION_TIMESTAMP": START} for p in range(POLLS)}
    return TrainingData(interactions, items=items), held_out


def _hit_rate(data: TrainingData, held_out: dict[str, str], components) -> tuple[float, dict]:
    model = UserPersonalization(factors=8, iterations=8, exploration_weight=0.0,
                                components=components).fit(data)
    hits = [held_out[u] in {r.item_id for r in model.recommend(u, 1)} for u in held_out]
    return float(np.mean(hits)), model.blend_


WITHOUT = [c for c in COMPONENT_NAMES if c != "sequence"]


def test_transitions_are_directed_and_weighed_by_distance() -> None:
    # Two users: 0 -> 1 -> 2, and 0 -> 2.
    users = np.array([0, 0, 0, 1, 1])
    items = np.array([0, 1, 2, 0, 2])
    t = transitions(users, items, 4, window=2, successors=10).toarray()
    events = np.bincount(items, minlength=4)
    # 0 -> 1 at distance 1; 0 -> 2 at distance 2 (user 0) and 1 (user 1).
    assert t[0, 1] == pytest.approx(1.0 / np.sqrt(events[0] * events[1]))
    assert t[0, 2] == pytest.approx(1.5 / np.sqrt(events[0] * events[2]))
    assert t[1, 0] == 0 and t[2, 0] == 0 and t[2, 1] == 0  # nothing follows 2
    assert t[3].sum() == 0
    # Outside the window nothing counts.
    assert transitions(users, items, 4, window=1, successors=10).toarray()[0, 2] == \
        pytest.approx(1.0 / np.sqrt(events[0] * events[2]))


def test_only_the_strongest_successors_are_kept() -> None:
    users = np.repeat(np.arange(5), 2)
    items = np.array([0, 1, 0, 1, 0, 1, 0, 2, 0, 3])  # 0 -> 1 three times, -> 2, -> 3 once
    t = transitions(users, items, 4, window=1, successors=1)
    assert t.getrow(0).indices.tolist() == [1]


def test_the_next_poll_is_found_when_the_order_says_it() -> None:
    data, held_out = _world(ordered=True)
    with_it, blend = _hit_rate(data, held_out, COMPONENT_NAMES)
    without, _ = _hit_rate(data, held_out, WITHOUT)
    # Without order, the successor and the predecessor of the user's last poll look
    # alike (and the predecessor is often unseen): the set-based parts cannot tell.
    assert blend["sequence"] > 0
    assert with_it >= without + 0.25, (with_it, without)


def test_without_a_planted_order_the_component_adds_nothing() -> None:
    # The same events shuffled within each user: the held-out poll is a random one of
    # the user's pairs, so what followed what says nothing about it.
    data, held_out = _world(ordered=False)
    with_it, _ = _hit_rate(data, held_out, COMPONENT_NAMES)
    without, _ = _hit_rate(data, held_out, WITHOUT)
    assert with_it <= without + 0.05, (with_it, without)


def test_served_scores_are_the_blends_formula_after_a_save_and_new_polls(tmp_path) -> None:
    data, held_out = _world(ordered=True)
    model = UserPersonalization(factors=8, iterations=8, exploration_weight=0.0).fit(data)
    model.blend_ = {f: 0.0 for f in model.blend_} | {"sequence": 1.0}
    model.save(tmp_path)
    loaded = UserPersonalization.load(tmp_path)
    # A poll added after fit has no transitions: it scores 0 and nothing breaks.
    loaded.add_items({"brand-new": {"CREATION_TIMESTAMP": START}})
    loaded.observe([Interaction("u1", "brand-new", "HUNCH", START + 5_000)])
    for user in ("u0", "u1", "u7"):
        t_ref = loaded._reference_time(user, None)
        formula = loaded._combine(*loaded._features(user, t_ref), user)
        np.testing.assert_allclose(loaded.score_all(user), formula, rtol=1e-5, atol=1e-6)
    column = loaded._blend_features().index("sequence")
    assert loaded._features("u0", START)[0][column][loaded.item_index_["brand-new"]] == 0


def test_the_refit_after_the_blend_adds_up_to_a_count_from_scratch() -> None:
    # fit counts the events the blend may see; finish adds only the pairs that end in a
    # withheld target (each validation user's newest events) instead of counting again.
    data, _ = _world(ordered=True, seed=4)
    model = UserPersonalization(factors=8, iterations=8, exploration_weight=0.0).fit(data)
    assert model.validation_size_["users"] > 0  # there were targets to add
    order = sorted(data.interactions, key=lambda e: e.timestamp)
    users = np.array([model.user_index_[e.user_id] for e in order])
    items = np.array([model.item_index_[e.item_id] for e in order])
    scratch = transitions(users, items, len(model.item_ids_), SEQUENCE_WINDOW_EVENTS,
                          SEQUENCE_SUCCESSORS)
    np.testing.assert_allclose(model.sequence_.toarray(), scratch.toarray(), rtol=1e-6)


def test_one_stable_sort_of_the_events_serves_every_subset() -> None:
    """FitEvents.by_user: the fit sorts its events by user once; each subset's order (the
    blend's visible events, all of them, a few users') is the one its own stable sort
    gave, so the transition counts built from it are the same to the bit."""
    from recsys.recipes.user_personalization.components.base import FitEvents
    from recsys.recipes.user_personalization.components.sequence import transition_counts

    rng = np.random.default_rng(7)
    n = 5_000
    users = rng.integers(0, 60, n)
    items = rng.integers(0, 300, n)
    keep = rng.random(n) < 0.9
    events = FitEvents(users, items, np.ones(n), np.arange(n), keep, ~keep, {}, {})
    for mask in (None, keep, keep & np.isin(users, [3, 5, 8])):
        idx = np.arange(n) if mask is None else np.flatnonzero(mask)
        assert np.array_equal(events.by_user(mask), idx[np.argsort(users[idx], kind="stable")])
    alone = transition_counts(users[keep], items[keep], 300, window=4)
    shared = transition_counts(users, items, 300, window=4, order=events.by_user(keep))
    assert alone.nnz > 1_000
    for a, b in ((alone.indptr, shared.indptr), (alone.indices, shared.indices),
                 (alone.data, shared.data)):
        assert np.array_equal(a, b)
    later = transition_counts(users, items, 300, window=4, later=~keep)
    assert np.array_equal(later.data, transition_counts(
        users, items, 300, window=4, later=~keep, order=events.by_user()).data)


@pytest.mark.parametrize("n_items", [50, 70_000])  # pair keys in uint32, then int64
def test_counts_are_scipys_sums_to_the_bit(n_items) -> None:
    """Each distance's counts add a pair's 1 / step entries one after another, as scipy's
    COO -> CSR conversion does: the same float64 bits, where a popular pair repeats
    thousands of times (a sum in another order drifts in the last bits)."""
    import scipy.sparse as sp

    from recsys.recipes.user_personalization.components.sequence import transition_counts

    rng = np.random.default_rng(4)
    n = 30_000
    users = np.sort(rng.integers(0, 300, n))  # grouped by user, time order within
    items = np.where(rng.random(n) < 0.5, rng.integers(0, 3, n), rng.integers(0, n_items, n))
    window = 5
    parts = [sp.csr_matrix((n_items, n_items))]
    for step in range(1, window + 1):
        same = (users[:-step] == users[step:]) & (items[:-step] != items[step:])
        parts.append(sp.csr_matrix(
            (np.full(int(same.sum()), 1.0 / step), (items[:-step][same], items[step:][same])),
            shape=(n_items, n_items)))
    while len(parts) > 1:  # the distances summed in transition_counts' order (a tree)
        parts = [parts[k] + parts[k + 1] if k + 1 < len(parts) else parts[k]
                 for k in range(0, len(parts), 2)]
    expected = parts[0]
    expected.sum_duplicates()
    got = transition_counts(users, items, n_items, window)
    assert got.dtype == np.float64 and got.has_canonical_format
    np.testing.assert_array_equal(got.indptr, expected.indptr)
    np.testing.assert_array_equal(got.indices, expected.indices)
    np.testing.assert_array_equal(got.data, expected.data)  # bitwise, not approx
