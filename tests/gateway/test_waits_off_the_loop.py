"""What one client's request waits for must not hold up the worker's other requests.

A worker serves every request on one event loop, plus a few threads (the feed's one,
asyncio's default pool). During `hunch data import` the events file's write lock is
held for minutes, and a write that comes meanwhile waits up to the 30 s busy timeout:
that wait must hold up nothing but its own request. Each test holds the lock from a
connection of its own (as the import does), starts a request that waits for it, and
checks that others are answered while that one is still pending; then lets go and
checks that the waiting request succeeded (on the old code it had timed out first).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import sqlite3
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from gateway.app import configure_logging, create_app
from gateway.services import STORE_WRITE_THREADS, Services
from tests.gateway.test_app import codes, gql, operator, serve, settings  # noqa: F401 - a fixture

VOTE = """mutation($p: ID!) { recordInteraction(input: {pollId: $p, eventType: "HUNCH"}) {
  __typename ... on Recorded { stored } } }"""
READS = (
    ('{ poll(id: "p1") { id question } }', lambda d: d["poll"]["question"] == "question of p1?"),
    ("{ me { id } }", lambda d: d["me"]["id"] == "reader"),
    ('{ poll(id: "p1") { author { polls(first: 2) { id } } } }',
     lambda d: len(d["poll"]["author"]["polls"]) == 2),
    # a page whose polls' records are read: on the feed's one thread
    ("{ feed(first: 3) { edges { node { id question } } } }",
     lambda d: all(e["node"]["question"] for e in d["feed"]["edges"])),
)


def _held_elsewhere(lock) -> bool:
    """Whether another thread holds ``lock`` (a threading lock or RLock) now."""
    if lock.acquire(blocking=False):
        lock.release()
        return False
    return True


async def _until(condition) -> None:
    """Yield to the loop (and the threads) until ``condition()``: a request has reached
    the point the test waits for. Polls a state; orders nothing by time (the deadline
    only turns a hang into a failure)."""
    deadline = time.monotonic() + 120
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("the request never reached the state the test waits for")
        await asyncio.sleep(0.001)


def _write_lock(settings):  # noqa: F811
    """A connection holding the events file's write lock, as an import's transaction."""
    holder = sqlite3.connect(settings.events_db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    return holder


def test_reads_are_answered_while_a_vote_waits_for_the_write_lock(settings):  # noqa: F811
    """A vote waiting for the file held the store's one connection, which every read
    (poll, me, Author.polls, a feed page's polls) shared: each waited with it, and the
    feed's one thread with them; now they read on a connection that never writes."""
    services = Services(settings)
    app = create_app(settings, services)

    async def scenario(client: httpx.AsyncClient) -> None:
        holder = _write_lock(settings)
        try:
            vote = asyncio.ensure_future(gql(client, settings, VOTE, {"p": "p2"}, user="voter"))
            # the vote is in the store's write, waiting for the lock the test holds
            await _until(lambda: _held_elsewhere(services.events._lock))
            for query, check in READS:
                body = (await gql(client, settings, query)).json()
                assert "errors" not in body and check(body["data"]), body
            assert not vote.done()  # every read answered while the vote still waits
        finally:
            holder.execute("COMMIT")
            holder.close()
        assert (await vote).json()["data"]["recordInteraction"] == {
            "__typename": "Recorded", "stored": True}

    serve(settings, scenario, app)


def test_reads_are_answered_while_an_anonymous_readiness_probe_waits(settings):  # noqa: F811
    """The probe's write check runs off the loop, but it held the store's connection
    for as long as it waited: an anonymous /readyz during an import held every read."""
    services = Services(settings)
    app = create_app(settings, services)

    async def scenario(client: httpx.AsyncClient) -> None:
        holder = _write_lock(settings)
        try:
            probe = asyncio.ensure_future(client.get("/readyz"))  # nobody's token
            await _until(lambda: _held_elsewhere(services.events._lock))
            for query, check in READS:
                body = (await gql(client, settings, query)).json()
                assert "errors" not in body and check(body["data"]), body
            assert not probe.done()
        finally:
            holder.execute("COMMIT")
            holder.close()
        answer = await probe
        assert answer.status_code == 200 and answer.json() == {"ready": True}

    serve(settings, scenario, app)



def test_votes_waiting_for_the_write_lock_leave_the_default_pool_to_the_reads(settings):  # noqa: F811
    """Writes waited for the file's lock on asyncio's default pool (cpu + 4 threads):
    during an import a few votes took every thread of it, and the reads, follows and
    persisted-query lookups of the worker waited for them. The pool here has as many
    threads as there are votes, as on a small host; the writes have threads of their own."""
    services = Services(settings)
    app = create_app(settings, services)
    votes_in_store: list[str] = []  # votes that reached the store: they wait for the lock
    record = services.record_interaction

    def counted(event):
        votes_in_store.append(event.user_id)
        return record(event)

    services.record_interaction = counted
    voters = [f"voter{i}" for i in range(STORE_WRITE_THREADS)]

    async def main() -> None:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(len(voters)))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
                holder = _write_lock(settings)
                try:
                    votes = [asyncio.ensure_future(gql(client, settings, VOTE, {"p": "p2"},
                                                       user=voter)) for voter in voters]
                    await _until(lambda: len(votes_in_store) == len(voters))
                    for query, check in READS:
                        body = (await gql(client, settings, query)).json()
                        assert "errors" not in body and check(body["data"]), body
                    follow = 'mutation { follow(userId: "a1") { __typename } }'
                    body = (await gql(client, settings, follow)).json()
                    assert body["data"]["follow"]["__typename"] == "FollowChanged", body
                    assert not any(vote.done() for vote in votes)  # all still waiting
                finally:
                    holder.execute("COMMIT")
                    holder.close()
                for vote in votes:
                    assert (await vote).json()["data"]["recordInteraction"] == {
                        "__typename": "Recorded", "stored": True}

    asyncio.run(main())


