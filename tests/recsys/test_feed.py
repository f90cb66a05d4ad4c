"""The mixer, promotions and feed sessions: ratios, de-duplication, backfill, stable
paging, signed cursors, Personalize's promotion semantics."""

from __future__ import annotations

import math
import random
import subprocess
import sys
import textwrap
from collections import Counter

import pytest

from recsys.feed import FeedService, InvalidPageSize
from recsys.feed_sessions import (
    CursorSigner,
    ExpiredCursor,
    InMemoryFeedSessionStore,
    InvalidCursor,
    SQLiteFeedSessionStore,
)
from recsys.mixer import (
    POPULARITY_COUNT,
    TRENDING_NOW,
    USER_PERSONALIZATION,
    InvalidSlotPlan,
    Mixer,
    MixRequest,
    SlotPlan,
)
from recsys.promotions import (
    InvalidPromotion,
    Promotion,
    interleave_promoted,
)
from recsys.recipes.base import ScoredItem


class RankedList:
    """A candidate source over a fixed ranking (what a recipe returns for everyone)."""

    def __init__(self, name: str, item_ids: list[str]):
        self.name = name
        self.item_ids = item_ids
        self.calls = 0

    def candidates(self, user_id, n, *, exclude=(), allow=None, filter_name=None,
                   filter_values=None):
        self.calls += 1
        out = []
        for rank, item in enumerate(self.item_ids):
            if item in exclude or (allow is not None and not allow(item)):
                continue
            out.append(ScoredItem(item, 1.0 / (rank + 1)))
            if len(out) == n:
                break
        return out


def sources(n_up=2000, n_tr=2000, n_pop=2000, overlap=True):
    # Overlapping rankings so that de-duplication matters.
    up = [f"p{i}" for i in range(n_up)]
    tr = [f"p{i}" for i in range(0, 2 * n_tr, 2)] if overlap else [f"t{i}" for i in range(n_tr)]
    pop = [f"p{i}" for i in range(0, 3 * n_pop, 3)] if overlap else [f"q{i}" for i in range(n_pop)]
    return {
        USER_PERSONALIZATION: RankedList(USER_PERSONALIZATION, up),
        TRENDING_NOW: RankedList(TRENDING_NOW, tr),
        POPULARITY_COUNT: RankedList(POPULARITY_COUNT, pop),
    }


def test_default_plan_is_three_personalized_one_trending_one_popular():
    mixer = Mixer(sources(overlap=False))
    page = mixer.mix(MixRequest("u1", 20))
    assert [it.source for it in page[:5]] == [USER_PERSONALIZATION] * 3 + [TRENDING_NOW, POPULARITY_COUNT]
    assert Counter(it.source for it in page) == {
        USER_PERSONALIZATION: 12, TRENDING_NOW: 4, POPULARITY_COUNT: 4}
    # each placed poll carries its rank within its source and its score
    trending = [it for it in page if it.source == TRENDING_NOW]
    assert [it.rank for it in trending] == [1, 2, 3, 4]
    assert trending[0].item_id == "t0" and trending[0].score == 1.0


def test_no_duplicates_within_a_page_when_sources_overlap():
    page = Mixer(sources()).mix(MixRequest("u1", 50))
    ids = [it.item_id for it in page]
    assert len(ids) == 50 == len(set(ids))
    # trending's top item p0 is also UP's top: trending moves on to its next one
    assert page[3].source == TRENDING_NOW and page[3].item_id != "p0"


def test_exhausted_source_is_backfilled_to_exactly_first_items():
    srcs = sources(n_tr=2, overlap=False)
    page = Mixer(srcs).mix(MixRequest("u1", 30))
    assert len(page) == 30
    assert sum(it.source == TRENDING_NOW for it in page) == 2


def test_short_page_only_when_every_source_is_dry():
    srcs = sources(n_up=3, n_tr=2, n_pop=1, overlap=False)
    page = Mixer(srcs).mix(MixRequest("u1", 20))
    assert len(page) == 6


def test_request_filter_and_exclusions_apply():
    page = Mixer(sources()).mix(MixRequest("u1", 30, exclude={"p0", "p1"},
                                           allow=lambda i: int(i[1:]) % 2 == 1))
    ids = {it.item_id for it in page}
    assert "p1" not in ids and "p0" not in ids
    assert all(int(i[1:]) % 2 == 1 for i in ids)


def test_slot_plan_parse_and_validation():
    plan = SlotPlan.parse("user-personalization*2, in-network, trending-now")
    assert plan.block == (USER_PERSONALIZATION, USER_PERSONALIZATION, "in-network", TRENDING_NOW)
    with pytest.raises(InvalidSlotPlan, match="in-network"):
        Mixer(sources(), plan)
    with pytest.raises(InvalidSlotPlan, match="NAME\\*COUNT"):
        SlotPlan.parse("trending-now*x")


