"""Feed sessions in a real Redis server: several hosts share one session."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest

from recsys.feed_sessions import RedisFeedSessionStore, SessionSnapshot
from tests.conftest import require_or_skip
from tests.recsys.test_feed import make_feed


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    binary = shutil.which("redis-server")
    require_or_skip(binary is not None, "redis-server is not installed (scripts/test.sh installs it)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    import redis

    for _ in range(100):
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_fifty_pages_never_repeat(redis_url):
    feed = make_feed(RedisFeedSessionStore(redis_url))
    seen, after = [], None
    for _ in range(50):
        page = feed.page("u1", 20, after)
        seen += [i.item_id for i in page.items]
        after = page.end_cursor
    assert len(seen) == 1000 == len(set(seen))


def test_two_hosts_page_one_session_alternately(redis_url):
    host_a = make_feed(RedisFeedSessionStore(redis_url))
    host_b = make_feed(RedisFeedSessionStore(redis_url))
    seen, after = [], None
    for turn in range(10):
        page = (host_a if turn % 2 == 0 else host_b).page("u7", 9, after)
        seen += [i.item_id for i in page.items]
        after = page.end_cursor
    assert len(seen) == 90 == len(set(seen))


def test_first_writer_wins_and_sessions_expire(redis_url):
    store = RedisFeedSessionStore(redis_url)
    from recsys.mixer import FeedItem

    sid, _ = store.create("u1", ttl_seconds=0.5)
    item = FeedItem("p1", "trending-now", 1.0, 1, "rid")
    assert store.extend(sid, 0, [item]) is True
    assert store.extend(sid, 0, [FeedItem("p2", "trending-now", 1.0, 1, "rid")]) is False
    assert [i.item_id for i in store.items(sid)] == ["p1"]
    time.sleep(0.7)
    assert store.expires_at(sid) is None and store.items(sid) == []


def test_after_any_edge_resumes_right_after_it(redis_url):
    from tests.recsys.test_feed_edge_cursors import check_resume_after_every_edge

    store = RedisFeedSessionStore(redis_url)
    check_resume_after_every_edge(make_feed(store), store, "u9")


def test_extending_a_session_is_one_round_trip_and_keeps_its_expiry(redis_url):
    """A feed page after a cursor reads the session and extends it: the extension asks
    Redis once (it used to read the expiry first, one more round trip per page)."""
    import redis

    from recsys.mixer import FeedItem

    store = RedisFeedSessionStore(redis_url)
    warm, _ = store.create("u0", ttl_seconds=60)
    store.extend(warm, 0, [])  # Redis has the script now
    sid, expires = store.create("u1", ttl_seconds=60)
    sent: list[tuple] = []
    execute = store._redis.execute_command
    store._redis.execute_command = lambda *args, **kw: (sent.append(args), execute(*args, **kw))[1]
    assert store.extend(sid, 0, [FeedItem("p1", "trending-now", 1.0, 1, "rid")]) is True
    assert [args[0] for args in sent] == ["EVALSHA"]
    server = redis.Redis.from_url(redis_url)
    meta, listed = store._keys(sid)
    # The list now expires with the session: its time to live is the meta key's, read
    # after it (both count down together; a few ms for PTTL's rounding inside the script).
    meta_ttl = server.pttl(meta)
    assert 0 < server.pttl(listed) <= meta_ttl + 5 and meta_ttl <= 60_000
    assert store.expires_at(sid) == expires
    assert store.extend("no-such-session", 0, [FeedItem("p2", "trending-now", 1.0, 1, "r")]) \
        is False


def test_every_field_of_a_placed_item_reads_back_as_written(redis_url):
    from recsys.feed_sessions import RedisFeedSessionStore
    from recsys.mixer import FeedItem

    store = RedisFeedSessionStore(redis_url, prefix="fields")
    first = [FeedItem("p1", "trending-now", 0.1 + 0.2, 1, "rid", None),
             FeedItem("sondage-\u00e9t\u00e9-\u2603", "user-personalization", -1e-300, 2, "rid",
                      'spring "sale", \\ 50%')]
    later = [FeedItem("p,3]", "popularity-count", 7.0, 3, "rid2", "")]
    sid, _ = store.create("u1", 60, first)
    assert store.extend(sid, 2, later) is True
    assert store.snapshot(sid).items == first + later
    assert store.items(sid, 1, 2) == first[1:] + later
    assert store.items(sid, 5) == [] and store.snapshot("gone") is None
    store.close()


def test_replies_are_parsed_by_hiredis(redis_url):
    """The C parser is a declared dependency (pyproject.toml): without it redis-py falls
    back, silently, to its Python parser and each feed page costs more CPU."""
    from redis._parsers import _HiredisParser

    from recsys.feed_sessions import RedisFeedSessionStore

    store = RedisFeedSessionStore(redis_url)
    connection = store._redis.connection_pool.get_connection()
    try:
        assert isinstance(connection._parser, _HiredisParser)
    finally:
        store._redis.connection_pool.release(connection)
        store.close()


def test_scores_json_has_no_literal_for_read_back_as_written(redis_url):
    """orjson writes a non-finite score as null and refuses numpy numbers: such items
    are written by the standard library, as before, and read back unchanged."""
    import math

    import numpy as np

    from recsys.mixer import FeedItem

    store = RedisFeedSessionStore(redis_url, prefix="odd-scores")
    odd = [FeedItem("p1", "trending-now", math.nan, 1, "rid"),
           FeedItem("p2", "trending-now", math.inf, 2, "rid"),
           FeedItem("p3", "trending-now", -math.inf, 3, "rid"),
           FeedItem("p4", "trending-now", np.float64(0.1) * 3, 4, "rid"),
           FeedItem("p5", "trending-now", 0.5, 2**70, "rid")]  # an int over 64 bits
    sid, _ = store.create("u1", 60, odd[:2])
    assert store.extend(sid, 2, odd[2:]) is True
    read = store.snapshot(sid).items
    assert math.isnan(read[0].score) and [i.item_id for i in read] == [i.item_id for i in odd]
    assert read[1:] == odd[1:]
    store.close()


def test_placed_items_are_encoded_without_the_standard_librarys_encoder(redis_url, monkeypatch):
    """orjson encodes a page's items (~10x less CPU than json's encoder, see
    feed_sessions._item_json); json's encoder is left for what orjson cannot write."""
    import recsys.feed_sessions as feed_sessions
    from recsys.mixer import FeedItem

    encoded = []
    stdlib = feed_sessions._encode_item
    monkeypatch.setattr(feed_sessions, "_encode_item",
                        lambda value: (encoded.append(value), stdlib(value))[1])
    store = RedisFeedSessionStore(redis_url, prefix="encoder")
    page = [FeedItem(f"p{i}", "user-personalization", 1 / (i + 1), i + 1, "rid")
            for i in range(20)]
    sid, _ = store.create("u1", 60, page[:10])
    assert store.extend(sid, 10, page[10:]) is True
    assert store.snapshot(sid).items == page
    assert encoded == []
    store.close()


