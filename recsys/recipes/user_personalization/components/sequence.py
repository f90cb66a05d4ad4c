"""Sequence: which polls people engage with right after the ones this user just touched.

Item-item (EASE) sees a user's history as a set; its recent feature only weighs the
newest events more. This component reads order across users: a transition a -> b is
counted each time a user's event on b follows one on a within
:data:`SEQUENCE_WINDOW_EVENTS` events (the next event counts 1, the one after 1/2 ...),
and normalised like cosine, count / sqrt(events on a * events on b), so a popular b
does not follow everything (the popularity column says that already). Each poll keeps
its :data:`SEQUENCE_SUCCESSORS` strongest successors (a sparse catalog x catalog
matrix, so it stays on at 50k polls). A user's column sums the successor rows of their
latest events, halved every :data:`SEQUENCE_HALF_LIFE_EVENTS` newer events. The blend
learns its weight on the validation split (the newest events of training users: next
events, exactly what this predicts), floored at zero: where order says nothing, it
learns ~0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from recsys.arrays import csr_from_sorted_keys, run_starts
from recsys.recipes.user_personalization.components.base import (
    BaseComponent,
    FitEvents,
    UserContext,
    halving_weights,
    polls_read_before_finish,
    sparse_arrays,
    sparse_from,
    weighted_rows,
)
from recsys.recipes.user_personalization.settings import (
    SEQUENCE_HALF_LIFE_EVENTS,
    SEQUENCE_LAST_EVENTS,
    SEQUENCE_SUCCESSORS,
    SEQUENCE_WINDOW_EVENTS,
)

if TYPE_CHECKING:  # pragma: no cover
    from recsys.recipes.user_personalization.model import UserPersonalization, _UserVectors


def transition_counts(users: np.ndarray, items: np.ndarray, n_items: int, window: int,
                      later: np.ndarray | None = None, order: np.ndarray | None = None
                      ) -> sp.csr_matrix:
    """Raw counts (float64) of a -> b within ``window`` events of one user, weighted
    1 / distance, over events given in time order; with ``later`` (a mask over the
    events), only the pairs whose later event it marks. ``order``: the positions of the
    events to count, grouped by user in time order (:meth:`FitEvents.by_user`); by
    default every event, grouped here."""
    if order is None:  # group by user, keeping time order within each user
        order = np.argsort(users, kind="stable")
    # The polls in the type of the pair keys a * n_items + b (see _distance_counts):
    # uint32 while they fit (up to 65,536 polls), whose sort takes half int64's time.
    n_items = int(n_items)  # a numpy int32 would overflow the square below
    key = np.uint32 if n_items ** 2 <= 2 ** 32 else np.int64
    u, i = users[order], items[order].astype(key)
    marked = None if later is None else later[order]
    by_distance = [sp.csr_matrix((n_items, n_items))]
    for step in range(1, window + 1):
        one_user = u[:-step] == u[step:]
        if not one_user.any():
            break  # no user has this many events, nor more
        same = one_user & (i[:-step] != i[step:])
        if marked is not None:
            same &= marked[step:]
        by_distance.append(_distance_counts(i[:-step][same], i[step:][same], n_items, step))
    # Summed pairwise (a tree): each sum merges two canonical matrices in one pass.
    # Adding them one after another re-merged the growing total each time (33 s for
    # 1.5M events at 50k polls), one conversion of every pair at once took 2.4 s, this 1.0
    # (the per-distance matrices as many seconds again; see _distance_counts).
    while len(by_distance) > 1:
        by_distance = [by_distance[k] + by_distance[k + 1] if k + 1 < len(by_distance)
                       else by_distance[k] for k in range(0, len(by_distance), 2)]
    counts = by_distance[0].tocsr()
    counts.sum_duplicates()  # canonical: one entry per pair, columns sorted
    return counts


def _distance_counts(a: np.ndarray, b: np.ndarray, n_items: int, step: int
                     ) -> sp.csr_matrix:
    """The transitions a -> b at one distance as a canonical CSR matrix, each pair's
    entry 1 / step added once per transition (float64: a popular pair repeats 100,000s
    of times, and float32 sums drifted by 0.3 % at 1.5M events).

    The same matrix, to the bit, as ``csr_matrix((np.full(len(a), 1 / step), (a, b)))``,
    whose sum_duplicates adds a pair's entries one after another; cumsum adds the same
    way, so a pair seen c times gets the c-th running sum. One sort of the pair keys
    took a third of the time of scipy's COO -> CSR conversion, which sorted each row's
    columns and summed their duplicates (at 50k polls, 1.4M transitions a distance)."""
    keys = np.sort(a * a.dtype.type(n_items) + b)  # a, b: the key type, as is n_items
    first = run_starts(keys)
    times = np.diff(first, append=len(keys))  # transitions per distinct pair
    running = np.cumsum(np.full(int(times.max(initial=0)), 1.0 / step))
    return csr_from_sorted_keys(keys[first], running[times - 1], n_items, n_items)


def successor_matrix(counts: sp.csr_matrix, items: np.ndarray, successors: int,
                     rows: np.ndarray | None = None) -> sp.csr_matrix | None:
    """Counts normalised like cosine by each poll's events in ``items``, each row cut to
    its ``successors`` strongest (float32); None when there is no transition. With
    ``rows``, only those rows (the others empty): each row is normalised and cut alone."""
    if not counts.nnz:
        return None
    if rows is not None:
        wanted = np.zeros(counts.shape[0], bool)
        wanted[rows] = True
        lengths = np.where(wanted, np.diff(counts.indptr), 0)
        entries = np.repeat(wanted, np.diff(counts.indptr))
        counts = sp.csr_matrix((counts.data[entries], counts.indices[entries],
                                np.r_[0, np.cumsum(lengths)]), shape=counts.shape)
    events = np.bincount(items, minlength=counts.shape[0]).astype(np.float64)
    norm = 1.0 / np.sqrt(np.maximum(events, 1.0))
    # A row's own factor orders nothing within the row: cut each row on count x its
    # column's factor first, then scale the few survivors by the row's (at 50k polls,
    # 4M entries instead of 20M).
    by_column = sp.csr_matrix((counts.data * norm[counts.indices], counts.indices,
                               counts.indptr), shape=counts.shape)
    top = _top_per_row(by_column, successors)
    top.data *= np.repeat(norm, np.diff(top.indptr))
    return top.astype(np.float32)


def transitions(users: np.ndarray, items: np.ndarray, n_items: int, window: int,
                successors: int) -> sp.csr_matrix | None:
    """The successor matrix of events given in time order (see the module docstring);
    None when no user has two events."""
    return successor_matrix(transition_counts(users, items, n_items, window), items,
                            successors)


def _top_per_row(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """``m`` with each row's ``k`` largest entries only."""
    lengths = np.diff(m.indptr)
    long_rows = np.flatnonzero(lengths > k)
    if not len(long_rows):
        return m
    keep = np.ones(m.nnz, bool)
    for r in long_rows:  # a loop over rows, each cut by argpartition (no global sort)
        lo, hi = m.indptr[r], m.indptr[r + 1]
        keep[lo + np.argpartition(-m.data[lo:hi], k)[k:]] = False
    indptr = np.concatenate([[0], np.cumsum(np.minimum(lengths, k))])
    return sp.csr_matrix((m.data[keep], m.indices[keep], indptr), shape=m.shape)


