"""The event store's head, read once per feed request instead of once per reader.

Before a feed page is ranked, the user's latest interactions
(:class:`recsys.events.LatestInteractionsCache`) and every recipe the mixer asks
(:meth:`recsys.serving.RecipeService.recommend`) follow the store's sequence numbers,
so that a vote stored by any process is excluded from the very next page. Each of them
asking the store "anything after my sequence number?" cost one query apiece: four per
page with the default slot plan, nearly always answered "nothing". On PostgreSQL each
is a network round trip (about 0.3 ms of a worker's wall time and 0.15 ms of its CPU).

:class:`EventHead` reads the newest committed sequence number once per request (one
primary-key read); a reader whose own sequence number is already there skips its query,
and one that is behind reads what is new as before. The guarantee is unchanged: an
event committed before the request began has a number at or below the head it reads.
Both stores number events in commit order (PostgreSQL under ``event_seq``'s row lock
held to COMMIT, SQLite under its single writer), so once a reader has read what follows
its number up to the head, every event at or below the head is in, even when the last
numbers went to de-duplicated events that have no row.

Outside a request (the refresher's thread, tests, analyses) :meth:`EventHead.seq` is
None and readers query as they always did.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class HeadSource(Protocol):
    """What the head reads from :class:`recsys.events.EventStore`."""

    def last_seq(self) -> int: ...


class EventHead:
    """The store's newest committed sequence number, memoised per request thread."""

    def __init__(self, store: HeadSource) -> None:
        self.store = store
        self._request = threading.local()

    @contextmanager
    def request(self) -> Iterator[None]:
        """The scope of one request: its first :meth:`seq` reads the store, the others
        reuse that answer (or its failure: a store that is down is not asked again by
        each reader, each waiting for the pool's timeout)."""
        self._request.active = True
        self._request.seq = None
        try:
            yield
        finally:
            self._request.active = False
            self._request.seq = None

    def seq(self) -> int | None:
        """The head for this request; None outside :meth:`request` (query as before)."""
        if not getattr(self._request, "active", False):
            return None
        head = self._request.seq
        if head is None:
            try:
                head = self.store.last_seq()
            except Exception as exc:  # remembered: every reader of this request fails alike
                head = exc
            self._request.seq = head
        if isinstance(head, Exception):
            raise head
        return head