def make_feed(store=None, **kw):
    return FeedService(Mixer(sources()), store or InMemoryFeedSessionStore(),
                       CursorSigner("test-secret"), **kw)


def test_fifty_pages_never_repeat_or_skip():
    feed = make_feed()
    seen: list[str] = []
    after = None
    for _ in range(50):
        page = feed.page("u1", 20, after)
        assert len(page.items) == 20
        seen += [it.item_id for it in page.items]
        after = page.end_cursor
    assert len(seen) == len(set(seen)) == 1000
    # same cursor, same page (stable): re-asking the first page's cursor repeats page 2
    first = feed.page("u2", 10)
    second = feed.page("u2", 10, first.end_cursor)
    again = feed.page("u2", 10, first.end_cursor)
    assert [i.item_id for i in again.items] == [i.item_id for i in second.items]


def test_a_new_request_without_cursor_starts_a_new_session():
    feed = make_feed()
    a, b = feed.page("u1", 5), feed.page("u1", 5)
    assert a.session_id != b.session_id
    assert [i.item_id for i in a.items] == [i.item_id for i in b.items]


def test_tampered_foreign_and_expired_cursors_are_rejected():
    feed = make_feed(session_ttl_seconds=60)
    page = feed.page("u1", 5)
    cursor = page.end_cursor
    payload, sig = cursor.split(".")
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    with pytest.raises(InvalidCursor, match="altered"):
        feed.page("u1", 5, flipped + "." + sig)
    with pytest.raises(InvalidCursor, match="another user"):
        feed.page("u2", 5, cursor)
    with pytest.raises(InvalidCursor, match="malformed"):
        feed.page("u1", 5, "garbage")
    import time
    with pytest.raises(ExpiredCursor):
        feed.page("u1", 5, cursor, now=time.time() + 61)
    with pytest.raises(InvalidPageSize):
        feed.page("u1", 101)


def test_interacted_polls_are_excluded_and_recommendations_reported():
    reported = []
    feed = make_feed(interactions_exclusion=lambda user: {"p0", "p1", "p2"},
                     on_recommendation=lambda rid, user, items: reported.append((rid, user, items)))
    page = feed.page("u1", 10)
    ids = [it.item_id for it in page.items]
    assert not {"p0", "p1", "p2"} & set(ids)
    assert reported == [(page.recommendation_id, "u1", ids)]
    assert all(it.recommendation_id == page.recommendation_id for it in page.items)


