"""The mixer: turns several ranked candidate lists into one feed page.

A feed is read top to bottom as a pipeline, in the spirit of Twitter's product-mixer:

1. every candidate source in the :class:`SlotPlan` is asked for a ranked list
   (User-Personalization, Trending-Now, Popularity-Count, optionally in-network);
2. candidates the request may not show are dropped (already placed in this feed session,
   already voted on or commented, seen too often, rejected by the request's filter);
3. slots are filled block by block in the plan's order (default 3 personalized,
   1 trending, 1 popular); a slot whose source has run dry is backfilled from the other
   sources in the plan's backfill order, so a page has exactly ``first`` items while any
   source still has candidates;
4. the active promotion, if any, takes its share of the page (see recsys/promotions.py).

Every placed poll records its source, score, rank within its source, promotion name and
the response's recommendation id, so that impressions and analyses can be traced back.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from recsys.errors import HunchError
from recsys.recipes.base import ScoredItem

USER_PERSONALIZATION = "user-personalization"
TRENDING_NOW = "trending-now"
POPULARITY_COUNT = "popularity-count"
IN_NETWORK = "in-network"

# Sources are asked for this many times the slots they fill on a page, plus what is
# excluded, so that de-duplication rarely leaves a hole that needs a second round trip.
OVERFETCH_FACTOR = 3


class InvalidSlotPlan(HunchError):
    """A slot plan names no sources or a source that is not configured."""


class CandidateSource(Protocol):
    """Anything that ranks polls for a user: a local recipe, a Personalize campaign, the
    polls of the people a user follows."""

    name: str

    def candidates(
        self,
        user_id: str,
        n: int,
        *,
        exclude: Collection[str] = (),
        allow: Callable[[str], bool] | None = None,
        filter_name: str | None = None,
        filter_values: dict[str, str] | None = None,
    ) -> list[ScoredItem]:
        """Up to ``n`` polls, best first. ``allow`` is the request's filter compiled for
        local use; ``filter_name``/``filter_values`` name the same filter for a remote
        backend (Amazon Personalize applies it server-side by its ARN)."""


@dataclass(frozen=True)
class SlotPlan:
    """Which source fills each slot of a repeated block, and who backfills holes."""

    block: tuple[str, ...] = (USER_PERSONALIZATION,) * 3 + (TRENDING_NOW, POPULARITY_COUNT)
    # When a slot's source has nothing left, these are tried in order.
    backfill: tuple[str, ...] = (USER_PERSONALIZATION, POPULARITY_COUNT, TRENDING_NOW, IN_NETWORK)

    def __post_init__(self) -> None:
        if not self.block:
            raise InvalidSlotPlan("a slot plan needs at least one slot")

    @classmethod
    def parse(cls, text: str) -> "SlotPlan":
        """``"user-personalization*3,trending-now,popularity-count"`` → a plan."""
        block: list[str] = []
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            name, _, times = part.partition("*")
            try:
                count = int(times) if times else 1
            except ValueError as exc:
                raise InvalidSlotPlan(f"slot {part!r}: expected NAME or NAME*COUNT") from exc
            block.extend([name.strip()] * count)
        return cls(tuple(block))

    @property
    def sources(self) -> list[str]:
        """Every source the plan uses, slots first then backfill, without repeats."""
        return list(dict.fromkeys(self.block + self.backfill))

    def slots(self, n: int, start: int = 0) -> list[str]:
        """The source of each of ``n`` slots starting at feed position ``start``."""
        size = len(self.block)
        return [self.block[(start + i) % size] for i in range(n)]


@dataclass
class FeedItem:
    """One poll placed in a feed page, with where it came from."""

    item_id: str
    source: str
    score: float
    rank: int  # 1-based rank within its source's list
    recommendation_id: str = ""
    promotion_name: str | None = None


@dataclass
class MixRequest:
    user_id: str
    first: int
    start: int = 0  # feed position of the page's first slot (keeps the block rhythm)
    exclude: set[str] = field(default_factory=set)  # placed before, interacted, over-seen
    allow: Callable[[str], bool] | None = None  # the request's filter, compiled
    recommendation_id: str = ""
    filter_name: str | None = None  # the same filter by name, for remote backends
    filter_values: dict[str, str] | None = None


class Mixer:
    """Fills a page from the configured sources by the slot plan."""

    def __init__(self, sources: dict[str, CandidateSource], plan: SlotPlan | None = None):
        self.plan = plan or SlotPlan()
        unknown = [s for s in self.plan.block if s not in sources]
        if unknown:
            raise InvalidSlotPlan(
                f"slot plan uses {', '.join(sorted(set(unknown)))} but only "
                f"{', '.join(sorted(sources))} are configured"
            )
        self.sources = sources

    def mix(self, request: MixRequest) -> list[FeedItem]:
        if request.first <= 0:
            return []
        slots = self.plan.slots(request.first, request.start)
        wanted = {name: slots.count(name) for name in set(slots)}
        queues = {
            name: _SourceQueue(self.sources[name], request, need=wanted.get(name, 0))
            for name in self.plan.sources
            if name in self.sources
        }
        placed: list[FeedItem] = []
        taken = set(request.exclude)
        for slot in slots:
            item = queues[slot].pop(taken)
            if item is None:
                for name in self.plan.backfill:
                    if name in queues and name != slot:
                        item = queues[name].pop(taken)
                        if item is not None:
                            break
            if item is None:
                break  # every source is exhausted: a short page is the truth
            taken.add(item.item_id)
            item.recommendation_id = request.recommendation_id
            placed.append(item)
        return placed


class _SourceQueue:
    """A source's ranked list, fetched lazily and re-fetched deeper when it runs out."""

    def __init__(self, source: CandidateSource, request: MixRequest, need: int):
        self.source = source
        self.request = request
        self.batch = max(need, 1) * OVERFETCH_FACTOR + 10
        self.items: Sequence[ScoredItem] | None = None
        self.position = 0
        self.exhausted = False

    def _fetch(self, n: int) -> None:
        self.items = self.source.candidates(
            self.request.user_id, n, exclude=self.request.exclude, allow=self.request.allow,
            filter_name=self.request.filter_name, filter_values=self.request.filter_values,
        )
        # A source that returned fewer than asked has nothing more to give.
        self.exhausted = len(self.items) < n

    def pop(self, taken: set[str]) -> FeedItem | None:
        if self.items is None:
            self._fetch(self.batch)
        assert self.items is not None
        while True:
            while self.position < len(self.items):
                candidate = self.items[self.position]
                self.position += 1
                if candidate.item_id not in taken:
                    return FeedItem(candidate.item_id, self.source.name,
                                    float(candidate.score), self.position)
            if self.exhausted:
                return None
            self.batch *= 2
            self._fetch(self.batch)
