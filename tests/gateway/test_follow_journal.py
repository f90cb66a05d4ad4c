"""The embedded follower graph keeps the API's follows across a restart: the in-memory
graph is rebuilt at every start, and an acknowledged follow or unfollow was gone
(helper-59's walkthrough of the demo)."""

from __future__ import annotations

import asyncio

from gateway.services import Services
from tests.gateway.test_app import settings  # noqa: F401 - the fixture
from tests.gateway.test_waits_off_the_loop import _until


def _restarted(settings) -> Services:  # noqa: F811
    services = Services(settings)
    asyncio.run(services.start())
    return services


def test_follows_and_unfollows_survive_a_restart_over_the_follows_file(settings):  # noqa: F811
    path = settings.home / "follows.csv"
    path.write_text("FOLLOWER_ID,FOLLOWEE_ID,TIMESTAMP\nann,bob,1700000000\n"
                    "ann,cat,1700000000\n")
    settings = settings.model_copy(update={"follows_path": path})
    first = _restarted(settings)
    try:
        assert asyncio.run(first.followees("ann")) == ["bob", "cat"]
        asyncio.run(first.follow("ann", "dan"))
        assert asyncio.run(first.unfollow("ann", "bob")) is True  # listed in the file
        asyncio.run(first.follow("eve", "ann"))
        asyncio.run(first.unfollow("eve", "ann"))
        assert asyncio.run(first.unfollow("eve", "zed")) is False  # nothing to undo
    finally:
        asyncio.run(first.close())

    second = _restarted(settings)
    try:
        assert asyncio.run(second.followees("ann")) == ["cat", "dan"]
        assert asyncio.run(second.followees("eve")) == []
    finally:
        asyncio.run(second.close())


def test_an_unfollow_this_worker_did_not_see_the_follow_of_stays_after_a_restart(
        settings):  # noqa: F811
    """Two workers of one host: A follows, B (whose graph never held it) unfollows; or a
    retried unfollow after the journal failed. Both were answered "not following", and
    the follow came back at the next start (helper-61)."""
    a, b = _restarted(settings), _restarted(settings)
    try:
        asyncio.run(a.follow("ann", "bob"))
        assert asyncio.run(b.unfollow("ann", "bob")) is False
    finally:
        asyncio.run(a.close())
        asyncio.run(b.close())
    c = _restarted(settings)
    try:
        assert asyncio.run(c.followees("ann")) == []
    finally:
        asyncio.run(c.close())


def test_a_follow_on_one_worker_reaches_another_within_a_refresh(settings):  # noqa: F811
    """Each worker's embedded graph is its own; the journal's numbered changes are read
    by every worker's refresher, as polls and events are."""
    a, b = _restarted(settings), _restarted(settings)
    try:
        asyncio.run(a.follow("ann", "bob"))
        asyncio.run(a.follow("ann", "cat"))
        # The refresher's thread applies changes on the worker's event loop only (the
        # in-memory graph is not thread-safe); without one, the caller applies them.
        b.refresher.run_once()
        assert asyncio.run(b.followees("ann")) == []
        assert b.refresher.health()["follows"].consecutive_failures == 0
        b.refresh_follows()
        assert asyncio.run(b.followees("ann")) == ["bob", "cat"]
        asyncio.run(b.unfollow("ann", "bob"))
        a.refresh_follows()
        assert asyncio.run(a.followees("ann")) == ["cat"]
        seq = a._follows_seq
        a.refresh_follows()  # nothing new: nothing read again
        assert a._follows_seq == seq
    finally:
        asyncio.run(a.close())
        asyncio.run(b.close())


def test_the_in_network_source_serves_a_followees_poll_written_after_start(settings):  # noqa: F811
    """Followees' polls come from the catalog: the graph's authorship is loaded in bulk,
    so a poll written since (the newest, what an in-network slot is for) was missing."""
    settings = settings.model_copy(update={"in_network": True})
    services = _restarted(settings)  # the fixture's home has no follows.csv
    try:
        asyncio.run(services.follow("reader", "writer"))
        services.upsert_poll({"ITEM_ID": "fresh", "CATEGORY": "news"}, "writer")
        assert services.feed_filters.newest_polls_by(["writer"], 5)[0][0] == "fresh"
        first = services.feed("reader", 10, None).page
        assert [(i.item_id, i.source) for i in first.items if i.source == "in-network"] == [
            ("fresh", "in-network")], first.items
    finally:
        asyncio.run(services.close())