def test_reading_a_session_is_one_command(redis_url):
    """A continued page reads the session's expiry and items in one EVALSHA (a
    MULTI/HGET/LRANGE/EXEC transaction before: four commands to build and parse)."""
    from recsys.mixer import FeedItem

    store = RedisFeedSessionStore(redis_url, prefix="snapshot")
    placed = [FeedItem(f"p{i}", "trending-now", 1.0, i + 1, "rid") for i in range(3)]
    sid, expires = store.create("u1", 60, placed)
    empty, empty_expires = store.create("u2", 60)
    store.snapshot("warm")  # Redis has the script now
    sent: list[tuple] = []
    execute = store._redis.execute_command
    store._redis.execute_command = lambda *args, **kw: (sent.append(args), execute(*args, **kw))[1]
    pipeline = store._redis.pipeline
    store._redis.pipeline = lambda *args, **kw: (sent.append(("PIPELINE",)), pipeline(*args, **kw))[1]
    snapshot = store.snapshot(sid)
    assert (snapshot.expires_at, snapshot.items, snapshot.user_id) == (expires, placed, "u1")
    assert [args[0] for args in sent] == ["EVALSHA"]
    assert store.snapshot(empty) == SessionSnapshot(empty_expires, [], "u2")
    assert store.snapshot("gone") is None
    store.close()


def test_a_session_is_read_after_redis_forgot_the_scripts(redis_url):
    """A restarted Redis has no scripts: the first read loads them again."""
    import redis

    from recsys.mixer import FeedItem

    store = RedisFeedSessionStore(redis_url, prefix="flushed")
    sid, _ = store.create("u1", 60, [FeedItem("p1", "trending-now", 1.0, 1, "rid")])
    store.snapshot(sid)
    redis.Redis.from_url(redis_url).script_flush()
    assert [i.item_id for i in store.snapshot(sid).items] == ["p1"]
    assert store.extend(sid, 1, [FeedItem("p2", "trending-now", 1.0, 2, "rid")]) is True
    assert [i.item_id for i in store.snapshot(sid).items] == ["p1", "p2"]
    store.close()
