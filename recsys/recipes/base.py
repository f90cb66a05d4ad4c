"""What every recipe is: a small interface in the spirit of implicit's models.

A recipe is fitted on :class:`TrainingData` into an immutable model, answers
``recommend`` for a user, and takes streamed events (``observe``) and new polls
(``add_items``) without retraining. ``save``/``load`` write and read an artifact
directory (see recsys/artifacts.py for versioning).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Protocol, Self, runtime_checkable

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
        ``allow`` rejects. ``now`` (epoch seconds) defaults to the newest event seen."""

    def observe(self, events: Iterable[Interaction | Impression]) -> None:
        """Fold streamed events in at once, without retraining."""

    def add_items(self, items: Mapping[str, Mapping[str, Any]]) -> None:
        """Make new polls recommendable at once (catalog ingest)."""

    def save(self, directory: Path) -> None: ...

    @classmethod
    def load(cls, directory: Path) -> Self: ...