def test_the_refresher_applies_other_workers_follows_on_the_running_loop(settings):  # noqa: F811
    a = _restarted(settings)

    async def worker_b():
        b = Services(settings)
        b._loop = asyncio.get_running_loop()  # as the app's lifespan sets it
        await b.start()
        try:
            await a.follow("ann", "bob")  # another worker's follow
            for _ in range(200):  # the refresher's thread, every refresh_seconds
                if await b.followees("ann") == ["bob"]:
                    break
                await asyncio.sleep(0.05)
            assert await b.followees("ann") == ["bob"]
        finally:
            await b.close()

    try:
        asyncio.run(worker_b())
    finally:
        asyncio.run(a.close())


def test_a_journal_written_before_changes_were_numbered_opens_and_replays(tmp_path):
    import sqlite3

    from graph.follow_journal import FollowJournal

    path = tmp_path / "follows-journal.sqlite3"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE follows (follower TEXT NOT NULL, followee TEXT NOT NULL,
            following INTEGER NOT NULL, at INTEGER NOT NULL,
            PRIMARY KEY (follower, followee)) WITHOUT ROWID;
        INSERT INTO follows VALUES ('ann', 'bob', 1, 20), ('ann', 'cat', 0, 10);
    """)
    old.close()
    journal = FollowJournal(path)
    try:
        assert journal.changes_since(0) == (2, [("ann", "cat", False, 10),
                                                ("ann", "bob", True, 20)])
        journal.record("eve", "ann", True, 30)
        assert journal.changes_since(2) == (3, [("eve", "ann", True, 30)])
    finally:
        journal.close()


def test_a_row_the_graph_refuses_is_skipped_not_a_block(settings):  # noqa: F811
    services = _restarted(settings)
    try:
        services.follow_journal.record("x", "x", True, 1)  # never written by the API
        asyncio.run(services.follow("ann", "bob"))
        services.refresh_follows()
        assert asyncio.run(services.followees("ann")) == ["bob"]
        assert services._follows_seq == 2
    finally:
        asyncio.run(services.close())


def test_a_follow_sent_again_keeps_its_time_in_the_journal(tmp_path):
    """helper-75: the journal's time of a follow moved with every repeated follow, and
    export-follows and every worker's replay took the latest click for when it was made."""
    from graph.follow_journal import FollowJournal

    journal = FollowJournal(tmp_path / "follows-journal.sqlite3")
    try:
        journal.record("ann", "bob", True, 10)
        journal.record("ann", "bob", True, 20)
        assert journal.changes_since(0)[1] == [("ann", "bob", True, 10)]
        journal.record("ann", "bob", False, 30)
        journal.record("ann", "bob", False, 40)
        assert journal.changes_since(0)[1] == [("ann", "bob", False, 30)]
        journal.record("ann", "bob", True, 50)
        assert journal.changes_since(0)[1] == [("ann", "bob", True, 50)]
    finally:
        journal.close()


def test_a_follow_and_an_unfollow_sent_at_once_reach_graph_and_journal_in_one_order(
        settings):  # noqa: F811
    """The follow reached the graph, then waited for its journal line; meanwhile the
    unfollow went through both, and the follow's line came last: the graph said "not
    following", the journal "following", and a restart (which replays the journal)
    brought the follow back."""
    import threading

    services = _restarted(settings)
    journal = services.follow_journal
    record, held, release = journal.record, threading.Event(), threading.Event()

    def slow_first_record(*args):
        if not held.is_set():  # the follow's line waits until the test lets it go
            held.set()
            assert release.wait(60)
        record(*args)

    journal.record = slow_first_record

    async def both() -> None:
        follow = asyncio.ensure_future(services.follow("ann", "bob"))
        await _until(held.is_set)  # the follow is in the graph, its line held
        unfollow = asyncio.ensure_future(services.unfollow("ann", "bob"))
        # The unfollow goes as far as it can: through graph and journal (the old code),
        # or to the follower's lock, where it waits (asyncio.Lock's queue of waiters).
        lock = services._follow_lock("ann")
        await _until(lambda: unfollow.done() or getattr(lock, "_waiters", None))
        release.set()
        await follow
        await unfollow

    try:
        asyncio.run(both())
        assert asyncio.run(services.followees("ann")) == []
    finally:
        release.set()
        asyncio.run(services.close())
    again = _restarted(settings)
    try:
        assert asyncio.run(again.followees("ann")) == []  # as the caller was told last
    finally:
        asyncio.run(again.close())
