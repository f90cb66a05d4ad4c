"""InMemoryGraphStore: the follower graph held in Python dicts.

The embedded default (no server to run) and the reference the Neo4j store is checked
against: both pass tests/graph/test_store_contract.py. Methods are ``async`` only to
satisfy the GraphStore protocol; none of them awaits, so under asyncio each call is
atomic, which is what makes ``set_labels`` all-or-nothing here.

Hand-written rather than networkx: the store needs only adjacency dicts in both
directions plus polls by author, and a networkx DiGraph would add attribute dicts per
edge without sparing any code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from graph._validation import (
    check_engagements,
    check_follows,
    check_labels,
    check_limit,
    check_polls,
    check_user_ids,
    first_follows,
    last_by_key,
)
from graph.errors import UnknownUser
from graph.store import Engagement, Follow, Labels, PollAuthorship


class InMemoryGraphStore:
    """Users, follows, polls authored, engagements and labels, kept in memory for one process."""

    def __init__(self) -> None:
        self._labels: dict[str, Labels] = {}  # every known user, labelled or not
        self._followees: dict[str, dict[str, int]] = {}  # follower -> followee -> since
        self._followers: dict[str, set[str]] = {}
        self._polls: dict[str, PollAuthorship] = {}
        self._polls_of: dict[str, set[str]] = {}  # author -> poll ids
        # (poll, user, event type) -> latest timestamp; polls seen only here have no author.
        self._engaged: dict[tuple[str, str, str], int] = {}
        self._engaged_polls: set[str] = set()

    async def ensure_schema(self) -> None:
        """Nothing to create: dict keys are already unique."""

    def _add_user(self, user_id: str) -> None:
        self._labels.setdefault(user_id, Labels())

    async def upsert_users(self, user_ids: Iterable[str]) -> int:
        distinct = dict.fromkeys(check_user_ids(user_ids))
        for user_id in distinct:
            self._add_user(user_id)
        return len(distinct)

    async def upsert_follows(self, follows: Iterable[Follow]) -> int:
        rows = first_follows(check_follows(follows))
        for f in rows:
            self._add_user(f.follower)
            self._add_user(f.followee)
            # A follow that exists keeps the time it was made (see first_follows).
            out = self._followees.setdefault(f.follower, {})
            out[f.followee] = min(f.timestamp, out.get(f.followee, f.timestamp))
            self._followers.setdefault(f.followee, set()).add(f.follower)
        return len(rows)

    async def follow(self, follower: str, followee: str, timestamp: int) -> None:
        await self.upsert_follows([Follow(follower, followee, timestamp)])

    async def unfollow(self, follower: str, followee: str) -> bool:
        if self._followees.get(follower, {}).pop(followee, None) is None:
            return False
        self._followers[followee].discard(follower)
        return True

    async def follows(self) -> list[Follow]:
        """Every follow with the time it was made, ordered by follower and followee (as
        the Neo4j store's)."""
        return sorted((Follow(a, b, t) for a, out in self._followees.items()
                       for b, t in out.items()), key=lambda f: (f.follower, f.followee))

    async def followees(self, user_id: str) -> list[str]:
        return sorted(self._followees.get(user_id, {}))

    async def followers(self, user_id: str) -> list[str]:
        return sorted(self._followers.get(user_id, ()))

    async def upsert_polls(self, polls: Iterable[PollAuthorship]) -> int:
        rows = last_by_key(check_polls(polls), lambda p: p.poll_id)
        for poll in rows:
            self._add_user(poll.author_id)
            previous = self._polls.get(poll.poll_id)
            if previous is not None:
                self._polls_of[previous.author_id].discard(poll.poll_id)
            self._polls[poll.poll_id] = poll
            self._polls_of.setdefault(poll.author_id, set()).add(poll.poll_id)
        return len(rows)

    async def authors(self, poll_ids: Iterable[str]) -> dict[str, str]:
        return {p: self._polls[p].author_id for p in poll_ids if p in self._polls}

    async def polls_by_authors(self, author_ids: Iterable[str], limit: int = 500) -> list[str]:
        check_limit(limit)
        polls = [self._polls[p] for a in set(author_ids) for p in self._polls_of.get(a, ())]
        # Same order as the Neo4j store: newest first, ties by poll id.
        polls.sort(key=lambda p: p.poll_id)
        polls.sort(key=lambda p: p.created_at, reverse=True)
        return [p.poll_id for p in polls[:limit]]

    async def upsert_engagements(self, engagements: Iterable[Engagement]) -> int:
        latest: dict[tuple[str, str, str], int] = {}
        for e in check_engagements(engagements):
            key = (e.poll_id, e.user_id, e.event_type)
            latest[key] = max(e.timestamp, latest.get(key, e.timestamp))
        for (poll_id, user_id, event_type), at in latest.items():
            self._add_user(user_id)
            self._engaged_polls.add(poll_id)
            key = (poll_id, user_id, event_type)
            self._engaged[key] = max(at, self._engaged.get(key, at))
        return len(latest)

    async def engagements(self, poll_ids: Iterable[str] | None = None) -> list[Engagement]:
        wanted = None if poll_ids is None else set(poll_ids)
        return [Engagement(u, p, t, at) for (p, u, t), at in sorted(self._engaged.items())
                if wanted is None or p in wanted]

    async def set_labels(self, labels: Mapping[str, Labels]) -> int:
        check_labels(labels)
        missing = [u for u in labels if u not in self._labels]
        if missing:
            raise UnknownUser(missing)
        self._labels.update(labels)
        return len(labels)

    async def labels(self, user_ids: Iterable[str] | None = None) -> dict[str, Labels]:
        if user_ids is None:
            return dict(self._labels)
        return {u: self._labels[u] for u in user_ids if u in self._labels}

    async def edges(self) -> list[tuple[str, str]]:
        return [(a, b) for a, out in self._followees.items() for b in out]

    async def counts(self) -> dict[str, int]:
        return {
            "users": len(self._labels),
            "follows": sum(len(out) for out in self._followees.values()),
            "polls": len(self._engaged_polls.union(self._polls)),
        }

    async def close(self) -> None:
        """Nothing to release."""
