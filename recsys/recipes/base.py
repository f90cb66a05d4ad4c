"""What every recipe is: a small interface in the spirit of implicit's models.

A recipe is fitted on :class:`TrainingData` into an immutable model, answers
``recommend`` for a user, and takes streamed events (``observe``) and new polls
(``add_items``) without retraining. ``save``/``load`` write and read an artifact
directory (see recsys/artifacts.py for versioning).

A request's filter reaches ``recommend`` as ``allow``: any per-poll predicate, or a
:class:`PollMask` (a filter already evaluated over the whole catalog). A mask is callable
too, so every recipe accepts it; a recipe that ranks the whole catalog at once applies it
as one vector operation instead of asking poll by poll (a promotion's filter may keep
only ~3 % of the polls, so the per-poll route asks hundreds of times per page).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Protocol, Self, runtime_checkable

import numpy as np

from recsys.events import Impression, Interaction


class ScoredItem(NamedTuple):
    item_id: str
    score: float


@dataclass
class TrainingData:
    """What a recipe learns from: the three Personalize datasets plus impressions."""

    interactions: Sequence[Interaction]
    items: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    users: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    impressions: Sequence[Impression] = ()


class PollMask:
    """A filter evaluated over a catalog: ``keep[row]`` says whether the poll in catalog
    row ``row`` passes (``ids[row]`` is its id, ``index`` maps id -> row).

    Called with a poll id it answers like any ``allow`` predicate. A poll the catalog did
    not know when the mask was built cannot be judged by its metadata and is allowed.
    The catalog's rows are append-only (a row never changes its poll), which is what lets
    a recipe map its own poll index onto them once and extend the map as both grow
    (:class:`CatalogRows`).
    """

    __slots__ = ("keep", "ids", "index", "_bytes")

    def __init__(self, keep: np.ndarray, ids: Sequence[str], index: Mapping[str, int]) -> None:
        self.keep = np.asarray(keep, dtype=bool)
        self.ids = ids
        self.index = index
        # Indexing bytes skips building a numpy bool per call (callers ask per poll).
        self._bytes = self.keep.tobytes()

    def __call__(self, item_id: str) -> bool:
        row = self.index.get(item_id)
        return row is None or row >= len(self._bytes) or self._bytes[row] == 1


class CatalogRows:
    """The catalog row of each of a recipe's polls (-1: not in the catalog yet), kept in
    step as the catalog and the recipe's index grow: built once per catalog, then only
    the new polls on either side are looked up (no per-request work over 50k ids)."""

    def __init__(self) -> None:
        self._reset(None, None)

    def _reset(self, catalog: Sequence[str] | None, item_ids: Sequence[str] | None) -> None:
        # Identities say which catalog and which recipe index (a refit builds a new one).
        self._catalog = catalog
        self._item_ids = item_ids
        self._rows = np.zeros(0, np.int64)
        self.scanned = 0  # catalog rows already mapped
        self._items = 0  # recipe polls already looked up

    def rows(self, mask: PollMask, item_ids: Sequence[str], item_index: Mapping[str, int]
             ) -> np.ndarray:
        """Catalog row per recipe poll (recipe index order), for ``mask``'s catalog."""
        if self._catalog is not mask.ids or self._item_ids is not item_ids:
            self._reset(mask.ids, item_ids)
        size = len(mask.keep)
        if size > self.scanned:
            # Catalog rows added since the last call may be polls this recipe knew
            # already (ingested here before the catalog refresh saw them).
            found = np.fromiter(map(item_index.get, mask.ids[self.scanned:size], repeat(-1)),
                                np.int64, size - self.scanned)
            hit = (found >= 0) & (found < self._items)
            self._rows[found[hit]] = np.arange(self.scanned, size)[hit]
            self.scanned = size
        n_items = len(item_ids)
        if n_items > self._items:
            found = np.fromiter(map(mask.index.get, item_ids[self._items:n_items], repeat(-1)),
                                np.int64, n_items - self._items)
            found[found >= self.scanned] = -1  # mapped when that catalog row is scanned
            self._rows = np.concatenate([self._rows, found])
            self._items = n_items
        return self._rows[:n_items]

    def keep(self, mask: PollMask, item_ids: Sequence[str], item_index: Mapping[str, int]
             ) -> np.ndarray:
        """``mask`` over the recipe's polls (recipe index order); polls the catalog did not
        know when the mask was built are kept, as :meth:`PollMask.__call__` does."""
        rows = self.rows(mask, item_ids, item_index)
        size = len(mask.keep)
        # Rows at or past the mask's end and -1 (the last slot) read True.
        padded = np.ones(max(size, self.scanned) + 1, bool)
        padded[:size] = mask.keep
        return padded[rows]


@runtime_checkable
class Recipe(Protocol):
    name: ClassVar[str]

    def fit(self, data: TrainingData) -> Self: ...

    def recommend(
        self,
        user_id: str | None,
        n: int = 25,
        *,
        now: float | None = None,
        exclude: Collection[str] = (),
        allow: Callable[[str], bool] | None = None,
    ) -> list[ScoredItem]:
        """Top ``n`` polls for the user, best first, skipping ``exclude`` and polls
        ``allow`` rejects (a predicate or a :class:`PollMask`; both give the same
        list). ``now`` (epoch seconds) defaults to the newest event seen."""

    def observe(self, events: Iterable[Interaction | Impression]) -> None:
        """Fold streamed events in at once, without retraining."""

    def add_items(self, items: Mapping[str, Mapping[str, Any]]) -> None:
        """Make new polls recommendable at once (catalog ingest)."""

    def save(self, directory: Path) -> None: ...

    @classmethod
    def load(cls, directory: Path) -> Self: ...


def fit_summary(recipe: Any) -> dict[str, Any] | None:
    """What a fitted recipe chose inside its own fit, when it says (User-Personalization's
    ``fit_summary``: its blend, history twins, ...); None for recipes that do not."""
    summary = getattr(recipe, "fit_summary", None)
    return summary() if callable(summary) else None