def test_feed_pages_are_served_while_an_internal_tool_waits_for_the_write_lock(settings):  # noqa: F811
    """Promotions and filters live in the event store's file, each store on a connection
    whose lock a write held while it waited for the file; the feed reads both every
    second (has a promotion or the filter changed?): during an import one internal
    tool's write held the worker's feed thread, and every feed page behind it."""
    services = Services(settings)
    services.filters.create("no-x", 'EXCLUDE ItemID WHERE Items.CATEGORY IN ("x")')
    app = create_app(settings, services)
    promotion = """mutation { createPromotion(name: "spring", input: {percentPromotedItems: 10,
      filterExpression: "INCLUDE ItemID WHERE Items.CATEGORY IN (\\"news\\")"}) { __typename } }"""
    new_filter = """mutation { createFilter(name: "no-y",
      expression: "EXCLUDE ItemID WHERE Items.CATEGORY IN (\\"y\\")") { __typename } }"""
    feed = "query($f: String) { feed(first: 3, filter: $f) { edges { node { id } } } }"

    async def scenario(client: httpx.AsyncClient) -> None:
        holder = _write_lock(settings)
        try:
            writes = [asyncio.ensure_future(client.post(
                "/graphql", json={"query": query}, headers=operator(settings)))
                for query in (promotion, new_filter)]
            # both wait for the file, each holding its store's connection
            await _until(lambda: _held_elsewhere(services.promotions._lock)
                         and _held_elsewhere(services.filters._lock))
            services.promotions_changed()  # the feed reads the promotions' version now
            for name in (None, "no-x"):  # the filter's definition is read at its first use
                body = (await gql(client, settings, feed, {"f": name})).json()
                assert len(body["data"]["feed"]["edges"]) == 3, body
            assert not any(write.done() for write in writes)
        finally:
            holder.execute("COMMIT")
            holder.close()
        answers = [(await write).json()["data"] for write in writes]
        assert answers == [{"createPromotion": {"__typename": "Promotion"}},
                           {"createFilter": {"__typename": "Filter"}}]

    serve(settings, scenario, app)


