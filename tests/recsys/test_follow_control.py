"""The engagement control (recsys.analysis.follow_control): no effect where follows do
not change engagement, whatever the follow pattern; the effect where they do."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recsys.analysis.follow_control import Reader, share_counted, swapped_control
from recsys.analysis.follow_control import ShareRule
from recsys.analysis.stats import paired_comparison

COMMUNITIES, AUTHORS, READERS, HIDDEN = 2, 300, 3_000, 8


def _world(seed: int, boost: float):
    """Two communities of authors and readers. A reader's hidden polls are drawn by the
    community's taste (polls of its own authors 4x likelier) and the poll's appeal, times
    ``boost`` for polls of the reader's followees (1: follows change nothing). Follows
    stay in the community and carry no taste, but they are not random sets: a reader
    who follows few follows the most prolific authors, and the others pick by
    popularity with repeats merged, as people and the demo generator do."""
    rng = np.random.default_rng(seed)
    author_group = rng.integers(0, COMMUNITIES, AUTHORS)
    written = np.minimum(rng.pareto(1.2, AUTHORS) + 1, 60).astype(int)
    poll_author = np.repeat(np.arange(AUTHORS), written)
    appeal = rng.lognormal(0.0, 0.5, len(poll_author))
    reader_group = rng.integers(0, COMMUNITIES, READERS)
    followees: dict[str, set[str]] = {}
    for r in range(READERS):
        mine = np.flatnonzero(author_group == reader_group[r])
        if rng.random() < 0.3:  # follows a few of the most prolific
            top = mine[np.argsort(-written[mine], kind="stable")][:6]
            picked = rng.choice(top, rng.integers(1, 4), replace=False)
        else:  # popularity-weighted picks, repeats merged
            w = written[mine] / written[mine].sum()
            picked = np.unique(rng.choice(mine, rng.integers(5, 25), p=w))
        followees[f"r{r}"] = {f"a{a}" for a in picked}
    readers = []
    for r in range(READERS):
        w = appeal * np.where(author_group[poll_author] == reader_group[r], 4.0, 1.0)
        follows = np.isin(poll_author, [int(a[1:]) for a in followees[f"r{r}"]])
        w = w * np.where(follows, boost, 1.0)
        hidden = rng.choice(len(poll_author), HIDDEN, replace=False, p=w / w.sum())
        readers.append(Reader(f"r{r}", [f"p{p}" for p in hidden]))
    written_by = {f"a{a}": [f"p{p}" for p in np.flatnonzero(poll_author == a)]
                  for a in range(AUTHORS)}
    group = {f"r{r}": str(reader_group[r]) for r in range(READERS)}
    return readers, followees, group, written_by


def _authored(written_by):
    return lambda users: {p: -math.inf for u in users for p in written_by.get(u, ())}


def _compare(seed: int, boost: float, control: str = "swapped"):
    readers, followees, group, written_by = _world(seed, boost)
    counted = _authored(written_by)
    own = np.array([share_counted(r.polls, counted(followees[r.user_id]), r.cutoff)
                    for r in readers])
    if control == "swapped":
        base = swapped_control(readers, followees, group, counted, seed=seed)
    else:
        base = _random_sets(readers, followees, group, counted, seed)
    return paired_comparison("share", "own", control, own, base, seed=seed)


def _random_sets(readers, followees, group, counted, seed, draws=20):
    """The control this module replaced: per reader, random followee sets of their set's
    size drawn from their community's follows (each followee as often as followed)."""
    rng = np.random.default_rng(seed)
    pool: dict[str, list[str]] = {}
    for u, targets in followees.items():
        pool.setdefault(group[u], []).extend(sorted(targets))
    out = np.zeros(len(readers))
    for j, r in enumerate(readers):
        candidates = np.array(pool[group[r.user_id]])
        size = len(followees[r.user_id])
        rates = []
        for _ in range(draws):
            drawn: set[str] = set()
            while len(drawn) < size:
                drawn.update(rng.choice(candidates, size - len(drawn)).tolist())
            rates.append(share_counted(r.polls, counted(drawn), r.cutoff))
        out[j] = np.mean(rates)
    return out


@pytest.mark.parametrize("seed", (0, 1))
def test_follows_that_change_nothing_show_no_effect(seed):
    c = _compare(seed, boost=1.0)
    assert c.verdict == "no detectable change", c.to_json()


def test_the_world_fools_random_followee_sets():
    # Why the control reads the same followees through other members: random sets of
    # the same size find an "effect" in this world, where follows change nothing.
    c = _compare(0, boost=1.0, control="random sets")
    assert c.verdict == "raises", c.to_json()


