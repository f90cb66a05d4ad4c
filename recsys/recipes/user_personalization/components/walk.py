"""Walk: RP3beta (Paudel et al. 2017) over the whole catalog, sparse, at any size.

Item-item's EASE is dense (catalog² floats), so past ``item_item_max_items`` it covers
only an active window of the most-engaged polls: on Amazon Sports (18,357 products,
development) that window held 43 % of the reviews and item-item added nothing to UP,
while the RP3beta peer over every product scored 0.0361 NDCG@10 against UP-without-
sequence's 0.0263. This component is that peer's model inside the blend: a random walk
poll -> user -> poll, each step's probability raised to :data:`WALK_ALPHA`, the arrival
poll's score divided by its popularity to the power beta, each poll keeping its
:data:`WALK_NEIGHBOURS` strongest arrivals (a sparse catalog x catalog matrix). Beta
(how much a popular arrival is discounted) is chosen inside ``fit`` on the blend's
validation users, like EASE's lambda. A user's column sums the rows of their latest
events, halved every :data:`WALK_HALF_LIFE_EVENTS` newer events: where the peer walks
from every poll the user touched alike, the last one says most about the next.

The walk's cost is the number of (poll, user, poll) pairs: the sum over users of their
distinct polls squared. Each user walks from their latest polls only, as many as keep
that sum within :data:`WALK_MAX_PAIRS`: sparse data, where this component matters,
stays whole; the demo at 50,000 polls (5,000 users with 300 events each) walks from
each user's latest ~47 polls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from recsys.arrays import csr_from_sorted_keys, run_starts
from recsys.recipes.user_personalization.components.base import (
    BaseComponent,
    FitEvents,
    UserContext,
    halving_weights,
    newest_first,
    polls_read_before_finish,
    sparse_arrays,
    sparse_from,
    weighted_rows,
)
from recsys.recipes.user_personalization.settings import (
    ITEM_ITEM_TUNING_DEPTH,
    ITEM_ITEM_TUNING_USERS,
    WALK_ALPHA,
    WALK_BETA_GRID,
    WALK_DEFAULT_BETA,
    WALK_HALF_LIFE_EVENTS,
    WALK_LAST_EVENTS,
    WALK_MAX_PAIRS,
    WALK_NEIGHBOURS,
    WALK_ROW_CHUNK,
)

if TYPE_CHECKING:  # pragma: no cover
    from recsys.recipes.user_personalization.model import UserPersonalization, _UserVectors


def latest_polls(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int,
                 max_pairs: int) -> sp.csr_matrix:
    """Users x polls, 1 where the poll is among the user's most recently touched distinct
    polls (events given in time order): the latest :func:`polls_per_user` of them, so
    that the walk's pairs (the sum of each user's polls squared) stay within
    ``max_pairs``."""
    if not len(users):
        return sp.csr_matrix((n_users, n_items), dtype=np.float64)
    # One sort groups the events by (user, poll) pair, in any order within a pair: its
    # latest event is its largest position (np.unique's stable sort of the pairs, then
    # a lexsort, took 3x as long at 1.5M events).
    n = len(users)
    pairs = users.astype(np.int64) * n_items + items
    order = np.argsort(pairs)
    pairs = pairs[order]
    first = run_starts(pairs)
    pair, position = pairs[first], np.maximum.reduceat(order, first)
    u = pair // n_items
    # Within each user, rank the distinct polls by how recently they were touched:
    # sorted by (user, newest first), a poll's place after its user's first is its rank.
    by_recency = np.argsort(u * n + (n - 1 - position))
    lengths = np.bincount(u, minlength=n_users)
    starts = np.cumsum(lengths) - lengths
    rank = np.empty(len(pair), np.int64)
    rank[by_recency] = np.arange(len(pair)) - np.repeat(starts, lengths)
    keep = rank < polls_per_user(lengths[lengths > 0], max_pairs)
    # The kept pairs are in (user, poll) order: the matrix comes out canonical.
    return csr_from_sorted_keys(pair[keep], np.ones(int(keep.sum())), n_users, n_items)


def polls_per_user(lengths: np.ndarray, max_pairs: int) -> int:
    """The most polls a user may walk from: the largest cap c with sum(min(length, c)²)
    within ``max_pairs`` (every user's whole history when that fits)."""
    lengths = np.sort(lengths.astype(np.int64))
    if not len(lengths) or int((lengths ** 2).sum()) <= max_pairs:
        return int(lengths[-1]) if len(lengths) else 0
    low, high = 1, int(lengths[-1])  # the sum is monotone in c: bisect
    while low < high:
        c = (low + high + 1) // 2
        if int((np.minimum(lengths, c) ** 2).sum()) <= max_pairs:
            low = c
        else:
            high = c - 1
    return low


def top_per_row(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """``m`` (canonical CSR, entries > 0) with each row's ``k`` largest entries (ties:
    the lower column)."""
    lengths = np.diff(m.indptr)
    long = lengths > k
    keep = np.repeat(~long, lengths)  # short rows stay whole
    if long.any() and k > 0:  # (k = 0: no entry of a long row stays)
        # One sort of the long rows' entries by row, then by value (largest first): the
        # key is the row plus the value's shortfall from its row's largest, in [0, 0.5].
        # A sort on one float key took 2.2 s where sorting on (row, -value, column)
        # took 5.4 s, for 10M entries.
        long_lengths = lengths[long]
        long_starts = np.cumsum(long_lengths) - long_lengths  # in the long rows' entries
        r, v = np.repeat(np.flatnonzero(long), long_lengths), m.data[~keep]
        # Each long row's largest: its entries are contiguous (reduceat, where
        # np.maximum.at took as long as the rest together).
        largest = np.repeat(np.maximum.reduceat(v, long_starts), long_lengths)
        key = r + 0.5 * (1.0 - v / largest)
        # The k smallest keys of each row, ties to the earlier entry (the lower column), as
        # a stable argsort of the keys gave them, without the argsort (1.3 s of 1.5 at 50k
        # polls): the keys of row r lie in [r, r + 0.5], so one plain sort of them is
        # sorted by row, and each row's k-th smallest key is its threshold.
        threshold = np.repeat(np.sort(key)[long_starts + k - 1], long_lengths)
        chosen = key <= threshold
        # A row with more keys equal to its threshold than places left keeps the
        # earliest of them (rare: the values tie, or are a few ulps apart).
        over = np.add.reduceat(chosen, long_starts, dtype=np.int64) > k
        if over.any():
            at = (key == threshold) & np.repeat(over, long_lengths)
            places = k - np.add.reduceat(key < threshold, long_starts, dtype=np.int64)
            at_rank = np.cumsum(at) - at  # equal keys before this one, across rows ...
            at_rank -= np.repeat(at_rank[long_starts], long_lengths)  # ... and in its row
            chosen &= ~at | (at_rank < np.repeat(places, long_lengths))
        keep[~keep] = chosen
    return sp.csr_matrix((m.data[keep], m.indices[keep],
                          np.r_[0, np.cumsum(np.minimum(lengths, k))]), shape=m.shape)


def walk_matrices(x: sp.csr_matrix, alpha: float, betas: Sequence[float], neighbours: int,
                  rows: np.ndarray | None = None) -> list[sp.csr_matrix]:
    """RP3beta's poll x poll matrix of the binary users x polls ``x``, one per beta:
    P(poll -> user -> poll) with each step's probability to the power ``alpha``, column
    j divided by popularity_j ** beta, the diagonal dropped, ``neighbours`` kept per row
    (float32). The walk is made once; each beta only rescales and cuts it. With
    ``rows`` (ascending poll indices), only those rows are walked; the others are empty."""
    polls_per_user = np.asarray(x.sum(axis=1)).ravel()
    users_per_poll = np.asarray(x.sum(axis=0)).ravel()
    to_poll = (sp.diags(1.0 / np.maximum(polls_per_user, 1.0)) @ x).tocsr()
    to_user = (sp.diags(1.0 / np.maximum(users_per_poll, 1.0)) @ x.T).tocsr()
    to_poll.data **= alpha
    to_user.data **= alpha
    n = x.shape[1]
    rows = np.arange(n) if rows is None else np.asarray(rows, np.int64)
    discount = [np.maximum(users_per_poll, 1.0) ** -beta for beta in betas]
    parts: list[list[sp.csr_matrix]] = [[] for _ in betas]
    for start in range(0, len(rows), WALK_ROW_CHUNK):
        chunk = rows[start:start + WALK_ROW_CHUNK]
        # The product's columns come unsorted (and never repeat within a row). Two
        # conversions sort them, each a counting sort over the columns, in 2/3 of the
        # time sort_indices' per-row sorts took (the same arrays: a row's values are
        # only reordered).
        walk = (to_user[chunk] @ to_poll).tocsc().tocsr()
        # A poll never recommends itself.
        walk.data[walk.indices == np.repeat(chunk, np.diff(walk.indptr))] = 0.0
        walk.eliminate_zeros()
        for part, by_popularity in zip(parts, discount):
            scaled = sp.csr_matrix((walk.data * by_popularity[walk.indices], walk.indices,
                                    walk.indptr), shape=walk.shape)
            part.append(top_per_row(scaled, neighbours).astype(np.float32))
    matrices = []
    for part in parts:
        walked = (sp.vstack(part, format="csr") if part
                  else sp.csr_matrix((0, n), dtype=np.float32))
        if len(rows) < n:  # the walked rows in their places, the rest empty
            lengths = np.zeros(n, np.int64)
            lengths[rows] = np.diff(walked.indptr)
            walked = sp.csr_matrix((walked.data, walked.indices, np.r_[0, np.cumsum(lengths)]),
                                   shape=(n, n))
        matrices.append(walked)
    return matrices


def ndcg_sum(truth: np.ndarray, scores: np.ndarray, k: int) -> float:
    """The summed NDCG@k of the rows (``truth`` boolean), ties at the cut broken by
    position. A walk's scores are mostly zeros, so its rows tie often; item_item's
    ``ndcg_at`` hands ties to sklearn (averaging their gains), which at 50,000 polls took
    30 s of choosing beta."""
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = np.take_along_axis(truth, top, axis=1) @ discount
    ideal = np.cumsum(discount)[np.minimum(truth.sum(axis=1), k) - 1]
    return float(np.sum(np.where(truth.any(axis=1), dcg / ideal, 0.0)))


class Walk(BaseComponent):
    name = "walk"
    features = ("walk",)
    weights = ("walk",)
    affinities = ("walk",)

    def fit(self, up: UserPersonalization, events: FitEvents) -> None:
        keep = events.keep
        x = self.matrix(up, events.users[keep], events.items[keep])
        up.walk_beta_ = WALK_DEFAULT_BETA
        if not events.is_target.any():
            up.walk_ = walk_matrices(x, WALK_ALPHA, [up.walk_beta_], WALK_NEIGHBOURS)[0]
            return
        # Until finish, only the validation users read the walk (to choose beta and to
        # learn the blend), and only the rows of their latest events (arrivals): the
        # grid walks from those polls alone. A row's walk and cut read no other row, so
        # those rows are what a walk of every poll would give them (at 50k polls, a
        # fifth of the polls the validation users ever touched).
        rows = polls_read_before_finish(up, events, WALK_LAST_EVENTS)  # see arrivals
        matrices = walk_matrices(x, WALK_ALPHA, WALK_BETA_GRID, WALK_NEIGHBOURS, rows)
        best = self.choose(up, events, matrices)
        up.walk_beta_ = WALK_BETA_GRID[best]
        up.walk_ = matrices[best]

    def finish(self, up: UserPersonalization, events: FitEvents) -> None:
        # Walked again from every poll over every event, at the chosen beta.
        if events.is_target.any():
            x = self.matrix(up, events.users, events.items)
            up.walk_ = walk_matrices(x, WALK_ALPHA, [up.walk_beta_], WALK_NEIGHBOURS)[0]

    def empty(self, up: UserPersonalization, events: FitEvents) -> None:
        up.walk_ = None
        up.walk_beta_ = WALK_DEFAULT_BETA

    @staticmethod
    def matrix(up: UserPersonalization, users: np.ndarray, items: np.ndarray) -> sp.csr_matrix:
        return latest_polls(users, items, len(up.user_ids_), len(up.item_ids_),
                            WALK_MAX_PAIRS)

    @staticmethod
    def choose(up: UserPersonalization, events: FitEvents,
               matrices: Sequence[sp.csr_matrix]) -> int:
        """Index of the matrix whose column alone (each validation user's latest events,
        weighted as served) ranks the validation users' targets best
        (NDCG@ITEM_ITEM_TUNING_DEPTH over up to ITEM_ITEM_TUNING_USERS users); the first
        on ties."""
        target_users = events.users[events.is_target]
        rows = np.unique(target_users)[:ITEM_ITEM_TUNING_USERS]
        truth = sp.csr_matrix((np.ones(len(target_users)),
                               (target_users, events.items[events.is_target])),
                              shape=(len(up.user_ids_), len(up.item_ids_)))[rows]
        seen, latest = Walk.histories(up, events, rows)
        truth = truth - truth.multiply(seen)  # a poll already touched is not a target
        truth.eliminate_zeros()
        has_target = (np.diff(truth.indptr) > 0) & (np.diff(seen.indptr) > 0)
        if not has_target.any():
            return list(WALK_BETA_GRID).index(WALK_DEFAULT_BETA)
        truth, seen, latest = truth[has_target], seen[has_target], latest[has_target]
        totals = np.zeros(len(matrices))
        # Users in batches, so a 50k-poll catalog never needs 1,000 dense rows at once.
        for start in range(0, truth.shape[0], 250):
            batch = slice(start, start + 250)
            t = truth[batch].toarray() > 0
            for j, walk in enumerate(matrices):
                scores = (latest[batch] @ walk).toarray()
                scores[seen[batch].nonzero()] = -np.inf  # seen polls go to the bottom
                totals[j] += ndcg_sum(t, scores, ITEM_ITEM_TUNING_DEPTH)
        return int(np.argmax(totals))

    @staticmethod
    def histories(up: UserPersonalization, events: FitEvents, rows: np.ndarray
                  ) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """For the users ``rows``, from the events the blend may see: every poll they
        touched (binary), and their latest events weighted as :meth:`arrivals` weighs
        them at serving."""
        idx, newer, recent = newest_first(events, rows,
                                          min(up.max_recent_events, WALK_LAST_EVENTS))
        users, items = events.users[idx], events.items[idx]
        shape = (len(up.user_ids_), len(up.item_ids_))
        seen = sp.csr_matrix((np.ones(len(idx)), (users, items)), shape=shape)
        weights = events.weights[idx][recent] * 0.5 ** (newer[recent] / WALK_HALF_LIFE_EVENTS)
        latest = sp.csr_matrix((weights, (users[recent], items[recent])), shape=shape)
        seen.sum_duplicates()
        return seen[rows], latest[rows]

    def score(self, up: UserPersonalization, user: UserContext) -> np.ndarray:
        row = self.row(up, user.user_id)
        return (np.zeros(len(up.item_ids_), np.float32) if row is None else row)[None, :]

    def score_at(self, up: UserPersonalization, user: UserContext, polls: np.ndarray
                 ) -> np.ndarray:
        # The catalog-wide bincount of the request's arrivals (0.1 ms at 50k polls) beat
        # summing them per head poll; the arrivals themselves come from the request memo.
        row = self.row(up, user.user_id, up._user_vectors(user.user_id))
        return (np.zeros(len(polls), np.float32) if row is None else row[polls])[None, :]

    @staticmethod
    def arrivals(up: UserPersonalization, user_id: str | None,
                 vectors: _UserVectors | None = None
                 ) -> tuple[np.ndarray, np.ndarray] | None:
        """The polls the walk reaches from the user's latest :data:`WALK_LAST_EVENTS`
        events, and how strongly: each event's row weighted by its event type and halved
        every :data:`WALK_HALF_LIFE_EVENTS` newer events (a poll may repeat: its entries
        add up); None without the matrix or history."""
        if vectors is not None:  # once a request: serving and the head's column
            return vectors.once("arrivals", lambda: Walk.arrivals(up, user_id))
        w = getattr(up, "walk_", None)
        recent = up.recent_.get(user_id) if user_id is not None else None
        if w is None or recent is None or not len(recent[0]):
            return None
        items, weights, _ = recent  # events are kept in time order
        items, weights = items[-WALK_LAST_EVENTS:], weights[-WALK_LAST_EVENTS:]
        weights = (weights * halving_weights(len(items), WALK_HALF_LIFE_EVENTS)).astype(
            np.float32)
        return weighted_rows(w, items, weights)  # polls added after fit have no row yet

    @staticmethod
    def row(up: UserPersonalization, user_id: str | None,
            vectors: _UserVectors | None = None) -> np.ndarray | None:
        """The user's walk scores over every poll (poll-id order); None without them."""
        found = Walk.arrivals(up, user_id, vectors)
        if found is None:
            return None
        return np.bincount(found[0], weights=found[1],
                           minlength=len(up.item_ids_)).astype(np.float32)

    def save(self, up: UserPersonalization) -> dict[str, np.ndarray]:
        return {**sparse_arrays("walk", getattr(up, "walk_", None)),
                "walk_beta": np.array(getattr(up, "walk_beta_", WALK_DEFAULT_BETA))}

    def load(self, up: UserPersonalization, arrays: Mapping[str, np.ndarray]) -> None:
        up.walk_ = sparse_from("walk", arrays)  # None in models saved before it
        files = set(getattr(arrays, "files", arrays))
        up.walk_beta_ = float(arrays["walk_beta"]) if "walk_beta" in files \
            else WALK_DEFAULT_BETA
