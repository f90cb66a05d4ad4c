"""Item-item: EASE's closed form B (Steck, 2019; built by recsys/ease.py), lambda chosen
on the blend's validation split.

Two blend columns read it at request time: the sum of B rows of every poll the user
touched (EASE's own score) and of their latest events with a decay, because what a
user did last says most about what they do next. On MovieLens 100k (3 folds) these
lifted UP's NDCG@10 from 0.129 to 0.155, past EASE's 0.141.

B is catalog² floats, so a larger catalog than ``item_item_max_items`` gets B over its
active window (the ``item_item_active_polls`` most-interacted polls) and every other
poll is scored like a cold one, from its content neighbours in the window. A cold poll's
B column is nearly empty, so its item-item score is shrunk (like its factor) towards
the scores of the warm polls its content most resembles, as far as it resembles them:
a new poll whose text matches what the user engages with is scored like the polls it
resembles, not like nothing, and one that resembles nothing keeps its own score. On the
demo data (2,000 users, 5,000 polls, ``hunch evaluate --folds 3``: 417 users with a
cold relevant poll) this took cold-poll recall@25 with text from 0 to 0.014
(without text it stays 0; paired difference [0.006, 0.025]) at an unchanged NDCG@10
(0.167); ranked among cold polls only, text 0.348 vs no text 0.276.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from recsys.arrays import csr_from_sorted_keys, sorted_distinct
from recsys.recipes.user_personalization.components.base import (
    BaseComponent,
    FitEvents,
    UserContext,
    halving_weights,
    sparse_arrays,
    sparse_from,
)
from recsys.recipes.user_personalization.settings import (
    ITEM_ITEM_CONTENT_NEIGHBOURS,
    ITEM_ITEM_DEFAULT_L2,
    ITEM_ITEM_GATHER_MAX_SHARE,
    ITEM_ITEM_L2_GRID,
    ITEM_ITEM_NEIGHBOUR_PRIOR,
    ITEM_ITEM_RECENT_HALF_LIFE_EVENTS,
    ITEM_ITEM_TUNING_DEPTH,
    ITEM_ITEM_TUNING_USERS,
    NEIGHBOUR_CHUNK,
    WARM_ITEM_MIN_INTERACTIONS,
)
from recsys.shared_fits import matrix_key, memo

if TYPE_CHECKING:  # pragma: no cover
    from recsys.recipes.user_personalization.model import UserPersonalization, _UserVectors


def ndcg_at(truth: np.ndarray, scores: np.ndarray, k: int) -> float:
    """``sklearn.metrics.ndcg_score(truth, scores, k=k)``, the mean NDCG@k of the rows.

    sklearn averages the gains of tied scores, which costs most of lambda's choice (0.2 s
    of a 2 s fit on MovieLens 100k). When every row's k + 1 best scores are distinct, no
    tie reaches the top k and plain DCG is the same number, computed here on each row's
    top k + 1 alone; otherwise sklearn computes it."""
    from sklearn.metrics import ndcg_score

    if k >= scores.shape[1]:
        return float(ndcg_score(truth, scores, k=k))
    best = np.argpartition(-scores, k, axis=1)[:, :k + 1]
    best_scores = np.take_along_axis(scores, best, axis=1)
    order = np.argsort(-best_scores, axis=1)
    best, best_scores = (np.take_along_axis(a, order, axis=1) for a in (best, best_scores))
    if (np.diff(best_scores, axis=1) == 0).any():
        return float(ndcg_score(truth, scores, k=k))
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = np.take_along_axis(truth, best[:, :k], axis=1) @ discount
    ideal = -np.sort(-truth, axis=1)[:, :k] @ discount
    return float(np.mean(np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0)))


class ItemItem(BaseComponent):
    name = "item_item"
    features = ("item_item", "item_item_recent")
    weights = ("item_item", "item_item_recent")
    affinities = ("item_item", "item_item_recent")

    def fit(self, up: UserPersonalization, events: FitEvents) -> None:
        self.fit_weights(up, events.users, events.items, events.keep, events.is_target)
        self.fit_neighbours(up)

    def empty(self, up: UserPersonalization, events: FitEvents) -> None:
        up.item_item_ = None
        up.item_item_l2_ = ITEM_ITEM_DEFAULT_L2
        up.item_item_polls_ = np.arange(len(up.item_ids_))
        up.item_item_pool_ = np.zeros(0, np.int64)
        up.item_item_neighbours_ = None

    def finish(self, up: UserPersonalization, events: FitEvents) -> None:
        # Refit B on every event, validation targets included, at the chosen lambda.
        if up.item_item_ is not None and events.is_target.any():
            up.item_item_ = self.weights_of(up, events.users, events.items, up.item_item_l2_)

    def score(self, up: UserPersonalization, user: UserContext) -> np.ndarray:
        n = len(up.item_ids_)
        rows = [self.row(up, user.user_id), self.recent_row(up, user.user_id)]
        return np.vstack([np.zeros(n, np.float32) if r is None else r for r in rows])

    def score_at(self, up: UserPersonalization, user: UserContext, polls: np.ndarray
                 ) -> np.ndarray:
        out = np.zeros((2, len(polls)), np.float32)
        if getattr(up, "item_item_", None) is None or user.user_id is None:
            return out
        vectors = up._user_vectors(user.user_id)
        owns = {row: own for row in (0, 1)
                if (own := self.user_column(up, user.user_id, row, vectors)) is not None}
        if owns:  # both columns in one pass over the head's neighbour rows
            out[list(owns)] = self.spread_at(up, np.vstack(list(owns.values())), polls)
        return out

    def add_polls(self, up: UserPersonalization, n_new: int) -> None:
        """The last ``n_new`` polls were just added: they have no column of B, so their
        item-item score is all borrowed from their content neighbours."""
        if getattr(up, "item_item_neighbours_", None) is not None:
            n = len(up.item_ids_)
            up.item_item_neighbours_ = sp.vstack([
                up.item_item_neighbours_,
                self.content_neighbours(up, np.arange(n - n_new, n))], format="csr")

    def save(self, up: UserPersonalization) -> dict[str, np.ndarray]:
        neighbours = sparse_arrays("neighbours", getattr(up, "item_item_neighbours_", None))
        return {
            "item_item": up.item_item_ if up.item_item_ is not None
            else np.zeros((0, 0), np.float32),
            "item_item_pool": up.item_item_pool_,
            "item_item_polls": getattr(up, "item_item_polls_", np.zeros(0, np.int64)),
            **neighbours,
        }

    def load(self, up: UserPersonalization, arrays: Mapping[str, np.ndarray]) -> None:
        a = arrays
        files = set(getattr(a, "files", a))
        b = a["item_item"] if "item_item" in files else np.zeros((0, 0), np.float32)
        up.item_item_ = b if b.size else None
        # Models saved before the active window covered the whole catalog.
        up.item_item_polls_ = a["item_item_polls"] if "item_item_polls" in files \
            else np.arange(len(b))
        up.item_item_pool_ = a["item_item_pool"] if "item_item_pool" in files \
            else np.zeros(0, np.int64)
        up.item_item_neighbours_ = sparse_from("neighbours", a)

    @staticmethod
    def fit_weights(up: UserPersonalization, users: np.ndarray, items: np.ndarray, keep: np.ndarray,
                       is_target: np.ndarray) -> None:
        """EASE's item-item weights from the events the blend may see, lambda chosen on
        the blend's validation users (never on anyone held out of ``fit``)."""
        up.item_item_ = None
        up.item_item_l2_ = ITEM_ITEM_DEFAULT_L2
        n_items = len(up.item_ids_)
        # B's polls (catalog indices, ascending): all of them, or the active window.
        up.item_item_polls_ = np.arange(n_items)
        if n_items > up.item_item_max_items:
            if not up.item_item_active_polls:
                return
            counts = np.bincount(items[keep], minlength=n_items)
            window = np.argsort(-counts, kind="stable")[:up.item_item_active_polls]
            up.item_item_polls_ = np.sort(window[counts[window] > 0])
            if not len(up.item_item_polls_):
                return
        spectrum = None
        if is_target.any():
            from recsys.ease import ease_spectrum

            # The lambda path's eigendecomposition, made once: B below is one product
            # of it (with more polls than users; else ease_weights inverts).
            spectrum = ease_spectrum(ItemItem.user_poll_matrix(up, users[keep], items[keep]))
            up.item_item_l2_ = ItemItem.choose_l2(up, users, items, keep, is_target, spectrum)
        up.item_item_ = ItemItem.weights_of(up, users[keep], items[keep],
                                                  up.item_item_l2_, spectrum)

    @staticmethod
    def fit_neighbours(up: UserPersonalization) -> None:
        """Each poll's nearest warm polls by content, the donors of its item-item score."""
        up.item_item_pool_ = np.zeros(0, np.int64)
        up.item_item_neighbours_ = None
        if up.item_item_ is None or not up.content_.shape[1]:
            return
        # Positions in B of its warm polls.
        up.item_item_pool_ = np.flatnonzero(
            up._train_counts[up.item_item_polls_] >= WARM_ITEM_MIN_INTERACTIONS)
        if len(up.item_item_pool_) < 2:
            return
        up.item_item_neighbours_ = ItemItem.content_neighbours(up, np.arange(len(up.item_ids_)))

    @staticmethod
    def content_neighbours(up: UserPersonalization, idx: np.ndarray) -> sp.csr_matrix:
        """Rows ``idx`` of the neighbour matrix (polls x B's polls): the
        :data:`ITEM_ITEM_CONTENT_NEIGHBOURS` warm polls most similar by content, each
        weighing similarity / (their similarities' sum + :data:`ITEM_ITEM_NEIGHBOUR_PRIOR`),
        so neighbours weigh as much as they resemble the poll (nothing for a poll that
        resembles none). A poll in B (never its own neighbour) keeps the rest on its own
        column, so ``spread`` shrinks it towards its neighbours only that far; a poll
        outside B keeps it on 0.

        Why not weights summing to 1 (as before 2026-12-04): on HetRec Last.fm a poll's
        text is an artist's name, twenty neighbours that barely resemble it took as much
        of its score as twenty close ones, and UP scored 0.0066 NDCG@10 below UP without
        text (5 folds); with these weights 0.0031 below (docs/public-data.md)."""
        polls = up.item_item_polls_
        pool = up.item_item_pool_
        n_b = len(up.item_item_)
        k = min(ITEM_ITEM_CONTENT_NEIGHBOURS, len(pool) - 1)
        pool_content = up.content_[polls[pool]]
        position = np.full(len(up.item_ids_), -1, np.int64)  # each poll's column in B
        position[polls] = np.arange(len(polls))
        rows, cols, vals = [], [], []
        for start in range(0, len(idx), NEIGHBOUR_CHUNK):
            chunk = idx[start:start + NEIGHBOUR_CHUNK]
            sim = up.content_[chunk] @ pool_content.T
            sim[chunk[:, None] == polls[pool][None, :]] = -np.inf
            top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
            weight = np.clip(np.take_along_axis(sim, top, axis=1), 0.0, 1.0)
            # The neighbours' similarities are their evidence; the prior weighs as much
            # as one identical neighbour would.
            denominator = weight.sum(1, keepdims=True) + ITEM_ITEM_NEIGHBOUR_PRIOR
            weight /= denominator
            own = np.flatnonzero(position[chunk] >= 0)
            rows += [np.repeat(np.arange(start, start + len(chunk)), k), start + own]
            cols += [pool[top].ravel(), position[chunk[own]]]
            vals += [weight.ravel(), ITEM_ITEM_NEIGHBOUR_PRIOR / denominator[own, 0]]
        return sp.csr_matrix(
            (np.concatenate(vals).astype(np.float32),
             (np.concatenate(rows), np.concatenate(cols))),
            shape=(len(idx), n_b))

    @staticmethod
    def user_poll_matrix(up: UserPersonalization, users: np.ndarray, items: np.ndarray) -> sp.csr_matrix:
        """Users x B's polls. Binary, as EASE's strongest weighting on vote data: a poll
        is touched or not."""
        # Built from the sorted distinct pairs: the same canonical matrix as a COO
        # conversion plus sum_duplicates, which sorted every row's columns once more.
        n_items = len(up.item_ids_)
        pairs = sorted_distinct(np.asarray(users, np.int64) * n_items + items)
        x = csr_from_sorted_keys(pairs, np.ones(len(pairs)), len(up.user_ids_), n_items)
        polls = getattr(up, "item_item_polls_", None)
        if polls is not None and len(polls) < x.shape[1]:
            x = x[:, polls]
        return x

    @staticmethod
    def weights_of(up: UserPersonalization, users: np.ndarray, items: np.ndarray, l2: float,
                   spectrum: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        from recsys.ease import ease_weights

        return ease_weights(ItemItem.user_poll_matrix(up, users, items), l2,
                            spectrum).astype(np.float32)

    @staticmethod
    def choose_l2(up: UserPersonalization, users: np.ndarray, items: np.ndarray, keep: np.ndarray,
                             is_target: np.ndarray,
                  spectrum: tuple[np.ndarray, np.ndarray] | None = None) -> float:
        """The lambda of :data:`ITEM_ITEM_L2_GRID` with the best validation NDCG@10
        (``spectrum``: recsys.ease.ease_spectrum of the kept events' matrix, if made)."""
        from recsys.ease import ease_regularization_path

        x = ItemItem.user_poll_matrix(up, users[keep], items[keep])
        rows = np.unique(users[is_target])[:ITEM_ITEM_TUNING_USERS]
        truth = ItemItem.user_poll_matrix(up, users[is_target], items[is_target])[rows]
        seen = x[rows]
        truth = truth - truth.multiply(seen)  # a poll already voted on is not a target
        truth.eliminate_zeros()
        has_target = np.diff(truth.indptr) > 0
        if not has_target.any():
            return ITEM_ITEM_DEFAULT_L2
        truth = truth[has_target]

        def best_l2() -> float:
            dense = truth.toarray()
            best, best_score = ITEM_ITEM_DEFAULT_L2, -1.0
            for l2, scores in ease_regularization_path(x, ITEM_ITEM_L2_GRID,
                                                       rows[has_target], spectrum):
                scores = np.asarray(scores)
                # Seen polls go to the bottom, as a feed leaves them out.
                scores[seen[has_target].nonzero()] = scores.min() - 1.0
                score = ndcg_at(dense, scores, ITEM_ITEM_TUNING_DEPTH)
                if score > best_score:
                    best, best_score = l2, score
            return best

        # A function of the events and the validation targets only (shared_fits.py).
        return memo("item-item lambda", x, best_l2, matrix_key(truth),
                    rows[has_target].tobytes(), ITEM_ITEM_L2_GRID, ITEM_ITEM_TUNING_DEPTH)

    @staticmethod
    def scores(up: UserPersonalization, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """``weights @ B[items]`` over every poll (poll-id order)."""
        return ItemItem.spread(up, ItemItem.own(up, items, weights))

    @staticmethod
    def own(up: UserPersonalization, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """``weights @ B[items]`` over B's polls."""
        b = up.item_item_
        polls = up.item_item_polls_
        # Polls outside B (past the active window, or added after fit) have no row of
        # B: their events say nothing here.
        if ItemItem._covers_prefix(polls):  # B's polls are 0..m-1: a poll is its row
            inside = items < len(polls)
            at = items[inside]
        else:
            at = np.minimum(np.searchsorted(polls, items), len(polls) - 1)
            inside = polls[at] == items
            at = at[inside]
        weights = weights[inside].astype(np.float32)
        if len(at) <= ITEM_ITEM_GATHER_MAX_SHARE * len(b):
            own = weights @ b[at]
        else:
            dense = np.zeros(len(b), np.float32)
            np.add.at(dense, at, weights)
            own = dense @ b
        return own

    @staticmethod
    def spread(up: UserPersonalization, own: np.ndarray,
               borrowed: np.ndarray | None = None) -> np.ndarray:
        """Scores over B's polls to scores over every poll (poll-id order); linear.
        ``borrowed``: :meth:`borrowed` of ``own`` when the caller kept it."""
        polls = up.item_item_polls_
        neighbours = getattr(up, "item_item_neighbours_", None)
        row = np.zeros(len(up.item_ids_), np.float32)
        # Below 10k polls B covers the catalog as it was fitted: slices, not gathers.
        where = slice(0, len(polls)) if ItemItem._covers_prefix(polls) else polls
        if neighbours is not None:
            # A poll without a column of B takes its content neighbours' scores.
            row[:neighbours.shape[0]] = (ItemItem.borrowed(up, own) if borrowed is None
                                         else borrowed)
            # B's polls are shrunk towards them by how cold each is. A convex mix, not
            # an addition: a warm poll's own column already says it all (adding the
            # borrowed score lowered cold-poll recall on the demo data).
            own = own + up._coldness[where] * (row[where] - own)
        row[where] = own
        return row

    @staticmethod
    def spread_at(up: UserPersonalization, owns: np.ndarray, polls: np.ndarray) -> np.ndarray:
        """``spread(up, own)[polls]`` for each row ``own`` of ``owns``, computing only
        those polls' scores (rows x polls)."""
        b_polls = up.item_item_polls_
        neighbours = getattr(up, "item_item_neighbours_", None)
        out = np.zeros((len(owns), len(polls)), np.float32)
        if neighbours is not None:
            has_row = polls < neighbours.shape[0]
            out[:, has_row] = (neighbours[polls[has_row]] @ owns.T).T
        if not len(b_polls):
            return out
        if ItemItem._covers_prefix(b_polls):
            at = polls
            inside = polls < len(b_polls)
        else:
            at = np.minimum(np.searchsorted(b_polls, polls), len(b_polls) - 1)
            inside = b_polls[at] == polls
        own_at = owns[:, at[inside]]
        if neighbours is not None:
            own_at = own_at + up._coldness[polls[inside]] * (out[:, inside] - own_at)
        out[:, inside] = own_at
        return out

    @staticmethod
    def borrowed(up: UserPersonalization, own: np.ndarray) -> np.ndarray | None:
        """Each poll's content neighbours' scores (poll-id order, the polls the neighbour
        matrix has rows for); None without neighbours. At 50k polls this sparse product
        is most of the component's cost per request, and it depends only on ``own``."""
        neighbours = getattr(up, "item_item_neighbours_", None)
        return None if neighbours is None else neighbours @ own

    @staticmethod
    def _covers_prefix(polls: np.ndarray) -> bool:
        """Whether B's polls (ascending, distinct) are exactly polls 0 .. len - 1."""
        return bool(len(polls)) and int(polls[-1]) == len(polls) - 1

    @staticmethod
    def serving_row(up: UserPersonalization, user_id: str | None) -> np.ndarray | None:
        """Both item-item features, blend-weighted, in one pass (poll-id order).

        Spreading scores to the polls outside B (a sparse product over the catalog) is
        linear, so the two features are summed over B's polls and spread once: at
        50,000 polls that product is most of the component's cost per request."""
        own = ItemItem.user_own(up, user_id)
        return None if own is None else ItemItem.spread(up, own)

    @staticmethod
    def user_own(up: UserPersonalization, user_id: str | None,
                 weights: Mapping[str, float] | None = None,
                 vectors: _UserVectors | None = None) -> np.ndarray | None:
        """Both item-item features of the user, blend-weighted and summed, over B's polls
        (None without B or history): what :meth:`spread` turns into a row. It depends on
        the user's events, B and the two blend weights only (``weights``: the user's,
        :func:`blend.user_weights`; by default the blend's own). ``vectors``: the
        request memo that keeps each unweighted column (see :meth:`user_column`)."""
        b = up.blend_ if weights is None else weights
        if getattr(up, "item_item_", None) is None or user_id is None:
            return None
        items, recent = up.interacted_.get(user_id), up.recent_.get(user_id)
        if (items is None or not len(items)) and (recent is None or not len(recent[0])):
            return None
        own = np.zeros(len(up.item_item_), np.float32)
        for row, name in enumerate(("item_item", "item_item_recent")):
            column = (ItemItem.user_column(up, user_id, row, vectors) if b[name]
                      else None)  # a weight of 0: not even computed
            if column is not None:
                own += b[name] * column
        return own

    @staticmethod
    def user_column(up: UserPersonalization, user_id: str, row: int,
                    vectors: _UserVectors | None = None) -> np.ndarray | None:
        """One unweighted item-item column of the user over B's polls: ``row`` 0 every
        poll they touched (binary, as EASE learns), 1 their latest events (halved);
        None where they have no such events. Kept in ``vectors`` (the request memo,
        ``UserPersonalization._user_vectors``) when given: the serving row and the
        re-ranker's head columns both read them."""
        if vectors is not None:
            return vectors.once(("item_item", row),
                                lambda: ItemItem.user_column(up, user_id, row))
        if row == 0:
            items = up.interacted_.get(user_id)
            return (None if items is None or not len(items)
                    else ItemItem.own(up, items, np.ones(len(items), np.float32)))
        recent = ItemItem.recent_events(up, user_id)
        return None if recent is None else ItemItem.own(up, *recent)

    @staticmethod
    def recent_events(up: UserPersonalization, user_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        """The user's latest events and their weights in the recent item-item feature."""
        recent = up.recent_.get(user_id)
        if recent is None or not len(recent[0]):
            return None
        items, weights, _ = recent  # events are kept in time order
        return items, weights * halving_weights(len(items), ITEM_ITEM_RECENT_HALF_LIFE_EVENTS)

    @staticmethod
    def row(up: UserPersonalization, user_id: str | None) -> np.ndarray | None:
        """EASE's scores for the user (poll-id order): the sum of the B rows of every poll
        they touched, as EASE was trained (binary); None without B or history."""
        if getattr(up, "item_item_", None) is None or user_id is None:
            return None
        items = up.interacted_.get(user_id)
        if items is None or not len(items):
            return None
        return ItemItem.scores(up, items, np.ones(len(items), np.float32))

    @staticmethod
    def recent_row(up: UserPersonalization, user_id: str | None) -> np.ndarray | None:
        """Item-item scores from the user's latest events only, each weighted by its event
        type and halved every :data:`ITEM_ITEM_RECENT_HALF_LIFE_EVENTS` newer events."""
        if getattr(up, "item_item_", None) is None or user_id is None:
            return None
        recent = ItemItem.recent_events(up, user_id)
        return None if recent is None else ItemItem.scores(up, *recent)