def test_one_session_paged_alternately_through_two_processes(tmp_path):
    """Two worker processes share one SQLite session store: no repeats, no skips."""
    db = tmp_path / "sessions.sqlite3"
    here = __import__('pathlib').Path(__file__).resolve().parent
    # The workers run this tree's code, as this process does: from another directory a
    # bare `import recsys` found the editable install (another clone, changing under CI).
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(here)!r}, {str(here.parents[1])!r}]
        import recsys
        assert recsys.__file__.startswith({str(here.parents[1])!r}), recsys.__file__
        from test_feed import make_feed
        from recsys.feed_sessions import SQLiteFeedSessionStore
        feed = make_feed(SQLiteFeedSessionStore({str(db)!r}))
        for line in sys.stdin:
            after = line.strip() or None
            page = feed.page("u1", 7, after)
            print(page.end_cursor + " " + ",".join(i.item_id for i in page.items), flush=True)
    """)
    workers = [subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        seen, after = [], ""
        for turn in range(10):
            w = workers[turn % 2]
            w.stdin.write(after + "\n")
            w.stdin.flush()
            after, ids = w.stdout.readline().split()
            seen += ids.split(",")
    finally:
        for w in workers:
            w.stdin.close()
            w.wait(timeout=30)
    assert len(seen) == 70 == len(set(seen))
    # no skips: the same session read back in order is exactly what was served
    store = SQLiteFeedSessionStore(db)
    (session_id,) = {r[0] for r in store._conn.execute("SELECT session_id FROM feed_sessions")}
    assert [i.item_id for i in store.items(session_id)] == seen


# --- promotions -------------------------------------------------------------------------

def test_interleave_keeps_relative_order_and_share():
    regular = [f"r{i}" for i in range(20)]
    promoted = [f"x{i}" for i in range(20)]
    page, positions = interleave_promoted(regular, promoted, 20, 5, random.Random(1))
    assert len(page) == 20 and len(positions) == 5
    assert [p for p in page if p.startswith("x")] == ["x0", "x1", "x2", "x3", "x4"]
    assert [p for p in page if p.startswith("r")] == regular[:15]
    # positions are random: another seed places them elsewhere
    _, other = interleave_promoted(regular, promoted, 20, 5, random.Random(2))
    assert positions != other


def test_as_many_as_possible_when_too_few_match():
    page, positions = interleave_promoted([f"r{i}" for i in range(20)], ["x0", "x1"], 20, 10,
                                          random.Random(0))
    assert len(page) == 20 and len(positions) == 2


def test_promotion_validation_and_count():
    with pytest.raises(InvalidPromotion, match="1 to 100"):
        Promotion("p", 0, 'INCLUDE ItemID WHERE Items.CATEGORY IN ("PROMOTIONAL_EVENT")')
    with pytest.raises(InvalidPromotion, match="end time"):
        Promotion("p", 10, "x", start_at=10, end_at=5)
    promo = Promotion("p", 25, "x")
    assert promo.promoted_count(20) == 5 and promo.promoted_count(1) == 1


def test_feed_applies_active_promotion_with_its_own_filter():
    promo = Promotion("spring", 20, "INCLUDE ItemID WHERE Items.CATEGORY IN (\"PROMO\")")
    promoted_ids = {f"p{i}" for i in range(500, 2000, 7)}
    feed = make_feed(
        active_promotion=lambda: promo,
        promotion_filter=lambda p, user: promoted_ids.__contains__,
    )
    # the request's filter (odd ids only) must not apply to promoted polls
    page = feed.page("u1", 20, allow=lambda i: int(i[1:]) % 2 == 1)
    promoted = [it for it in page.items if it.promotion_name == "spring"]
    assert len(promoted) == 4
    assert all(it.item_id in promoted_ids for it in promoted)
    assert any(int(it.item_id[1:]) % 2 == 0 for it in promoted)
    assert all(int(it.item_id[1:]) % 2 == 1 for it in page.items if it.promotion_name is None)
    assert len({it.item_id for it in page.items}) == 20


# --- what the feed keeps between requests -------------------------------------------

def test_a_new_session_is_stored_with_its_first_page_and_read_back_elsewhere(tmp_path):
    """The first page and its session are one write; another worker's store sees both."""
    db = tmp_path / "sessions.sqlite3"
    feed = make_feed(SQLiteFeedSessionStore(db))
    first = feed.page("u1", 20)
    other_worker = SQLiteFeedSessionStore(db)
    snapshot = other_worker.snapshot(first.session_id)
    assert [i.item_id for i in snapshot.items] == [i.item_id for i in first.items]
    assert snapshot.items[0].recommendation_id == first.recommendation_id
    assert other_worker.snapshot("no-such-session") is None
    # the next page, served by the other worker, continues without a repeat
    second = make_feed(other_worker).page("u1", 20, first.end_cursor)
    assert not {i.item_id for i in first.items} & {i.item_id for i in second.items}


def test_a_lost_race_returns_the_winners_page(tmp_path):
    """Two workers extend one session at once: the loser serves what the winner stored."""
    db = tmp_path / "sessions.sqlite3"
    store = SQLiteFeedSessionStore(db)
    feed = make_feed(store)
    first = feed.page("u1", 5)
    rival = SQLiteFeedSessionStore(db)
    real_extend = store.extend

    def extend_after_rival(session_id, at, items):
        from recsys.mixer import FeedItem

        rival.extend(session_id, at, [FeedItem(f"r{i}", "trending-now", 1.0, i + 1, "rid")
                                      for i in range(5)])
        return real_extend(session_id, at, items)

    store.extend = extend_after_rival
    page = feed.page("u1", 5, first.end_cursor)
    assert [i.item_id for i in page.items] == [f"r{i}" for i in range(5)]


def test_latest_interactions_follow_events_stored_by_another_process(tmp_path):
    from recsys.events import EventStore, Interaction, LatestInteractionsCache

    db = tmp_path / "events.sqlite3"
    writer = EventStore(db)  # another worker's connection
    writer.append(Interaction("u1", "p1", "HUNCH", 100))
    writer.upsert_users([{"USER_ID": "u1", "AGE": 30}])
    clock = [0.0]
    cache = LatestInteractionsCache(EventStore(db), per_type=2, user_ttl_seconds=60,
                                    clock=lambda: clock[0])
    recent, user = cache.get("u1")
    assert recent == {"hunch": ["p1"]} and user["AGE"] == 30
    writer.append(Interaction("u1", "p2", "HUNCH", 101))
    writer.append(Interaction("u1", "p3", "HUNCH", 102))
    writer.append(Interaction("u2", "p9", "COMMENT", 103))
    recent, _ = cache.get("u1")
    assert recent == {"hunch": ["p2", "p3"]}  # the newest two, oldest first
    assert cache.get("u2")[0] == {"comment": ["p9"]}
    # user records have no sequence number: a change shows once the TTL has passed
    writer.upsert_users([{"USER_ID": "u1", "AGE": 31}])
    assert cache.get("u1")[1]["AGE"] == 30
    clock[0] = 61.0
    assert cache.get("u1")[1]["AGE"] == 31