class _StalledStream:
    """stderr whose reader has stopped (a log shipper, a paused terminal): write() waits
    until the test lets go (or gives up after STALL_LIMIT_SECONDS, so that the old code
    fails rather than hangs, and says so in ``gave_up``)."""

    STALL_LIMIT_SECONDS = 30.0

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.writing = threading.Event()
        self.released = threading.Event()
        self.gave_up = False

    def write(self, text: str) -> int:
        self.writing.set()
        if not self.released.wait(self.STALL_LIMIT_SECONDS):
            self.gave_up = True
        self.lines.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_a_stalled_stderr_leaves_the_worker_serving(settings, monkeypatch):  # noqa: F811
    """Every client error logs a line, on the event loop; written to stderr there, a
    stalled reader of the stream froze every request of the worker. Lines are written by
    a thread of their own: requests are answered while the stream is stalled."""
    stream = _StalledStream()
    monkeypatch.setattr(sys, "stderr", stream)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    listener = configure_logging()

    async def scenario(client: httpx.AsyncClient) -> None:
        mistake = '{ feed(first: 3, after: "forged") { recommendationId } }'
        body = (await gql(client, settings, mistake)).json()  # a client error: a log line
        assert codes(body) == ["INVALID_CURSOR"]
        await _until(stream.writing.is_set)  # a line is being written, and stalls
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        body = (await gql(client, settings, "{ me { id } }")).json()
        assert body["data"]["me"]["id"] == "reader"
        # all answered while the stream was stalled, not after it gave up
        assert not stream.gave_up and not stream.released.is_set()
        stream.released.set()

    try:
        serve(settings, scenario)
    finally:
        stream.released.set()
        if listener is not None:
            listener.stop()  # writes what is queued
            atexit.unregister(listener.stop)
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert any("INVALID_CURSOR" in line for line in stream.lines)


def test_writes_past_the_backlog_are_refused_at_once_as_retryable(settings, monkeypatch):  # noqa: F811
    """During an import each write waits up to the 30 s busy timeout, one after another,
    and nothing bounded how many a worker let wait (votes and their connections held for
    minutes, only to fail). Past STORE_WRITE_BACKLOG a write is refused at once with
    STORE_UNAVAILABLE, which clients retry; those already waiting are stored."""
    import gateway.services as services_module

    monkeypatch.setattr(services_module, "STORE_WRITE_BACKLOG", 2)
    services = Services(settings)
    app = create_app(settings, services)
    reached: list[str] = []
    record = services.record_interaction

    def counted(event):
        reached.append(event.item_id)
        return record(event)

    services.record_interaction = counted

    async def scenario(client: httpx.AsyncClient) -> None:
        holder = _write_lock(settings)
        try:
            waiting = [asyncio.ensure_future(gql(client, settings, VOTE, {"p": poll},
                                                 user=f"voter-{poll}"))
                       for poll in ("p1", "p2")]
            await _until(lambda: services._writes_waiting == 2)
            refused = (await gql(client, settings, VOTE, {"p": "p3"}, user="voter-p3")).json()
            assert codes(refused) == ["STORE_UNAVAILABLE"], refused
            assert refused["errors"][0]["extensions"].get("retryable") is True, refused
            assert not any(vote.done() for vote in waiting)
        finally:
            holder.execute("COMMIT")
            holder.close()
        for vote in waiting:
            assert (await vote).json()["data"]["recordInteraction"]["stored"] is True
        assert "p3" not in reached  # refused before it reached the store

    serve(settings, scenario, app)


def test_a_write_that_outwaits_the_busy_timeout_is_retryable(settings, monkeypatch):  # noqa: F811
    """It was an EventStoreError, masked as INTERNAL_SERVER_ERROR after 30 s."""
    import recsys.events as events_module
    from recsys.events import EventStore, EventStoreBusy, Interaction
    from recsys.store_db import StoreUnavailable

    monkeypatch.setattr(events_module, "BUSY_TIMEOUT_MS", 50)
    holder = _write_lock(settings)
    try:
        with EventStore(settings.events_db) as store, pytest.raises(EventStoreBusy) as busy:
            store.append(Interaction("u1", "p1", "HUNCH", int(time.time())))
        assert isinstance(busy.value, StoreUnavailable) and busy.value.retryable
    finally:
        holder.execute("COMMIT")
        holder.close()
