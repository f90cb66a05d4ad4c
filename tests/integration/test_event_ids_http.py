"""Event identity over real HTTP, against uvicorn in a subprocess that opens a store file
an older release wrote (and migrates it): client event ids are per user, a user's retry
is still ignored, a poll repeated in one impression batch counts once, and every event
of the old file is still there."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from recsys.events import SCHEMA_VERSION, EventStore, Impression
from tests.integration.conftest import Server, token
from tests.recsys.test_events import OLD_EVENTS, write_old_event_file

POLLS = ["p0001", "p0002", "p0003"]
INTERACTION = """mutation($input: InteractionInput!) { recordInteraction(input: $input) {
  __typename ... on Recorded { stored eventId } ... on InvalidInputError { message } } }"""
IMPRESSIONS = """mutation($ids: [ID!]!) { recordImpressions(pollIds: $ids) {
  __typename ... on Recorded { stored eventId } ... on InvalidInputError { message } } }"""


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("event-ids-home")
    write_old_event_file(home / "events.sqlite3")  # holds u0002's "client-evt-42"
    raw = sqlite3.connect(home / "events.sqlite3")
    raw.executemany("INSERT OR IGNORE INTO items (item_id, fields) VALUES (?, ?)",
                    [(p, '{"CATEGORY":"news","AUTHOR_ID":"a1"}') for p in POLLS])
    raw.commit()
    raw.close()
    return home


@pytest.fixture(scope="module")
def server(home):
    srv = Server(home).start()
    yield srv
    srv.stop()


def record(server: Server, user: str, **fields) -> dict:
    body = server.gql(INTERACTION, {"input": fields}, token(user)).json()
    assert "errors" not in body, body
    return body["data"]["recordInteraction"]


def events_of(home: Path, user: str) -> list:
    with EventStore(home / "events.sqlite3") as store:
        return [e for _, e in store.events_since(0) if e.user_id == user]


def test_the_old_files_events_are_all_kept(server, home):
    with EventStore(home / "events.sqlite3") as store:
        assert store.events_since(0)[:len(OLD_EVENTS)] == OLD_EVENTS
    raw = sqlite3.connect(home / "events.sqlite3")
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    raw.close()


def test_two_users_may_send_the_same_client_event_id(server, home):
    # the probe's case: u0002 sent "client-evt-42" (stored in the old file), then u0003
    assert record(server, "u0003", pollId="p0003", eventId="client-evt-42",
                  eventType="COMMENT") == {
        "__typename": "Recorded", "stored": True, "eventId": "client-evt-42"}
    assert [(e.item_id, e.event_type) for e in events_of(home, "u0003")
            if e.event_id == "client-evt-42"] == [("p0003", "COMMENT")]
    # and a fresh id, sent by two users in turn
    for user, poll in (("u0010", "p0001"), ("u0011", "p0002")):
        assert record(server, user, pollId=poll, eventId="client-evt-7")["stored"] is True
        assert [e.item_id for e in events_of(home, user)] == [poll]


def test_the_same_user_repeating_an_event_id_is_still_deduplicated(server, home):
    first = record(server, "u0020", pollId="p0001", eventId="retry-1")
    again = record(server, "u0020", pollId="p0002", eventId="retry-1")  # a retry
    assert (first["stored"], again["stored"]) == (True, False)
    assert [e.item_id for e in events_of(home, "u0020")] == ["p0001"]
    # the old file's own id, retried by its sender
    assert record(server, "u0002", pollId="p0002", eventId="client-evt-42")["stored"] is False


def test_a_poll_repeated_in_one_impression_batch_is_stored_once(server, home):
    with EventStore(home / "events.sqlite3") as store:
        before = store.impression_counts()
    body = server.gql(IMPRESSIONS, {"ids": ["p0001"] * 5 + ["p0003", "p0001"]},
                      token("u0030")).json()
    assert body["data"]["recordImpressions"]["__typename"] == "Recorded", body
    [event] = events_of(home, "u0030")
    assert isinstance(event, Impression) and event.item_ids == ("p0001", "p0003")
    with EventStore(home / "events.sqlite3") as store:
        after = store.impression_counts()
    assert {p: after.get(p, 0) - before.get(p, 0) for p in POLLS} == {
        "p0001": 1, "p0002": 0, "p0003": 1}


def test_one_account_voting_again_and_again_on_a_poll_is_counted_once(server, home):
    """The attack: each request valid (a new event id every time), 30 votes by one
    account on one poll. The first is stored; the rest answer stored: false and leave
    nothing behind, however the type is spelled. Comments may repeat."""
    answers = [record(server, "u0040", pollId="p0002", eventType=spelling)
               for spelling in ["HUNCH"] * 20 + ["hunch", " Hunch "] * 5]
    assert [a["stored"] for a in answers] == [True] + [False] * 29
    assert all(a["__typename"] == "Recorded" for a in answers)
    for _ in range(3):
        assert record(server, "u0040", pollId="p0002", eventType="COMMENT")["stored"] is True
    mine = [(e.item_id, e.event_type) for e in events_of(home, "u0040")]
    assert mine == [("p0002", "HUNCH")] + [("p0002", "COMMENT")] * 3
    # another account's vote on the poll still counts
    assert record(server, "u0041", pollId="p0002", eventType="HUNCH")["stored"] is True