def test_bound_filters_are_reused_per_values_and_follow_catalog_changes():
    from recsys.filters import Catalog, FilterContext, compile_filter

    catalog = Catalog({"a": {"CATEGORY": "MUSIC"}, "b": {"CATEGORY": "PETS"}})
    context = FilterContext(catalog)
    named = compile_filter("EXCLUDE ItemID WHERE Items.CATEGORY IN ($C)")
    music = named.bind({"C": '"MUSIC"'})
    assert named.bind({"C": '"MUSIC"'}) is music
    assert list(music.apply(["a", "b"], context)) == ["b"]
    assert list(named.bind({"C": '"PETS"'}).apply(["a", "b"], context)) == ["a"]
    # the shared mask of a metadata-only filter is rebuilt when a poll changes category
    catalog.upsert({"b": {"CATEGORY": "MUSIC"}, "c": {"CATEGORY": "PETS"}})
    assert list(music.apply(["a", "b", "c"], context)) == ["c"]
    with pytest.raises(ValueError):
        music.catalog_mask(context)[0] = True  # shared between requests: read-only


def test_a_vote_stored_by_another_worker_leaves_the_next_feed(tmp_path):
    """The gateway keeps what filters read of a user between requests; a vote stored by
    any worker must still keep that poll out of the user's very next page."""
    import asyncio

    from gateway.services import Services
    from gateway.settings import Settings
    from recsys.artifacts import ArtifactStore
    from recsys.events import EventStore, Interaction
    from recsys.recipes.base import TrainingData
    from recsys.recipes.popularity_count import PopularityCount

    settings = Settings(home=tmp_path, graph_store="memory")
    polls = {f"p{i}": {"CATEGORY": "MUSIC" if i % 2 else "PETS", "CREATION_TIMESTAMP": 1}
             for i in range(40)}
    votes = [Interaction(f"fan{j}", f"p{i}", "HUNCH", 1_000 + j)
             for i in range(40) for j in range(40 - i)]  # p0 most popular
    with EventStore(settings.events_db) as store:
        store.upsert_items([{"ITEM_ID": k, **v} for k, v in polls.items()])
        store.append_many(votes)
    model = PopularityCount().fit(TrainingData(votes, polls))
    ArtifactStore(settings.artifacts_dir).publish("popularity-count", model, {}, "test",
                                                  extra={"trained_until": 1_000 + 40})
    services = Services(settings)
    try:
        first = [i.item_id for i in services.feed("u1", 10, None).page.items]
        assert first[:3] == ["p0", "p1", "p2"]  # popularity backfills every slot
        with EventStore(settings.events_db) as other_worker:
            other_worker.append(Interaction("u1", "p0", "HUNCH", 2_000))
        again = [i.item_id for i in services.feed("u1", 10, None).page.items]
        assert "p0" not in again and again[:2] == ["p1", "p2"]
        # the request's own filter still applies, from a cached definition
        services.filters.create("no-music", "EXCLUDE ItemID WHERE Items.CATEGORY IN ($C)")
        pets = services.feed("u1", 10, None, "no-music", {"C": '"MUSIC"'}).page.items
        assert [i.item_id for i in pets][:3] == ["p2", "p4", "p6"]
    finally:
        asyncio.run(services.close())


def only_this_tests_sweep(feed_sessions, monkeypatch) -> None:
    """The store's own background round sweeps too (CHECKPOINT_SECONDS after its first
    session, then every SWEEP_SECONDS): a test thread held up that long under load met
    it, and it took the expired sessions first (``sweep() == 7`` read 0) or paused in
    the test's patched sleep. Here only the test sweeps; the round still checkpoints."""
    monkeypatch.setattr(feed_sessions, "SWEEP_SECONDS", math.inf)


