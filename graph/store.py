"""The GraphStore protocol: one interface over the follower graph, two implementations.

``graph.memory_store.InMemoryGraphStore`` (the embedded default) and
``graph.neo4j_store.Neo4jGraphStore`` (Neo4j through the official async driver) both
satisfy it, and one contract test suite (tests/graph/test_store_contract.py) runs
against both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from graph.errors import InvalidGraphData


@dataclass(frozen=True)
class Follow:
    """``follower`` follows ``followee`` since ``timestamp`` (epoch seconds)."""

    follower: str
    followee: str
    timestamp: int


@dataclass(frozen=True)
class PollAuthorship:
    poll_id: str
    author_id: str
    created_at: int


@dataclass(frozen=True)
class Engagement:
    """``user_id`` engaged with ``poll_id`` (a hunch, a comment...) at ``timestamp``.

    The graph keeps one engagement per (user, poll, event type), holding the latest
    timestamp seen: enough for "polls popular inside a community", and the full event log
    stays in the event store where it belongs.
    """

    user_id: str
    poll_id: str
    event_type: str
    timestamp: int

    def __post_init__(self) -> None:
        # Checked here so that both stores refuse the same rows before writing anything;
        # Neo4j cannot MERGE a relationship on a null type.
        if not isinstance(self.event_type, str) or not self.event_type:
            raise InvalidGraphData(
                f"engagement of user {self.user_id!r} with poll {self.poll_id!r} needs a "
                f"non-empty EVENT_TYPE (e.g. HUNCH), got {self.event_type!r}"
            )


@dataclass(frozen=True)
class Labels:
    """A user's labels from graph analytics; exported as categorical user metadata."""

    cluster: str | None = None
    community: str | None = None


@runtime_checkable
class GraphStore(Protocol):
    async def ensure_schema(self) -> None:
        """Create constraints and indexes; safe to call any number of times."""

    async def upsert_users(self, user_ids: Iterable[str]) -> int: ...

    async def upsert_follows(self, follows: Iterable[Follow]) -> int:
        """Bulk upsert in batches; creates missing users; returns follows written."""

    async def follow(self, follower: str, followee: str, timestamp: int) -> None: ...

    async def unfollow(self, follower: str, followee: str) -> bool: ...

    async def followees(self, user_id: str) -> list[str]: ...

    async def followers(self, user_id: str) -> list[str]: ...

    async def upsert_polls(self, polls: Iterable[PollAuthorship]) -> int: ...

    async def authors(self, poll_ids: Iterable[str]) -> dict[str, str]: ...

    async def polls_by_authors(self, author_ids: Iterable[str], limit: int = 500) -> list[str]:
        """Polls written by these authors, newest first (the in-network candidate source)."""

    async def upsert_engagements(self, engagements: Iterable[Engagement]) -> int:
        """Bulk upsert in batches, one per (user, poll, event type) keeping the latest
        timestamp; creates missing users and polls; returns distinct engagements written."""

    async def engagements(self, poll_ids: Iterable[str] | None = None) -> list[Engagement]:
        """Engagements with these polls (every poll when None), ordered by poll, user, type."""

    async def set_labels(self, labels: Mapping[str, Labels]) -> int:
        """Write labels of many users in one transaction: all of them or none."""

    async def labels(self, user_ids: Iterable[str] | None = None) -> dict[str, Labels]: ...

    async def edges(self) -> list[tuple[str, str]]:
        """Every (follower, followee) pair, for analytics that run in Python."""

    async def counts(self) -> dict[str, int]:
        """``{"users": .., "follows": .., "polls": ..}``."""

    async def close(self) -> None: ...
