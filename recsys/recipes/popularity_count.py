"""Popularity-Count: the polls most users engaged with, the same list for everyone.

Personalize's Popularity-Count ranks items by the number of *unique* users who interacted
with them, optionally counting only one event type and only events whose value reaches a
threshold. This recipe does the same, and folds streamed events in at once (``observe``)
without retraining, which Personalize cannot.

Unique users are kept as one 64-bit key per (poll, user) pair: the pairs seen at training
are a sorted numpy array (8 bytes each, found by binary search) and pairs streamed since
are a Python set. That is the compact equivalent of a per-poll set of user ids; no
library offers an incremental distinct count that is exact, and an approximate sketch
(HyperLogLog) would reorder polls whose counts are close, which users notice at the top.

Scores: each poll's share of all unique (user, poll) engagements counted, so the scores of
the whole catalog sum to 1 like Personalize's normalised scores. They compare polls within
this recipe; they are not probabilities comparable with other recipes.

:func:`select_top` (best-``n`` selection with ``exclude``/``allow``) is shared with
Trending-Now.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Mapping
from itertools import repeat
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from recsys.arrays import sorted_distinct
from recsys.errors import HunchError
from recsys.events import Impression, Interaction
from recsys.recipes.base import CatalogRows, PollMask, ScoredItem, TrainingData

# A (poll, user) pair is one int64: poll index in the high 32 bits, user index in the low.
_USER_BITS = 32
_USER_MASK = (1 << _USER_BITS) - 1
# Ranking starts with this many candidates per requested poll and grows 4x when
# ``exclude``/``allow`` reject too many: most requests finish in the first round.
_CANDIDATE_FACTOR = 2
# A kept ranking is read poll by poll: past this many polls per poll wanted or excluded
# (plus a few), the filter rejects most of what it reads, and one vectorised ranking
# over the catalog is cheaper than reading on (a promotion's filter keeps ~3 %).
_READ_BUDGET_FACTOR = 4
_READ_BUDGET_MIN = 64
_MODEL_FILE = "popularity.npz"
_PARAMS_FILE = "params.json"


class InvalidRecipeParameter(HunchError):
    """A recipe was given a parameter value it cannot use."""


class ModelNotFitted(HunchError):
    """``recommend``/``save`` was called on a recipe before ``fit`` or ``load``."""


class _ItemIndex:
    """Poll id <-> dense index, growing as new polls appear."""

    def __init__(self, item_ids: Iterable[str] = ()) -> None:
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        for item_id in item_ids:
            self.add(item_id)

    def add(self, item_id: str) -> int:
        i = self.index.get(item_id)
        if i is None:
            i = len(self.ids)
            self.index[item_id] = i
            self.ids.append(item_id)
        return i

    def __len__(self) -> int:
        return len(self.ids)


def _grow(array: np.ndarray, size: int) -> np.ndarray:
    """``array`` with room for at least ``size`` entries (amortised doubling, zero-filled)."""
    if size <= len(array):
        return array
    grown = np.zeros(max(size, 2 * len(array), 64), dtype=array.dtype)
    grown[: len(array)] = array
    return grown


def _grow_key(array: np.ndarray, size: int) -> np.ndarray:
    """Like :func:`_grow` for ranking keys: new entries are ``-inf`` (not eligible)."""
    if size <= len(array):
        return array
    grown = np.full(size, -np.inf)
    grown[: len(array)] = array
    return grown


def ranking_of(scores: np.ndarray) -> np.ndarray:
    """Every eligible poll (score above ``-inf``), best first, ties to the lower index:
    the order :func:`select_top` serves. Worth keeping while the scores stand still."""
    eligible = np.flatnonzero(scores > -np.inf)
    return eligible[np.lexsort((eligible, -scores[eligible]))]


class Ranking:
    """:func:`ranking_of` a recipe's scores, kept until they change: the caller says
    when, with a version it moves on every change (a feed page asks each recipe once,
    and popularity or trending scores move far less often than pages are asked)."""

    def __init__(self) -> None:
        self._kept: tuple[object, np.ndarray] | None = None

    def of(self, scores: np.ndarray, version: object) -> np.ndarray:
        if self._kept is None or self._kept[0] != version:
            self._kept = (version, ranking_of(scores))
        return self._kept[1]


def select_top(
    scores: np.ndarray,
    item_ids: list[str],
    index: Mapping[str, int],
    n: int,
    exclude: Collection[str] = (),
    allow: Callable[[str], bool] | None = None,
    score_of: Callable[[float], float] = float,
    rows: CatalogRows | None = None,
    ranking: np.ndarray | None = None,
) -> list[ScoredItem]:
    """The ``n`` best polls by ``scores`` (``-inf`` = not eligible), best first.

    Ties go to the poll with the lower index (the one seen first), so equal inputs give
    equal lists. Excluded polls and those ``allow`` rejects are skipped. ``score_of``
    turns a ranking key into the reported score (normalising only the ``n`` returned).
    With ``rows`` (the caller's map onto the catalog), an ``allow`` that is a
    :class:`PollMask` is applied to every poll at once before ranking: the same list,
    without one call per candidate or a rescan when the filter rejects many.
    ``ranking``: :func:`ranking_of` these ``scores``, kept by the caller; the list is
    then read off its head, and only a filter that rejects most of it falls back to
    ranking afresh.
    """
    size = min(len(scores), len(item_ids))
    if n <= 0 or size == 0:
        return []
    if ranking is not None:
        out = _read_ranking(scores, item_ids, ranking, n, exclude, allow, score_of, size)
        if out is not None:
            return out
    # Work on eligible polls only: numpy's partition is slow on many equal values, and a
    # trending list is a few hundred growing polls among tens of thousands of -inf.
    if rows is not None and isinstance(allow, PollMask):
        keep = rows.keep(allow, item_ids, index)[:size]
        eligible = np.flatnonzero((scores[:size] > -np.inf) & keep)
        allow = None
    else:
        eligible = np.flatnonzero(scores[:size] > -np.inf)
    values = scores[eligible]  # a copy: exclusions below do not touch the caller's array
    if exclude and len(eligible):
        # All at once: a feed page excludes the session's placed polls (up to a hundred
        # by the fifth page), and one searchsorted per poll cost 340 us of the 370 us a
        # call took at 100 exclusions over 5,000 polls.
        excluded = np.fromiter(map(index.get, exclude, repeat(-1)), dtype=np.int64,
                               count=len(exclude))  # map(): the lookups stay in C
        excluded = excluded[(excluded >= 0) & (excluded < size)]
        at = np.minimum(np.searchsorted(eligible, excluded), len(eligible) - 1)
        values[at[eligible[at] == excluded]] = -np.inf
    count = len(values)
    out: list[ScoredItem] = []
    k = min(count, n * _CANDIDATE_FACTOR + len(exclude))
    done = 0  # candidates already examined, in rank order
    while k > 0:
        kth = np.partition(values, count - k)[count - k]
        cand = np.flatnonzero(values >= kth) if kth > -np.inf else np.flatnonzero(values > kth)
        # Positions follow poll index, so ties go to the lower index.
        order = cand[np.lexsort((cand, -values[cand]))]
        for p in order[done:]:
            item_id = item_ids[eligible[p]]
            if allow is None or allow(item_id):
                out.append(ScoredItem(item_id, score_of(float(values[p]))))
                if len(out) == n:
                    return out
        done = len(order)
        if k >= count or kth == -np.inf:
            break
        k = min(count, k * 4)
    return out


def _read_ranking(scores: np.ndarray, item_ids: list[str], ranking: np.ndarray, n: int,
                  exclude: Collection[str], allow: Callable[[str], bool] | None,
                  score_of: Callable[[float], float], size: int) -> list[ScoredItem] | None:
    """:func:`select_top` read off a kept ranking; None when the filter rejected so much
    of its head that ranking afresh (vectorised) is cheaper than reading on."""
    if not isinstance(exclude, (set, frozenset, dict)):
        exclude = set(exclude)
    out: list[ScoredItem] = []
    budget = (n + len(exclude)) * _READ_BUDGET_FACTOR + _READ_BUDGET_MIN
    head = ranking[:budget]
    for p in head[head < size].tolist():
        item_id = item_ids[p]
        if item_id in exclude or (allow is not None and not allow(item_id)):
            continue
        out.append(ScoredItem(item_id, score_of(float(scores[p]))))
        if len(out) == n:
            return out
    return out if len(head) == len(ranking) else None


class PopularityCount:
    """Polls ranked by how many unique users interacted with them.

    ``event_type``: count only this event type (case-insensitive, like Personalize's
    filters), e.g. "HUNCH" to rank by voters. ``event_value_threshold``: count only events
    whose value is at least this; events without a value do not count then.
    """

    name: ClassVar[str] = "popularity-count"

    def __init__(self, event_type: str | None = None,
                 event_value_threshold: float | None = None) -> None:
        if event_type is not None and not str(event_type).strip():
            raise InvalidRecipeParameter("event_type must be a non-empty event type or omitted")
        if event_value_threshold is not None:
            try:
                event_value_threshold = float(event_value_threshold)
            except (TypeError, ValueError):
                raise InvalidRecipeParameter(
                    f"event_value_threshold must be a number, got {event_value_threshold!r}"
                ) from None
        self.event_type = event_type
        self.event_value_threshold = event_value_threshold
        self._fitted = False

    # -- learning -----------------------------------------------------------------

    def _counts_event(self, event: Interaction) -> bool:
        if self.event_type is not None and event.event_type.upper() != self.event_type.upper():
            return False
        if self.event_value_threshold is not None:
            return event.event_value is not None and event.event_value >= self.event_value_threshold
        return True

    def _reset(self, item_ids: Iterable[str], user_ids: Iterable[str]) -> None:
        self._items = _ItemIndex(item_ids)
        self._catalog_rows = CatalogRows()  # this index mapped onto the request's catalog
        self._users = _ItemIndex(user_ids)
        self._counts = np.zeros(max(len(self._items), 64), dtype=np.int64)
        # The ranking key, kept in step with _counts: the count, or -inf for polls nobody
        # touched. Ranking by it needs no per-request pass over the catalog.
        self._rank_key = np.full(len(self._counts), -np.inf)
        self._pairs = np.zeros(0, dtype=np.int64)  # sorted, from fit/load
        self._new_pairs: set[int] = set()  # streamed since
        self._total = 0
        self._ranking = Ranking()
        self._changes = 0  # moves whenever a ranking key does
        self._fitted = True

    def fit(self, data: TrainingData) -> Self:
        self._reset(data.items, ())
        counted = [e for e in data.interactions if self._counts_event(e)]
        item_idx = np.fromiter((self._items.add(e.item_id) for e in counted), dtype=np.int64,
                               count=len(counted))
        user_idx = np.fromiter((self._users.add(e.user_id) for e in counted), dtype=np.int64,
                               count=len(counted))
        self._pairs = sorted_distinct((item_idx << _USER_BITS) | user_idx)
        self._set_counts()
        return self

    def _set_counts(self) -> None:
        counts = np.bincount(self._pairs >> _USER_BITS, minlength=len(self._items))
        self._counts = _grow(np.zeros(0, dtype=np.int64), len(self._items))
        self._counts[: len(counts)] = counts
        self._rank_key = np.where(self._counts > 0, self._counts.astype(np.float64), -np.inf)
        self._total = int(len(self._pairs))
        self._changes += 1

    def observe(self, events: Iterable[Interaction | Impression]) -> None:
        """Count streamed interactions at once; impressions do not make a poll popular."""
        self._require_fitted()
        counted = [e for e in events if isinstance(e, Interaction) and self._counts_event(e)]
        if not counted:
            return
        items = [self._items.add(e.item_id) for e in counted]
        keys = [(i << _USER_BITS) | self._users.add(e.user_id) for i, e in zip(items, counted)]
        if len(self._items) > len(self._counts):
            self._counts = _grow(self._counts, len(self._items))
            self._rank_key = _grow_key(self._rank_key, len(self._counts))
        known = self._known_at_training(keys)
        fresh: list[int] = []
        for i, key, old in zip(items, keys, known):
            if not old and key not in self._new_pairs:
                self._new_pairs.add(key)
                fresh.append(i)
        if fresh:
            self._changes += 1
        if len(fresh) == 1:  # the common streaming case: skip the array round trip
            i = fresh[0]
            self._counts[i] += 1
            self._rank_key[i] = self._counts[i]
            self._total += 1
        elif fresh:
            grew = np.array(fresh, dtype=np.int64)
            np.add.at(self._counts, grew, 1)  # add.at: a poll may gain several users at once
            self._rank_key[grew] = self._counts[grew]
            self._total += len(fresh)

    def _known_at_training(self, keys: list[int]) -> list[bool]:
        """Which (poll, user) keys were counted at training: one vectorised search."""
        if not len(self._pairs):
            return [False] * len(keys)
        if len(keys) == 1:
            pos = min(int(self._pairs.searchsorted(keys[0])), len(self._pairs) - 1)
            return [int(self._pairs[pos]) == keys[0]]
        wanted = np.array(keys, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._pairs, wanted), len(self._pairs) - 1)
        return (self._pairs[pos] == wanted).tolist()

    def add_items(self, items: Mapping[str, Mapping[str, Any]]) -> None:
        """Register new polls; they rank once someone interacts with them."""
        self._require_fitted()
        for item_id in items:
            self._items.add(item_id)
        self._counts = _grow(self._counts, len(self._items))
        self._rank_key = _grow_key(self._rank_key, len(self._counts))
        self._changes += 1

    # -- serving ------------------------------------------------------------------

    def unique_users(self, item_id: str) -> int:
        """How many unique users counted for this poll (0 if unknown)."""
        self._require_fitted()
        i = self._items.index.get(item_id)
        return 0 if i is None else int(self._counts[i])

    def scores(self) -> np.ndarray:
        """Every poll's score by index; ``-inf`` for polls nobody interacted with."""
        self._require_fitted()
        return self._rank_key[: len(self._items)] / max(self._total, 1)

    def recommend(
        self,
        user_id: str | None,
        n: int = 25,
        *,
        now: float | None = None,
        exclude: Collection[str] = (),
        allow: Callable[[str], bool] | None = None,
    ) -> list[ScoredItem]:
        """The most popular polls; ``user_id`` and ``now`` do not change the list."""
        self._require_fitted()
        share = 1.0 / max(self._total, 1)
        keys = self._rank_key[: len(self._items)]
        return select_top(keys, self._items.ids, self._items.index, n, exclude, allow,
                          rows=self._catalog_rows, score_of=lambda count: count * share,
                          ranking=self._ranking.of(keys, (self._changes, len(keys))))

    # -- persistence --------------------------------------------------------------

    def params(self) -> dict[str, Any]:
        return {"event_type": self.event_type,
                "event_value_threshold": self.event_value_threshold}

    def save(self, directory: Path) -> None:
        self._require_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        pairs = np.union1d(self._pairs, np.fromiter(self._new_pairs, dtype=np.int64))
        np.savez(
            directory / _MODEL_FILE,
            item_ids=np.array(self._items.ids, dtype=str),
            user_ids=np.array(self._users.ids, dtype=str),
            pairs=pairs,
        )
        (directory / _PARAMS_FILE).write_text(json.dumps(self.params(), indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> Self:
        directory = Path(directory)
        model = cls(**json.loads((directory / _PARAMS_FILE).read_text()))
        with np.load(directory / _MODEL_FILE, allow_pickle=False) as npz:
            model._reset(npz["item_ids"].tolist(), npz["user_ids"].tolist())
            model._pairs = npz["pairs"].astype(np.int64)
        model._set_counts()
        return model

    def _require_fitted(self) -> None:
        if not self._fitted:
            raise ModelNotFitted(
                f"{self.name}: call fit(training_data) or {type(self).__name__}.load(dir) first"
            )