def test_expired_sessions_are_swept_in_batches_and_live_ones_kept(tmp_path, monkeypatch):
    import recsys.feed_sessions as feed_sessions
    from recsys.mixer import FeedItem

    monkeypatch.setattr(feed_sessions, "SWEEP_BATCH_SESSIONS", 3)
    only_this_tests_sweep(feed_sessions, monkeypatch)
    store = SQLiteFeedSessionStore(tmp_path / "sessions.sqlite3")
    try:
        item = FeedItem("p1", "trending-now", 1.0, 1, "rid")
        expired = [store.create("u1", -1, [item])[0] for _ in range(7)]
        live, _ = store.create("u1", 60, [item])
        assert store.sweep() == 7
        assert all(store.snapshot(s) is None for s in expired)
        assert [i.item_id for i in store.snapshot(live).items] == ["p1"]
        rows = store._conn.execute("SELECT COUNT(*) FROM feed_session_pages").fetchone()[0]
        assert rows == 1
    finally:
        store.close()  # ends the store's background thread


def test_the_sweep_lets_go_of_the_write_lock_between_batches(tmp_path, monkeypatch):
    """A writer in another process must get in between two batches: re-taking the lock
    at once starved feed requests for as long as a big sweep ran."""
    import sqlite3
    import threading
    import time

    import recsys.feed_sessions as feed_sessions
    from recsys.mixer import FeedItem

    monkeypatch.setattr(feed_sessions, "SWEEP_BATCH_SESSIONS", 2)
    only_this_tests_sweep(feed_sessions, monkeypatch)
    store = SQLiteFeedSessionStore(tmp_path / "sessions.sqlite3")
    item = FeedItem("p1", "trending-now", 1.0, 1, "rid")
    for _ in range(5):
        store.create("u1", -1, [item])
    other = sqlite3.connect(tmp_path / "sessions.sqlite3", timeout=0, isolation_level=None)
    writes_between_batches = []
    sweeper, real_sleep = threading.current_thread(), time.sleep

    def pause(seconds: float) -> None:
        if threading.current_thread() is not sweeper:
            return real_sleep(seconds)  # time.sleep is the process's: other threads sleep
        # Longer than SQLite's busy handler's longest sleep, so a waiter wakes inside it.
        assert seconds > 0.1
        other.execute("BEGIN IMMEDIATE")  # timeout 0: fails if the sweep held the lock
        other.execute("INSERT INTO feed_sessions VALUES (?, 'u2', 0, 1e12, 0)",
                      (f"w{len(writes_between_batches)}",))
        other.execute("COMMIT")
        writes_between_batches.append(seconds)

    monkeypatch.setattr(feed_sessions.time, "sleep", pause)
    try:
        assert store.sweep() == 5
    finally:
        other.close()
        store.close()
    assert len(writes_between_batches) == 2  # after the two full batches, not the last


def test_a_sessions_file_of_the_old_layout_is_replaced_on_open(tmp_path):
    """Layout 1 kept a row per placed poll; sessions are soft state, so the upgrade drops
    them (their clients start a new feed) rather than failing on the old tables."""
    import sqlite3

    from recsys.feed_sessions import SCHEMA_VERSION
    from recsys.mixer import FeedItem

    path = tmp_path / "sessions.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE feed_sessions (session_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, "
        "created_at REAL NOT NULL, expires_at REAL NOT NULL);"
        "CREATE TABLE feed_session_items (session_id TEXT NOT NULL, position INTEGER NOT NULL,"
        " item_id TEXT NOT NULL, source TEXT NOT NULL, score REAL NOT NULL, rank INTEGER NOT "
        "NULL, recommendation_id TEXT NOT NULL, promotion_name TEXT, "
        "PRIMARY KEY (session_id, position));"
        "INSERT INTO feed_sessions VALUES ('old', 'u1', 0, 1e12);"
        "INSERT INTO feed_session_items VALUES ('old', 0, 'p1', 'trending-now', 1, 1, 'r', NULL);")
    old.close()
    store = SQLiteFeedSessionStore(path)
    try:
        assert store.snapshot("old") is None
        items = [FeedItem("p-é🙂", "user-personalization", float("inf"), 1, "r1"),
                 FeedItem("p2", "promotion", 0.5, 2, "r1", "spring")]
        session, _ = store.create("u1", 60, items[:1])
        assert store.extend(session, 1, items[1:])
        assert not store.extend(session, 1, items[1:])  # first writer wins
        assert store.snapshot(session).items == items
        assert store.items(session, 1, 1) == items[1:]
        assert store.placed_ids(session) == {"p-é🙂", "p2"}
        tables = {r[0] for r in store._conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "feed_session_items" not in tables
        assert store._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        store.close()
    reopened = SQLiteFeedSessionStore(path)  # a second open keeps the sessions
    try:
        assert reopened.snapshot(session).items == items
    finally:
        reopened.close()
