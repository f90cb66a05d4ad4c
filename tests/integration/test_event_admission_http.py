"""Event admission over real HTTP (issue 13, items 2 and 6), against uvicorn in a
subprocess: every hostile event gets a typed answer (InvalidInputError or
UnknownPollError), never INTERNAL_SERVER_ERROR or a 5xx, never a huge echo, and nothing
of a refused request is stored."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from recsys.events import EventStore
from tests.integration.conftest import Server, token

POLLS = ["p1", "p2", "p3"]
YEAR_2100 = 4_102_444_800.0
DAY = 24 * 3600

INTERACTION = """mutation($input: InteractionInput!) { recordInteraction(input: $input) {
  __typename ... on Recorded { stored eventId } ... on InvalidInputError { message }
  ... on UnknownPollError { message pollId } } }"""
IMPRESSIONS = """mutation($ids: [ID!]!, $rec: String, $at: Float) {
  recordImpressions(pollIds: $ids, recommendationId: $rec, at: $at) {
  __typename ... on Recorded { stored eventId } ... on InvalidInputError { message }
  ... on UnknownPollError { message pollId } } }"""


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("admission-home")
    with EventStore(home / "events.sqlite3") as store:
        store.upsert_items([{"ITEM_ID": p, "CATEGORY": "news", "AUTHOR_ID": "a1"}
                            for p in POLLS])
    return home


@pytest.fixture(scope="module")
def server(home):
    srv = Server(home).start()
    yield srv
    srv.stop()


def stored(home: Path) -> dict[str, int]:
    with EventStore(home / "events.sqlite3") as store:
        return store.counts()


def post(server: Server, body: bytes | dict, user: str) -> httpx.Response:
    """POST a body as given (raw bytes keep what json= cannot send, e.g. NaN)."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{server.url}/graphql", content=content, timeout=30, headers={
        "Authorization": f"Bearer {token(user)}", "Content-Type": "application/json"})


def answer(response: httpx.Response, field: str) -> dict:
    """The mutation's result, after checking the response is a clean, typed answer."""
    assert response.status_code == 200, response.text[:500]
    body = response.json()
    assert "errors" not in body, body
    return body["data"][field]


def interaction(**fields) -> dict:
    return {"query": INTERACTION, "variables": {"input": {"pollId": "p1", **fields}}}


NOW = object()  # read when the test runs, not when pytest collects it (a long suite)


@pytest.mark.parametrize("at, offset", [(YEAR_2100, 0), (0.0, 0), (1e19, 0), (-1e18, 0),
                                        (NOW, -8 * DAY), (NOW, 3600)])
def test_interaction_times_outside_the_window_are_refused(server, home, at, offset):
    at = time.time() + offset if at is NOW else at
    before = stored(home)
    result = answer(post(server, interaction(at=at), "time-traveller"), "recordInteraction")
    assert result["__typename"] == "InvalidInputError", result
    assert "at" in result["message"]
    assert stored(home) == before


@pytest.mark.parametrize("at", [YEAR_2100, 0.0, 1e19, -1e18])
def test_impression_times_outside_the_window_are_refused(server, home, at):
    before = stored(home)
    result = answer(post(server, {"query": IMPRESSIONS, "variables": {"ids": ["p1"], "at": at}},
                         "time-traveller-2"), "recordImpressions")
    assert result["__typename"] == "InvalidInputError", result
    assert stored(home) == before


def test_events_at_now_or_a_little_earlier_are_recorded(server, home):
    before = stored(home)
    for at in (None, time.time() - 3600, time.time() - 6 * DAY):
        result = answer(post(server, interaction(at=at, eventType="COMMENT"), "honest"),
                        "recordInteraction")
        assert result["__typename"] == "Recorded", result
    result = answer(post(server, {"query": IMPRESSIONS, "variables": {"ids": POLLS}}, "honest"),
                    "recordImpressions")
    assert result["__typename"] == "Recorded", result
    after = stored(home)
    assert after["interactions"] == before["interactions"] + 3
    assert after["impressions"] == before["impressions"] + 1


