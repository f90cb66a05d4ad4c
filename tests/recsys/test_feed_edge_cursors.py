"""Each poll of a feed page has its own cursor, and ``after`` any of them resumes the
session right after that poll: Relay clients (Apollo's ``relayStylePagination``) splice
pages by edge cursor, so a cursor shared by a whole page loses most of the feed."""

from __future__ import annotations

import time

import pytest

from recsys.feed_sessions import (
    CursorSigner,
    ExpiredCursor,
    InMemoryFeedSessionStore,
    InvalidCursor,
    SQLiteFeedSessionStore,
)
from tests.recsys.test_feed import make_feed

PAGE = 10


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    if request.param == "memory":
        yield InMemoryFeedSessionStore()
    else:
        sqlite_store = SQLiteFeedSessionStore(tmp_path / "sessions.sqlite3")
        yield sqlite_store
        sqlite_store.close()


def ids(page) -> list[str]:
    return [i.item_id for i in page.items]


def check_resume_after_every_edge(feed, store, user: str) -> None:
    """Shared with the Redis test: pages 1-2, then ``after`` each edge of page 2."""
    first = feed.page(user, PAGE)
    second = feed.page(user, PAGE, first.end_cursor)
    cursors = second.edge_cursors()
    assert len(cursors) == len(set(cursors)) == PAGE
    assert cursors[-1] == second.end_cursor
    resumed = [feed.page(user, PAGE, cursor) for cursor in cursors]
    # The session as stored: the served prefix, then what the resumes placed past it.
    placed = [i.item_id for i in store.snapshot(first.session_id).items]
    assert placed[:2 * PAGE] == ids(first) + ids(second)
    assert len(placed) == len(set(placed)) == 3 * PAGE  # after the last edge: 10 more
    for k, page in enumerate(resumed):
        position = PAGE + k + 1  # polls up to and including edge k of page 2
        # right after edge k: the rest of page 2 replayed, then new polls; no holes
        assert ids(page) == placed[position:position + PAGE]
        assert ids(page)[:PAGE - k - 1] == ids(second)[k + 1:]
        assert page.session_id == first.session_id and page.has_next_page
    # asked again, a resume is the same page with the same cursors (stable)
    again = feed.page(user, PAGE, cursors[3])
    assert ids(again) == ids(resumed[3])
    assert again.edge_cursors() == resumed[3].edge_cursors()


def test_after_any_edge_resumes_right_after_it(store):
    check_resume_after_every_edge(make_feed(store), store, "u1")


def test_edge_cursors_are_distinct_signed_and_stable_when_replayed(store):
    feed = make_feed(store)
    signer = CursorSigner("test-secret")
    first = feed.page("u1", PAGE)
    cursors = first.edge_cursors()
    positions = [signer.decode(c, "u1").position for c in cursors]
    assert positions == list(range(1, PAGE + 1))
    assert {signer.decode(c, "u1").session_id for c in cursors} == {first.session_id}
    # the page served again (replayed from the session) carries the very same cursors,
    # so a client that splices by cursor finds the edge it asked after
    second = feed.page("u1", PAGE, first.end_cursor)
    replayed = feed.page("u1", PAGE, first.end_cursor)
    assert replayed.edge_cursors() == second.edge_cursors()
    assert not set(cursors) & set(second.edge_cursors())


def test_a_client_splicing_by_edge_cursor_holds_every_poll_served(store):
    """What relayStylePagination does: keep edges up to the one asked after, append."""
    feed = make_feed(store)
    cache: list[tuple[str, str]] = []  # (cursor, poll id)
    served: list[str] = []
    after = None
    for _ in range(10):
        page = feed.page("u1", PAGE, after)
        served += ids(page)
        if after is not None:
            kept = [c for c, _ in cache].index(after) + 1
            cache = cache[:kept]
        cache += list(zip(page.edge_cursors(), ids(page)))
        after = cache[-1][0]
    assert [p for _, p in cache] == served and len(set(served)) == 10 * PAGE


def test_tampered_foreign_and_expired_edge_cursors_are_refused(store):
    feed = make_feed(store, session_ttl_seconds=60)
    cursor = feed.page("u1", PAGE).edge_cursors()[4]
    payload, signature = cursor.split(".")
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    with pytest.raises(InvalidCursor, match="altered"):
        feed.page("u1", PAGE, flipped + "." + signature)
    forged = CursorSigner("someone-else's-secret").encode(
        CursorSigner("test-secret").decode(cursor, "u1"))
    with pytest.raises(InvalidCursor, match="altered"):
        feed.page("u1", PAGE, forged)
    with pytest.raises(InvalidCursor, match="another user"):
        feed.page("u2", PAGE, cursor)
    with pytest.raises(ExpiredCursor):
        feed.page("u1", PAGE, cursor, now=time.time() + 61)


class CountingStore:
    """Counts the session store's reads and writes."""

    READS = {"snapshot", "items", "placed_ids", "expires_at"}
    WRITES = {"create", "extend"}

    def __init__(self, inner):
        self.inner = inner
        self.reads = self.writes = 0

    def __getattr__(self, name):
        method = getattr(self.inner, name)

        def counted(*args, **kwargs):
            self.reads += name in self.READS
            self.writes += name in self.WRITES
            return method(*args, **kwargs)

        return counted


def test_a_resume_mid_page_costs_one_read_and_one_write(store):
    counting = CountingStore(store)
    feed = make_feed(counting)
    first = feed.page("u1", PAGE)
    for cursor, (reads, writes) in [
        (first.edge_cursors()[3], (1, 1)),  # past the session's end: mixes 4 new polls
        (first.edge_cursors()[1], (1, 0)),  # all placed already: a replay, no write
    ]:
        counting.reads = counting.writes = 0
        page = feed.page("u1", PAGE, cursor)
        page.edge_cursors()  # signing needs no store
        assert (counting.reads, counting.writes) == (reads, writes)