class SequenceAware(BaseComponent):
    name = "sequence"
    features = ("sequence",)
    weights = ("sequence",)
    affinities = ("sequence",)

    def __init__(self) -> None:
        self._counts: sp.csr_matrix | None = None  # fit's raw counts, until finish

    def fit(self, up: UserPersonalization, events: FitEvents) -> None:
        keep = events.keep
        self._counts = transition_counts(events.users, events.items, len(up.item_ids_),
                                         SEQUENCE_WINDOW_EVENTS, order=events.by_user(keep))
        # Until finish only the validation users' latest events read the matrix
        # (successors): the other rows would be cut for nothing (finish cuts them all).
        rows = (polls_read_before_finish(up, events, SEQUENCE_LAST_EVENTS)
                if events.is_target.any() else None)
        up.sequence_ = successor_matrix(self._counts, events.items[keep], SEQUENCE_SUCCESSORS,
                                        rows)

    def finish(self, up: UserPersonalization, events: FitEvents) -> None:
        # The withheld targets are each validation user's newest events (a suffix of
        # their events), so every pair fit did not count has a target as its later
        # event: counting those alone and adding them gives the counts over all events
        # at a fraction of a second count (tested against a count from scratch).
        counts = self._counts
        assert counts is not None, "finish follows fit, which leaves its counts here"
        if events.is_target.any():
            counts = counts + transition_counts(events.users, events.items,
                                                len(up.item_ids_), SEQUENCE_WINDOW_EVENTS,
                                                later=events.is_target,
                                                order=events.by_user())
        self._counts = None
        up.sequence_ = successor_matrix(counts, events.items, SEQUENCE_SUCCESSORS)

    def empty(self, up: UserPersonalization, events: FitEvents) -> None:
        self._counts = None
        up.sequence_ = None

    def score(self, up: UserPersonalization, user: UserContext) -> np.ndarray:
        row = self.row(up, user.user_id)
        return (np.zeros(len(up.item_ids_), np.float32) if row is None else row)[None, :]

    def score_at(self, up: UserPersonalization, user: UserContext, polls: np.ndarray
                 ) -> np.ndarray:
        # The catalog-wide bincount of the request's successors (0.1 ms at 50k polls) beat
        # summing them per head poll; the successors themselves come from the request memo.
        row = self.row(up, user.user_id, up._user_vectors(user.user_id))
        return (np.zeros(len(polls), np.float32) if row is None else row[polls])[None, :]

    @staticmethod
    def successors(up: UserPersonalization, user_id: str | None,
                   vectors: _UserVectors | None = None
                   ) -> tuple[np.ndarray, np.ndarray] | None:
        """The successors of the user's latest events and their weighted strengths (a
        poll may repeat: its entries add up); None without the matrix or history."""
        if vectors is not None:  # once a request: serving and the head's column
            return vectors.once("successors", lambda: SequenceAware.successors(up, user_id))
        t = getattr(up, "sequence_", None)
        recent = up.recent_.get(user_id) if user_id is not None else None
        if t is None or recent is None or not len(recent[0]):
            return None
        items = recent[0][-SEQUENCE_LAST_EVENTS:]  # events are kept in time order
        weights = halving_weights(len(items), SEQUENCE_HALF_LIFE_EVENTS).astype(np.float32)
        return weighted_rows(t, items, weights)  # polls added after fit: no transitions

    @staticmethod
    def row(up: UserPersonalization, user_id: str | None,
            vectors: _UserVectors | None = None) -> np.ndarray | None:
        """The user's sequence scores over every poll (poll-id order); None without the
        matrix or history."""
        found = SequenceAware.successors(up, user_id, vectors)
        if found is None:
            return None
        return np.bincount(found[0], weights=found[1],
                           minlength=len(up.item_ids_)).astype(np.float32)

    def save(self, up: UserPersonalization) -> dict[str, np.ndarray]:
        return sparse_arrays("sequence", getattr(up, "sequence_", None))

    def load(self, up: UserPersonalization, arrays: Mapping[str, np.ndarray]) -> None:
        up.sequence_ = sparse_from("sequence", arrays)  # None in models saved before it