@pytest.mark.parametrize("seed", (0, 1))
def test_follows_that_raise_engagement_are_found(seed):
    c = _compare(seed, boost=2.0)
    assert c.verdict == "raises" and c.ci_low > 0, c.to_json()


def test_the_users_followees_do_not_read_for_them():
    # u follows v (who wrote p1) and w (who wrote p2). v would count their own p1 (u
    # never counts u's own polls), so only x reads u's followees: p2 of p2, p3.
    written = {"v": ["p1"], "w": ["p2"]}
    readers = [Reader("u", ["p1", "p2"]), Reader("v", ["p1", "p1b"]), Reader("x", ["p2", "p3"])]
    control = swapped_control(readers, {"u": {"v", "w"}}, {}, _authored(written))
    assert control[0] == pytest.approx(0.5)
    assert control[1] == 0.0 and control[2] == 0.0  # no followees: no control


def test_members_of_the_same_group_read_first_and_everyone_when_alone():
    written = {"a": ["p1"]}
    readers = [Reader("u", ["p1"]), Reader("same", ["p1", "p9"]), Reader("other", ["p9"]),
               Reader("alone", ["p1"])]
    followees = {"u": {"a"}, "alone": {"a"}}
    group = {"u": "g", "same": "g", "other": "h", "alone": "k"}
    control = swapped_control(readers, followees, group, _authored(written))
    assert control[0] == pytest.approx(0.5)  # "same" only
    assert control[3] == pytest.approx((1.0 + 0.5 + 0.0) / 3)  # nobody in "k": everyone


def test_with_nobody_else_to_read_the_control_is_the_users_own_share():
    # Only u and u's followee have polls: no evidence either way, no difference.
    readers = [Reader("u", ["p1", "p2"]), Reader("a", ["p1"]), Reader("quiet", [])]
    control = swapped_control(readers, {"u": {"a"}}, {}, _authored({"a": ["p1"]}))
    assert control[0] == pytest.approx(0.5)


def test_an_engagement_counts_only_before_the_readers_cutoff():
    rule = ShareRule("engaged", {"f": [("p1", 10.0), ("p2", 30.0)],
                                 "g": [("p2", 20.0)]}, timed=True)
    assert rule.counted(["f", "g"]) == {"p1": 10.0, "p2": 20.0}  # the earliest counts
    readers = [Reader("u", ["p1", "p2"], 100.0), Reader("early", ["p1", "p2"], 15.0),
               Reader("late", ["p1", "p2"], 25.0)]
    control = swapped_control(readers, {"u": {"f", "g"}}, {}, rule.counted)
    assert control[0] == pytest.approx((0.5 + 1.0) / 2)
    untimed = ShareRule("authored", {"f": [("p1", 0.0)]}, timed=False)
    assert untimed.counted(["f"]) == {"p1": -math.inf}


@pytest.mark.parametrize("timed", (True, False))
def test_counted_agrees_with_the_rules_own_polls_at_every_cutoff(timed):
    # The control reads a followee set through counted(); the user's own share through
    # polls(): the two must name the same polls at any cut-off.
    rng = np.random.default_rng(3)
    by_user = {f"f{k}": [(f"p{rng.integers(30)}", float(rng.integers(100)))
                         for _ in range(rng.integers(1, 8))] for k in range(10)}
    rule = ShareRule("share", by_user, timed=timed)
    users = ["f1", "f4", "f7", "f9"]
    counted = rule.counted(users)
    for cutoff in (0.0, 5.0, 50.0, 99.0, 1e9):
        assert {p for p, t in counted.items() if t < cutoff} == rule.polls(users, cutoff)


def test_members_are_drawn_at_random_and_never_the_user_or_their_followees():
    from recsys.analysis.follow_control import _sample

    rng = np.random.default_rng(0)
    candidates = np.arange(200)
    excluded = {0, 5, 7, 199}
    seen = np.zeros(200)
    for _ in range(2_000):
        drawn = _sample(rng, candidates, excluded, 50)
        assert len(drawn) == len(set(drawn)) == 50 and not excluded & set(drawn)
        seen[drawn] += 1
    eligible = np.delete(seen, sorted(excluded))
    # each of the 196 eligible members is drawn 50/196 of the time: 510 of 2,000
    assert eligible.min() > 430 and eligible.max() < 590, (eligible.min(), eligible.max())
    # fewer candidates than wanted: every eligible one
    assert sorted(_sample(rng, np.arange(6), excluded, 50)) == [1, 2, 3, 4]