def test_unknown_event_types_are_refused(server, home):
    before = stored(home)
    result = answer(post(server, interaction(eventType="DEFACE"), "typo"), "recordInteraction")
    assert result["__typename"] == "InvalidInputError"
    assert "HUNCH" in result["message"] and "COMMENT" in result["message"]
    assert stored(home) == before


@pytest.mark.parametrize("value", [b"1e308", b"-1e308", b"NaN", b"Infinity", b"1e39"])
def test_event_values_must_be_finite_and_bounded(server, home, value):
    before = stored(home)
    body = (b'{"query": ' + json.dumps(INTERACTION).encode()
            + b', "variables": {"input": {"pollId": "p1", "eventValue": ' + value + b"}}}")
    response = post(server, body, "inflator")
    assert response.status_code < 500
    payload = response.json()
    codes = [e.get("extensions", {}).get("code") for e in payload.get("errors", [])]
    assert "INTERNAL_SERVER_ERROR" not in codes, payload
    if not codes:  # graphql-core lets it through as a Float: then admission refuses it
        assert payload["data"]["recordInteraction"]["__typename"] == "InvalidInputError"
    assert stored(home) == before


def test_impressions_of_unknown_polls_are_refused_like_interactions(server, home):
    before = stored(home)
    result = answer(post(server, {"query": IMPRESSIONS,
                                  "variables": {"ids": ["p1", "no-such-poll", "p2", "gone"]}},
                         "phantom"), "recordImpressions")
    assert result["__typename"] == "UnknownPollError", result
    assert result["pollId"] == "no-such-poll" and "1 more" in result["message"]
    interaction_result = answer(post(server, interaction(pollId="no-such-poll"), "phantom"),
                                "recordInteraction")
    assert interaction_result["__typename"] == "UnknownPollError"
    # the explicit impression list of an interaction is held to the same rule
    listed = answer(post(server, interaction(impression=["p2", "no-such-poll"]), "phantom"),
                    "recordInteraction")
    assert listed["__typename"] == "UnknownPollError"
    assert stored(home) == before


@pytest.mark.parametrize("request_body, field", [
    (interaction(recommendationId="rec-\ud800"), "recordInteraction"),
    (interaction(eventType="HUNCH\ud800"), "recordInteraction"),
    (interaction(pollId="p\ud800"), "recordInteraction"),
    (interaction(impression=["\udfff"]), "recordInteraction"),
    ({"query": IMPRESSIONS, "variables": {"ids": ["p1"], "rec": "\ud800"}}, "recordImpressions"),
    ({"query": IMPRESSIONS, "variables": {"ids": ["\ud800"]}}, "recordImpressions"),
])
def test_lone_surrogates_are_refused_before_graphql_runs(server, home, request_body, field):
    before = stored(home)
    # json.dumps writes the surrogate as the escape \ud800, as a client would send it;
    # the gateway refuses the body (gateway/app.py decode_request_json) with a
    # GraphQL-shaped 400 naming where it sits; recsys/admission.py is the store's guard.
    response = post(server, request_body, "surrogate")
    assert response.status_code == 400, response.text[:500]
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert "request.variables" in error["message"] and "surrogate" in error["message"]
    assert stored(home) == before


@pytest.mark.parametrize("request_body, field", [
    (interaction(pollId="x" * 60_000), "recordInteraction"),
    ({"query": IMPRESSIONS, "variables": {"ids": ["x" * 60_000]}}, "recordImpressions"),
    (interaction(recommendationId="r" * 60_000), "recordInteraction"),
])
def test_a_60_kb_id_is_not_echoed_back(server, home, request_body, field):
    before = stored(home)
    response = post(server, request_body, "echo")
    assert len(response.content) < 2_000, len(response.content)
    result = answer(response, field)
    assert result["__typename"] == "InvalidInputError", result
    assert "too long" in result["message"]
    assert stored(home) == before
