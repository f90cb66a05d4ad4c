"""What a User-Personalization component is.

A component is one source of evidence about which polls a user will engage with next
(collaborative fold-in, item-item, content, segments, popularity, recency,
exploration). Each has ``fit`` (learn its state from the training events, before the
blend), ``finish`` (refit on every event once the blend is learned: the validation
targets are withheld only while the blend learns) and ``score`` (its blend columns for
one user over the whole catalog, poll-id order). The blend (model.py) is a logistic
regression over the columns of whichever components are registered; a component that
is not registered keeps empty state and adds nothing, which is how ``hunch evaluate
--ablate NAME`` measures what each one is worth.

State lives on the model under the attribute names it always had (``item_item_``,
``segment_lift_`` ...), so a saved model's files and the streaming code that grows
per-poll arrays stay one format; a component names the arrays it saves and restores.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:  # pragma: no cover
    from recsys.recipes.user_personalization.model import UserPersonalization


@dataclass
class FitEvents:
    """The training events as index arrays (time order) and what the blend may see."""

    users: np.ndarray
    items: np.ndarray
    weights: np.ndarray
    stamps: np.ndarray
    # Events outside the blend's validation targets (all True when there is no split).
    keep: np.ndarray
    is_target: np.ndarray
    items_meta: Mapping[str, Mapping[str, Any]]
    users_meta: Mapping[str, Mapping[str, Any]]
    _by_user: np.ndarray | None = field(default=None, repr=False)

    def by_user(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Positions of the events (of those ``mask`` marks) grouped by user, in time
        order within each user. One stable sort of all events serves every subset: a
        stable order filtered by a mask is the stable sort of that subset, so each
        reader gets the order its own sort gave it (at 1.5M events, ~0.15 s a sort,
        which the fit made six times)."""
        if self._by_user is None:
            self._by_user = np.argsort(self.users, kind="stable")
        return self._by_user if mask is None else self._by_user[mask[self._by_user]]


@dataclass
class UserContext:
    """Who is asking and when: ``t_ref`` is the moment poll ages count from."""

    user_id: str | None
    t_ref: float


class Component(Protocol):
    name: ClassVar[str]
    # Blend columns it contributes, in design-matrix order.
    features: ClassVar[tuple[str, ...]]
    # Every blend weight it owns, learned or not (zeroed when it is not registered).
    weights: ClassVar[tuple[str, ...]]
    # Features whose learned weight is floored at zero: a negative weight on an
    # affinity would say "show what the user dislikes", which is validation noise.
    affinities: ClassVar[tuple[str, ...]]

    def fit(self, up: UserPersonalization, events: FitEvents) -> None: ...

    def empty(self, up: UserPersonalization, events: FitEvents) -> None:
        """Not registered: leave the state the rest of the model reads, empty."""

    def finish(self, up: UserPersonalization, events: FitEvents) -> None: ...

    def score(self, up: UserPersonalization, user: UserContext) -> np.ndarray:
        """``len(features)`` rows over the catalog (poll-id order)."""

    def score_at(self, up: UserPersonalization, user: UserContext, polls: np.ndarray
                 ) -> np.ndarray:
        """``score(up, user)[:, polls]``: the columns at a few polls only (the re-ranker's
        head at serving, where the whole catalog's would cost ~6 ms at 50k polls)."""

    def save(self, up: UserPersonalization) -> dict[str, np.ndarray]: ...

    def load(self, up: UserPersonalization, arrays: Mapping[str, np.ndarray]) -> None: ...


class BaseComponent:
    """Defaults: nothing to fit again, no columns, no arrays."""

    name: ClassVar[str] = ""
    features: ClassVar[tuple[str, ...]] = ()
    weights: ClassVar[tuple[str, ...]] = ()
    affinities: ClassVar[tuple[str, ...]] = ()

    def fit(self, up: UserPersonalization, events: FitEvents) -> None:
        pass

    def empty(self, up: UserPersonalization, events: FitEvents) -> None:
        pass

    def finish(self, up: UserPersonalization, events: FitEvents) -> None:
        pass

    def score(self, up: UserPersonalization, user: UserContext) -> np.ndarray:
        return np.zeros((0, len(up.item_ids_)), np.float32)

    def score_at(self, up: UserPersonalization, user: UserContext, polls: np.ndarray
                 ) -> np.ndarray:
        # Correct for every component; the ones whose catalog-wide row is costly
        # override it with the same arithmetic over ``polls`` only.
        return self.score(up, user)[:, polls]

    def save(self, up: UserPersonalization) -> dict[str, np.ndarray]:
        return {}

    def load(self, up: UserPersonalization, arrays: Mapping[str, np.ndarray]) -> None:
        pass


