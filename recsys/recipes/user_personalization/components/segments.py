"""Segments: users grouped by LOCALE, CLUSTER, COMMUNITY and AGE bucket.

Two uses: how much a user's segments over-engage with each poll (the lift, a blend
column), and where a user without events starts in the factor space (their segments'
mean ALS factor, read by the collaborative fold-in). The lift is a few vectorised
counts; no library offers it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from recsys.recipes.user_personalization.components.base import (
    BaseComponent,
    FitEvents,
    UserContext,
)
from recsys.recipes.user_personalization.settings import (
    AGE_BUCKET_EDGES,
    SEGMENT_ROW_CACHE_SIZE,
    SEGMENT_PRIOR_EVENTS,
)

if TYPE_CHECKING:  # pragma: no cover
    from recsys.recipes.user_personalization.model import UserPersonalization


def age_bucket(age: Any) -> str | None:
    if age is None:
        return None
    try:
        age = int(age)
    except (TypeError, ValueError):
        return None
    edges = AGE_BUCKET_EDGES
    i = int(np.searchsorted(edges, age, side="right"))
    low = "0" if i == 0 else str(edges[i - 1])
    high = "" if i == len(edges) else str(edges[i] - 1)
    return f"{low}-{high}"


def categorical_values(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    return [part for part in str(value).split("|") if part]


class Segments(BaseComponent):
    name = "segments"
    features = ("segment",)
    weights = ("segment",)

    def fit(self, up: UserPersonalization, events: FitEvents) -> None:
        self._index(up, events.users_meta)
        self._authors(up, events.items_meta)
        self._factors(up)
        self.set_lift(up, events.users[events.keep], events.items[events.keep])

    def empty(self, up: UserPersonalization, events: FitEvents) -> None:
        """Dropped: no user has a segment, so no lift and no segment start."""
        self._index(up, {})
        self._authors(up, {})
        self._factors(up)
        self.set_lift(up, events.users[:0], events.items[:0])

    def finish(self, up: UserPersonalization, events: FitEvents) -> None:
        self.set_lift(up, events.users, events.items)

    def score(self, up: UserPersonalization, user: UserContext) -> np.ndarray:
        segs = up.user_segments_.get(user.user_id, []) if user.user_id is not None else []
        row = (up.segment_lift_[segs].mean(0) if segs
               else np.zeros(len(up.item_ids_), np.float32))
        return row[None, :]

    def score_at(self, up: UserPersonalization, user: UserContext, polls: np.ndarray
                 ) -> np.ndarray:
        segs = up.user_segments_.get(user.user_id, []) if user.user_id is not None else []
        if not segs:
            return np.zeros((1, len(polls)), np.float32)
        return up.segment_lift_[np.ix_(segs, polls)].mean(0)[None, :]

    @staticmethod
    def _index(up: UserPersonalization, users: Mapping[str, Mapping[str, Any]]) -> None:
        up.segment_ids_ = []
        index: dict[str, int] = {}
        up.user_segments_ = {}
        for user_id, meta in users.items():
            segs = []
            for key in Segments._keys(up, meta):
                if key not in index:
                    index[key] = len(up.segment_ids_)
                    up.segment_ids_.append(key)
                segs.append(index[key])
            if segs:
                up.user_segments_[user_id] = segs
        up.segment_index_ = index

    @staticmethod
    def _authors(up: UserPersonalization, items: Mapping[str, Mapping[str, Any]]) -> None:
        """Each poll's author as an index (-1 without AUTHOR_ID), for the lift's prior."""
        index: dict[str, int] = {}
        author = np.full(len(up.item_ids_), -1, np.int64)
        for i, poll_id in enumerate(up.item_ids_):
            value = (items.get(poll_id) or {}).get("AUTHOR_ID")
            if value not in (None, ""):
                author[i] = index.setdefault(str(value), len(index))
        up._poll_author = author

    @staticmethod
    def _keys(up: UserPersonalization, meta: Mapping[str, Any]) -> list[str]:
        keys = []
        for field in up.user_fields:
            if field == "AGE":
                bucket = age_bucket(meta.get("AGE"))
                if bucket:
                    keys.append(f"AGE={bucket}")
            else:
                keys.extend(f"{field}={v}" for v in categorical_values(meta.get(field)))
        return keys

    @staticmethod
    def _factors(up: UserPersonalization) -> None:
        """Each segment's mean ALS user factor: a cold user's starting point."""
        n_seg = len(up.segment_ids_)
        up.segment_factors_ = np.zeros((n_seg, up.factors), np.float32)
        members = np.zeros(n_seg)
        for user_id, segs in up.user_segments_.items():
            u = up.user_index_.get(user_id)
            if u is None or u >= len(up._als_users):
                continue
            for s in segs:
                up.segment_factors_[s] += up._als_users[u]
                members[s] += 1
        up.segment_factors_ /= np.maximum(members, 1)[:, None]

    @staticmethod
    def set_lift(up: UserPersonalization, users: np.ndarray, items: np.ndarray) -> None:
        """lift(segment, poll) = log of the segment's events on the poll over the events
        its overall share predicts, shrunk with ``SEGMENT_PRIOR_EVENTS`` pseudo-events
        towards the segment's lift on the poll's *author* (their polls pooled), itself
        shrunk towards 0 (``up.counts_`` already counts the events).

        Why: a segment of 130 users sees about one event per poll on a catalog of 5,000
        polls (demo data), so a per-poll lift is mostly prior. Smoothing towards a
        uniform P(poll | segment), as before, made that prior an anti-popularity score
        (an unseen niche poll lifted, a popular one pushed down; correlation with log
        popularity -0.36 for graph communities, -0.43 for shuffled ones), which the
        blend weighed as popularity, not as the segment. The author prior keeps what a
        community does over-engage with, whose polls it is (its members and the
        accounts they follow), also on polls too new to have events."""
        n_items = len(up.item_ids_)
        n_seg = len(up.segment_ids_)
        if not n_seg:
            up.segment_lift_ = np.zeros((0, n_items), np.float32)
            return
        rows, cols = [], []
        for u, user_id in enumerate(up.user_ids_):
            for s in up.user_segments_.get(user_id, []):
                rows.append(s)
                cols.append(u)
        membership = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                                   shape=(n_seg, len(up.user_ids_)))
        ui = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)),
                           shape=(len(up.user_ids_), n_items))
        seg_counts = np.asarray((membership @ ui).todense(), np.float32)
        share = up.counts_ / max(float(up.counts_.sum()), 1.0)
        expected = (seg_counts.sum(1)[:, None] * share[None, :]).astype(np.float32)
        prior = np.ones_like(expected)
        author = getattr(up, "_poll_author", np.full(n_items, -1))[:n_items]
        known = np.flatnonzero(author >= 0)
        if len(known):
            # Sums over each author's polls: (segments x polls) @ (polls x authors).
            by_author = sp.csr_matrix(
                (np.ones(len(known), np.float32), (known, author[known])),
                shape=(n_items, int(author.max()) + 1))
            on_author = (by_author.T @ seg_counts.T).T
            expected_on_author = (by_author.T @ expected.T).T
            prior[:, known] = ((on_author + SEGMENT_PRIOR_EVENTS)
                               / (expected_on_author + SEGMENT_PRIOR_EVENTS))[:, author[known]]
        up.segment_lift_ = np.log((seg_counts + SEGMENT_PRIOR_EVENTS * prior)
                                  / (expected + SEGMENT_PRIOR_EVENTS)).astype(np.float32)

    @staticmethod
    def serving_row(up: UserPersonalization, segs: Sequence[int],
                    weight: float | None = None) -> np.ndarray:
        """The blend-weighted mean segment lift of a segment set, in serving order
        (``weight``: the user's segment weight, :func:`blend.user_weights`; by default
        the blend's own)."""
        segs = tuple(sorted(segs))
        base = float(up.blend_["segment"])
        if weight is not None and float(weight) != base:
            # A history twin moved it: the cached row rescaled, not a row per weight.
            if base:
                return Segments.serving_row(up, segs) * np.float32(float(weight) / base)
            return (float(weight) * up.segment_lift_[list(segs)].mean(0))[
                up._order].astype(np.float32)
        # The weight is part of the key: the follow-impact curve rescales it in place.
        key = (base, *segs)
        row = up._segment_rows.get(key)
        if row is not None and len(row) < len(up._order):
            # Polls appended since (_extend_serving) have no segment lift yet.
            row = np.concatenate([row, np.zeros(len(up._order) - len(row), np.float32)])
            up._segment_rows[key] = row
        if row is None:
            row = (key[0] * up.segment_lift_[list(segs)].mean(0))[
                up._order].astype(np.float32)
            up._segment_rows[key] = row
            if len(up._segment_rows) > SEGMENT_ROW_CACHE_SIZE:
                up._segment_rows.popitem(last=False)
        else:
            up._segment_rows.move_to_end(key)
        return row

    def save(self, up: UserPersonalization) -> dict[str, np.ndarray]:
        return {"segment_lift": up.segment_lift_, "segment_factors": up.segment_factors_}

    def load(self, up: UserPersonalization, arrays: Mapping[str, np.ndarray]) -> None:
        up.segment_lift_ = arrays["segment_lift"]
        up.segment_factors_ = arrays["segment_factors"]
