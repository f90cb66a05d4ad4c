"""The engagement control of the follow analyses: the same followees, other users.

Both follow analyses (offline follow impact and the served-feed one) ask whether a user
engages with (or is served) their own followees' polls more than taste alone explains.
Each user's own share is compared with a control share that keeps the community's taste
and drops the user's choice of whom to follow.

**The control holds the followee set fixed and swaps the user**: for user *u*, the
share of the polls of each other member *v* of *u*'s community that *u*'s followees
account for (at *v*'s cut-off; *u*'s followees are not among the *v*), averaged over
up to :data:`CONTROL_OTHERS` members. When follows do not change engagement, *u* and *v* read
the same followees through the same community taste, so the two shares agree in
expectation, whatever made *u* follow whom.

Why not random followee sets: the control used to draw, per user, random sets of the
same size from the community's follows. That is unbiased only if a user's set is like
a random draw of its size, and real follow sets are not: a user who follows few tends
to follow the famous, a set built by repeated popular picks holds more prolific
authors than a draw of its final size. On the demo generator's worlds with no follow
effect planted (800 users, 500 polls, 40 seeds), own followees came out +0.0033 ± 0.0008
above random sets (a false "follow effect" on 3 of 40 worlds; with more users, a bias
of that size is significant on every world). This control, on the same 40 worlds:
+0.0007 ± 0.0006 (none raises), and the planted effect is found on 10 of 10 planted
worlds (+0.0370). Numbers and the test world: docs/evidence-methods.md "Controls".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# Other members of the community each user's followees are read through: 50 put the
# control's own noise well below the spread between users (the per-user share is a
# fraction of a few hidden polls), at 50 share counts per user.
CONTROL_OTHERS = 50
CONTROL_NAME = "same followees, other members"


@dataclass(frozen=True)
class Reader:
    """A user as the control reads them: the polls whose share is measured (hidden
    polls, or served ones) and the time before which a followee's poll counts."""

    user_id: str
    polls: Sequence[str]
    cutoff: float = math.inf


@dataclass(frozen=True)
class ShareRule:
    """Which polls count as coming from a set of users, for one share metric.

    ``by_user``: user -> (poll, time). Authorship counts whatever the time (a followee's
    poll is theirs from the start); an engagement counts only before the user's cut-off
    (``timed``), so the share never uses what the followees did after the feed was shown.
    """

    metric: str
    by_user: Mapping[str, Sequence[tuple[str, float]]]
    timed: bool

    def polls(self, users: Iterable[str], before: float) -> frozenset[str]:
        return frozenset(p for u in users for p, t in self.by_user.get(u, ())
                         if not self.timed or t < before)

    def counted(self, users: Iterable[str]) -> dict[str, float]:
        """Poll -> the earliest time it counts as ``users``' (-inf: always), so one
        followee set is read at many cut-offs (the engagement control)."""
        first: dict[str, float] = {}
        for u in users:
            for p, t in self.by_user.get(u, ()):
                at = t if self.timed else -math.inf
                if at < first.get(p, math.inf):
                    first[p] = at
        return first

    @classmethod
    def authored(cls, metric: str, author: Mapping[str, str]) -> ShareRule:
        """A poll counts as its author's, whatever the time (``author``: poll -> author)."""
        by_user: dict[str, list[tuple[str, float]]] = {}
        for pid, who in author.items():
            if who:
                by_user.setdefault(who, []).append((pid, 0.0))
        return cls(metric, by_user, timed=False)


# Followee set -> poll -> the earliest time it counts as theirs (-inf: always, as for
# authorship; an engagement time for the engaged-with share).
Counted = Callable[[Collection[str]], Mapping[str, float]]


def share_counted(polls: Sequence[str], counted: Mapping[str, float], cutoff: float) -> float:
    """Share of ``polls`` that count as the followees' before ``cutoff``."""
    if not polls:
        return 0.0
    return sum(1 for p in polls if counted.get(p, math.inf) < cutoff) / len(polls)


def swapped_control(readers: Sequence[Reader], followees: Mapping[str, Collection[str]],
                    group: Mapping[str, str], counted: Counted, *, seed: int = 0,
                    others: int = CONTROL_OTHERS) -> np.ndarray:
    """Per reader *u*: the mean share of the polls of other readers of *u*'s group (the
    whole population when none is left there) that *u*'s followees account for; 0 for
    a reader without followees or polls (their own share is 0 too), and *u*'s own share
    when nobody else reads.

    *u*'s followees themselves do not read: *u* never follows *u*, so *u*'s own polls
    never count in *u*'s share, while a followee's polls would count in theirs (and
    without them, that followee would read a smaller set than *u* does)."""
    rng = np.random.default_rng(seed)
    by_group: dict[str, list[int]] = {}
    for k, r in enumerate(readers):
        if r.polls:
            by_group.setdefault(group.get(r.user_id, ""), []).append(k)
    members = {g: np.array(ks) for g, ks in by_group.items()}
    everyone = np.flatnonzero([bool(r.polls) for r in readers])
    position = {r.user_id: k for k, r in enumerate(readers)}
    out = np.zeros(len(readers))
    for j, u in enumerate(readers):
        own = followees.get(u.user_id)
        if not own or not u.polls:
            continue
        excluded = {j, *(position[f] for f in own if f in position)}
        pool = _sample(rng, members.get(group.get(u.user_id, ""), everyone), excluded, others)
        if not pool:
            pool = _sample(rng, everyone, excluded, others)
        theirs = counted(own)
        if not pool:  # nobody else reads: no evidence either way, the user's own share
            out[j] = share_counted(u.polls, theirs, u.cutoff)
            continue
        out[j] = float(np.mean([share_counted(readers[k].polls, theirs, readers[k].cutoff)
                                for k in pool]))
    return out


def _sample(rng: np.random.Generator, candidates: np.ndarray, excluded: set[int],
            size: int) -> list[int]:
    """Up to ``size`` of ``candidates`` none of which is ``excluded``, uniformly at
    random. Draws ``size`` + len(excluded) at most (enough whatever is excluded), so a
    user costs the same in a group of 100 or of 100,000."""
    wanted = size + len(excluded)
    if len(candidates) <= wanted:
        drawn = candidates[rng.permutation(len(candidates))]
    else:
        drawn = candidates[rng.choice(len(candidates), wanted, replace=False)]
    return [k for k in drawn.tolist() if k not in excluded][:size]