def recent_weights(up: UserPersonalization, user_id: str | None
                   ) -> tuple[np.ndarray, np.ndarray] | None:
    """The polls of the user's latest events and their summed weights (repeated events
    on one poll add up, as training did); None without history.

    A request asks twice (the collaborative fold-in and the content profile): the last
    answer is kept with the events tuple it came from, which ``observe`` replaces (never
    mutates) when the user's events move, so holding it is what makes the memo exact."""
    recent = up.recent_.get(user_id) if user_id is not None else None
    if recent is None or not len(recent[0]):
        return None
    memo = up.__dict__.get("_recent_weights_memo")
    if memo is not None and memo[0] is recent:
        return memo[1]
    items, weights, _ = recent
    uniq, inverse = np.unique(items, return_inverse=True)
    # bincount sums in float64 in event order, as np.add.at did, in one pass.
    w = np.bincount(inverse, weights=weights, minlength=len(uniq))
    up._recent_weights_memo = (recent, (uniq, w))
    return uniq, w


def newest_first(events: FitEvents, users: np.ndarray, depth: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The events the blend may see (``events.keep``) of ``users``, grouped by user in
    time order (their positions), how many of the user's events are newer than each, and
    whether it is among the user's latest ``depth``."""
    idx = events.by_user(events.keep & np.isin(events.users, users))
    by_user = events.users[idx]
    ends = np.flatnonzero(np.r_[by_user[1:] != by_user[:-1], True])
    newer = np.repeat(ends, np.diff(np.r_[-1, ends])) - np.arange(len(idx))
    return idx, newer, newer < depth


def polls_read_before_finish(up: UserPersonalization, events: FitEvents, depth: int
                             ) -> np.ndarray:
    """The polls of the validation users' latest ``depth`` events (at most the
    ``max_recent_events`` kept per user): before ``finish`` only those users are scored
    (to learn the blend, to choose a setting), so a component that reads rows of a poll
    x poll matrix from a user's latest events reads only these rows until then."""
    idx, _, latest = newest_first(events, np.unique(events.users[events.is_target]),
                                  min(up.max_recent_events, depth))
    return np.unique(events.items[idx[latest]])


def halving_weights(n: int, half_life: float) -> np.ndarray:
    """Weights of a user's latest ``n`` events (time order, float64): the newest 1, each
    older one halved every ``half_life`` newer events."""
    newer = np.arange(n)[::-1]
    return 0.5 ** (newer / half_life)


def weighted_rows(m: sp.csr_matrix, rows: np.ndarray, weights: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray] | None:
    """The entries of ``m``'s rows ``rows``, each scaled by its row's weight, as (columns,
    values); a column may repeat (its values add up). Rows past ``m``'s last (polls added
    after fit) have none; None when no row is inside.

    Gathered by position: what ``m[rows]`` holds, without building a sparse matrix for
    it (scipy's row indexing was ~0.15 ms of a 3 ms request)."""
    inside = rows < m.shape[0]
    if not inside.any():
        return None
    rows = rows[inside]
    starts = m.indptr[rows]
    lengths = m.indptr[rows + 1] - starts
    at = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(
        lengths.sum())
    return m.indices[at], np.repeat(weights[inside], lengths) * m.data[at]


def sparse_arrays(prefix: str, m: sp.csr_matrix | None) -> dict[str, np.ndarray]:
    """A CSR matrix (or None: an empty indptr) as the arrays a saved model holds."""
    if m is None:
        return {f"{prefix}_indptr": np.zeros(0, np.int64)}
    return {f"{prefix}_data": m.data, f"{prefix}_indices": m.indices,
            f"{prefix}_indptr": m.indptr, f"{prefix}_shape": np.array(m.shape)}


def sparse_from(prefix: str, arrays: Mapping[str, np.ndarray]) -> sp.csr_matrix | None:
    """What :func:`sparse_arrays` saved; None when it saved none (or the model predates
    the arrays)."""
    files = set(getattr(arrays, "files", arrays))
    if f"{prefix}_indptr" not in files or not len(arrays[f"{prefix}_indptr"]):
        return None
    return sp.csr_matrix((arrays[f"{prefix}_data"], arrays[f"{prefix}_indices"],
                          arrays[f"{prefix}_indptr"]), shape=tuple(arrays[f"{prefix}_shape"]))
