"""Cursors forged with a known secret (the development default is public): a position
must be an int between 0 and what the session holds, every field of its type; anything
else is INVALID_CURSOR, answered at once, and leaves the session as it was."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest

from gateway.settings import Settings
from recsys.feed import MAX_PAGE_SIZE, FeedService
from recsys.feed_sessions import (
    Cursor,
    CursorSigner,
    InMemoryFeedSessionStore,
    InvalidCursor,
    SQLiteFeedSessionStore,
)
from recsys.mixer import Mixer
from tests.recsys.test_feed import sources

DEV_SECRET = Settings.model_fields["cursor_secret"].default


class BoundedMixer(Mixer):
    """Refuses to mix more than a page: the old code, handed p=10**9, asked for 10**9
    polls and allocated ~8 GB; here that fails the test at once instead."""

    asked: list[int]

    def mix(self, request):
        self.asked.append(request.first)
        assert request.first <= MAX_PAGE_SIZE, f"asked to mix {request.first} polls"
        return super().mix(request)


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    if request.param == "memory":
        yield InMemoryFeedSessionStore()
    else:
        sqlite_store = SQLiteFeedSessionStore(tmp_path / "sessions.sqlite3")
        yield sqlite_store
        sqlite_store.close()


@pytest.fixture
def feed(store):
    mixer = BoundedMixer(sources())
    mixer.asked = []
    return FeedService(mixer, store, CursorSigner(DEV_SECRET))


def sign_json(fields) -> str:
    """A cursor over any JSON (or JSON text), signed as CursorSigner signs: what anyone
    who knows the secret can do."""
    text = fields if isinstance(fields, str) else json.dumps(fields)
    payload = base64.urlsafe_b64encode(text.encode()).rstrip(b"=")
    signature = base64.urlsafe_b64encode(
        hmac.digest(DEV_SECRET.encode(), payload, hashlib.sha256)).rstrip(b"=")
    return (payload + b"." + signature).decode()


def fields_of(cursor: str) -> dict:
    payload = cursor.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def at(page, position: int) -> str:
    """The page's session at ``position``, signed with the module's own encoder."""
    real = CursorSigner(DEV_SECRET).decode(page.end_cursor, "u1")
    return CursorSigner(DEV_SECRET).encode(
        Cursor(real.session_id, real.user_id, position, real.expires_at))


def held(store, page) -> int:
    return len(store.snapshot(page.session_id).items)


@pytest.mark.parametrize("position", [10**9, 150, 11, -1, -5, -1000])
def test_a_position_outside_the_session_is_refused_and_changes_nothing(feed, store,
                                                                       position):
    page = feed.page("u1", 10)
    asked = list(feed.mixer.asked)
    started = time.perf_counter()
    with pytest.raises(InvalidCursor, match="without `after`"):
        feed.page("u1", 3, at(page, position))
    assert time.perf_counter() - started < 1.0
    assert feed.mixer.asked == asked  # nothing mixed
    assert held(store, page) == 10  # nothing appended


def test_the_sessions_end_and_every_position_before_it_still_page(feed, store):
    page = feed.page("u1", 10)
    placed = [i.item_id for i in store.snapshot(page.session_id).items]
    for position in range(11):
        resumed = feed.page("u1", 3, at(page, position))
        kept = min(3, 10 - position)  # replayed from the session; the rest mixed anew
        assert len(resumed.items) == 3
        assert [i.item_id for i in resumed.items][:kept] == placed[position:position + kept]
    assert at(page, 10) == page.end_cursor  # the end is what the server handed out


def test_a_session_walked_page_by_page_and_past_its_end(store):
    # 30 polls in all: three pages, then an empty last page with no next page
    mixer = BoundedMixer(sources(n_up=30, n_tr=0, n_pop=0, overlap=False))
    mixer.asked = []
    feed = FeedService(mixer, store, CursorSigner(DEV_SECRET))
    seen, after, pages = [], None, []
    for _ in range(5):
        page = feed.page("u1", 12, after)
        pages.append(page)
        seen += [i.item_id for i in page.items]
        assert page.end_cursor == at(page, len(seen))  # the end cursor is the session's end
        if not page.has_next_page:
            break
        after = page.end_cursor
    assert [len(p.items) for p in pages] == [12, 12, 6]
    assert len(seen) == len(set(seen)) == 30
    # past the end: the same end cursor again is an empty page, still no next page
    again = feed.page("u1", 12, pages[-1].end_cursor)
    assert again.items == [] and not again.has_next_page
    with pytest.raises(InvalidCursor):
        feed.page("u1", 12, at(page, 31))


@pytest.mark.parametrize("change", [
    {"p": "3"}, {"p": 3.0}, {"p": 2.5}, {"p": True}, {"p": None}, {"p": [3]},
    {"s": None}, {"s": 7}, {"u": None}, {"e": "9999999999"}, {"e": None}, {"e": True},
    {"e": float("nan")}, {"e": float("inf")}, {"e": 10**400},
])
def test_a_field_of_the_wrong_type_is_malformed(feed, change):
    page = feed.page("u1", 10)
    fields = {**fields_of(page.end_cursor), **change}
    with pytest.raises(InvalidCursor, match="malformed"):
        feed.page("u1", 3, sign_json(fields))


@pytest.mark.parametrize("key", ["s", "u", "p", "e"])
def test_a_missing_field_is_malformed(feed, key):
    fields = fields_of(feed.page("u1", 10).end_cursor)
    del fields[key]
    with pytest.raises(InvalidCursor, match="malformed"):
        feed.page("u1", 3, sign_json(fields))


@pytest.mark.parametrize("text", ["[1, 2]", '"p"', "3", "null", "{",
                                  '{"p": 1%s}' % ("0" * 5000)])  # past int()'s digits
def test_a_payload_that_is_no_cursor_object_is_malformed(feed, text):
    with pytest.raises(InvalidCursor, match="malformed"):
        feed.page("u1", 3, sign_json(text))


def test_a_cursor_naming_another_users_session_is_refused(feed):
    """With the secret, a cursor can carry the caller's user id and a session id of
    someone else's feed: the session's owner decides, not the cursor's claim."""
    victim = feed.page("u1", first=5)
    session = CursorSigner(DEV_SECRET).decode(victim.end_cursor, "u1").session_id
    forged = CursorSigner(DEV_SECRET).encode(Cursor(session, "intruder", 5,
                                                    time.time() + 600))
    with pytest.raises(InvalidCursor, match="another user's feed"):
        feed.page("intruder", first=5, after=forged)
    assert len(feed.sessions.snapshot(session).items) == 5  # nothing read or added
    assert feed.sessions.snapshot(session).user_id == "u1"
    assert len(feed.page("u1", first=5, after=victim.end_cursor).items) == 5
