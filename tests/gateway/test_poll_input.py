"""What a hostile client could write through the mutations (a probe of the running
server): empty or over-long categories that `hunch data import` then refused, poll ids
with '|' that were served but could never be reported seen, ids with whitespace or NUL,
following yourself as "u1 ", and an author re-dating an old poll to now. Real Services
on a real SQLite file, over ASGI."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

from gateway.auth import issue_token
from gateway.cli import cli
from recsys.events import EventStore
from tests.gateway.test_app import T0, gql, serve, settings  # noqa: F401 - the fixture

UPSERT = """mutation($input: PollInput!) { upsertPoll(input: $input) {
  __typename ... on InvalidInputError { message } ... on Poll { id question createdAt } } }"""
FOLLOW = """mutation($u: ID!) {
  follow(userId: $u) { __typename ... on InvalidInputError { message } }
  unfollow(userId: $u) { __typename ... on InvalidInputError { message } } }"""
INTERACTION = """mutation($i: InteractionInput!) { recordInteraction(input: $i) {
  __typename ... on InvalidInputError { message } } }"""
IMPRESSIONS = """mutation($p: [ID!]!, $r: String) { recordImpressions(pollIds: $p,
  recommendationId: $r) { __typename ... on InvalidInputError { message } } }"""

# Ids no mutation may take, and the words its refusal must say.
BAD_IDS = [("probe|pipe", "'|'"), ("   ", "whitespace"), ("u1 ", "whitespace"),
           (" u1", "whitespace"), ("probe\x00nul", "U+0000"), ("esc\x1b[2J", "U+001B"),
           ("c1\x9b", "U+009B"), ("", "non-empty"), ("p" * 257, "too long")]


def _upsert(client, settings, user="a1", admin=False, **poll):  # noqa: F811
    token = issue_token(settings, user, admin=admin)
    return client.post("/graphql", json={"query": UPSERT, "variables": {"input": poll}},
                       headers={"Authorization": f"Bearer {token}"})


def _stored(settings, poll_id):  # noqa: F811
    with EventStore(settings.events_db) as store:
        return store.get_item(poll_id)


def _refused(body: dict, field: str, says: str) -> None:
    result = body["data"][field]
    assert result["__typename"] == "InvalidInputError", body
    assert says in result["message"], body
    assert len(result["message"]) < 500  # the input is echoed cut short


@pytest.mark.parametrize("categories, says", [
    ([""], "categories[0] is empty"),
    (["news", ""], "categories[1] is empty"),
    (["A|B", "C"], "'|'"),
    ([" news"], "whitespace"),
    (["news\x00"], "U+0000"),
    ([f"C{i}" for i in range(2000)], "at most 1000"),  # the import's own limit
])
def test_upsert_poll_refuses_categories_the_import_would_refuse(settings, categories,  # noqa: F811
                                                                says):
    async def scenario(client):
        body = (await _upsert(client, settings, id="probe", categories=categories)).json()
        _refused(body, "upsertPoll", says)

    serve(settings, scenario)
    assert _stored(settings, "probe") is None


@pytest.mark.parametrize("bad, says", BAD_IDS)
def test_every_mutation_refuses_the_same_bad_ids(settings, bad, says):  # noqa: F811
    async def scenario(client):
        for poll in ({"id": bad, "categories": ["X"]},
                     {"id": "fine", "categories": ["X"], "authorId": bad}):
            _refused((await _upsert(client, settings, **poll)).json(), "upsertPoll", says)
        body = (await gql(client, settings, FOLLOW, {"u": bad})).json()
        _refused(body, "follow", says)
        _refused(body, "unfollow", says)
        for interaction in ({"pollId": bad}, {"pollId": "p1", "impression": ["p2", bad]},
                            {"pollId": "p1", "eventId": bad},
                            {"pollId": "p1", "recommendationId": bad}):
            body = (await gql(client, settings, INTERACTION, {"i": interaction})).json()
            _refused(body, "recordInteraction", says)
        for variables in ({"p": ["p1", bad]}, {"p": ["p1"], "r": bad}):
            body = (await gql(client, settings, IMPRESSIONS, variables)).json()
            _refused(body, "recordImpressions", says)
        # Good ids still pass everywhere.
        body = (await gql(client, settings, INTERACTION, {"i": {
            "pollId": "p1", "impression": ["p2"], "eventId": "e-1",
            "recommendationId": "r-1"}})).json()
        assert body["data"]["recordInteraction"]["__typename"] == "Recorded", body
        body = (await gql(client, settings, IMPRESSIONS, {"p": ["p1", "p2"]})).json()
        assert body["data"]["recordImpressions"]["__typename"] == "Recorded", body

    serve(settings, scenario)
    with EventStore(settings.events_db) as store:
        assert [i["ITEM_ID"] for i in store.items() if not i["ITEM_ID"].startswith("p")] == []
        assert [e.event_id for e in store.interactions()] == ["e-1"]


def test_a_user_cannot_follow_themselves_with_a_trailing_space(settings):  # noqa: F811
    async def scenario(client):
        body = (await gql(client, settings, FOLLOW, {"u": "u0001 "}, user="u0001")).json()
        _refused(body, "follow", "whitespace")

    serve(settings, scenario)


def test_poll_text_refuses_control_characters_and_folds_newlines(settings):  # noqa: F811
    async def scenario(client):
        for field in ("question", "options", "description", "optionDescriptions",
                      "comments"):
            body = (await _upsert(client, settings, id="t", categories=["X"],
                                  **{field: "why\x00?"})).json()
            _refused(body, "upsertPoll", f"{field} 'why\\x00?' contains the control")
        body = (await _upsert(client, settings, id="t", categories=["X"],
                              question="line one\nline\ttwo\r\n")).json()
        assert body["data"]["upsertPoll"]["question"] == "line one line two", body

    serve(settings, scenario)


def test_an_existing_poll_cannot_be_re_dated(settings):  # noqa: F811
    """A poll's age drives its rank: an author who re-dated an old poll to now on every
    edit kept it "newest" for ever. createdAt is set once, when the poll is created."""
    now = int(time.time())

    async def scenario(client):
        for user, admin in (("a1", False), ("tools", True)):
            body = (await _upsert(client, settings, user, admin, id="p1", categories=["X"],
                                  createdAt=now)).json()
            _refused(body, "upsertPoll", f"created at {T0}; createdAt cannot change")
        body = (await _upsert(client, settings, id="new", categories=["X"],
                              createdAt=now - 60)).json()
        assert body["data"]["upsertPoll"]["createdAt"] == now - 60, body
        # Sending the stored value again (a client that sends the whole poll) is fine.
        body = (await _upsert(client, settings, id="new", categories=["Y"],
                              createdAt=now - 60)).json()
        assert body["data"]["upsertPoll"]["createdAt"] == now - 60, body
        body = (await _upsert(client, settings, id="new", categories=["Y"],
                              createdAt=now)).json()
        _refused(body, "upsertPoll", "createdAt cannot change")

    serve(settings, scenario)
    assert _stored(settings, "p1")["CREATION_TIMESTAMP"] == T0
    assert _stored(settings, "p1")["CATEGORY"] == "sports|news"
    assert _stored(settings, "new")["CREATION_TIMESTAMP"] == now - 60


def test_what_upsert_poll_stores_survives_hunch_data_export_and_import(settings,  # noqa: F811
                                                                       tmp_path):
    async def scenario(client):
        # The probe's polls (refused now; stored before, and then the import failed) ...
        for poll in ({"id": "empty", "categories": [""]},
                     {"id": "long", "categories": [f"C{i}" for i in range(2000)]},
                     {"id": "probe|pipe", "categories": ["X"]}):
            await _upsert(client, settings, **poll)
        # ... and polls as long and odd as may be stored.
        for poll in ({"id": "q" * 256, "categories": ["C" * 1000]},
                     {"id": "odd", "categories": ["Science & Tech", "é,\"x\""],
                      "question": "two\nlines, \"quoted\"", "description": "<b>x</b>" * 5000},
                     {"id": "many", "categories": [f"C{i}" for i in range(200)]}):
            body = (await _upsert(client, settings, **poll)).json()
            assert body["data"]["upsertPoll"]["__typename"] == "Poll", body

    serve(settings, scenario)
    runner = CliRunner()
    out = tmp_path / "exported"
    exported = runner.invoke(cli, ["data", "export", str(out)],
                             env={"HUNCH_HOME": str(settings.home)})
    assert exported.exit_code == 0, exported.output
    imported = runner.invoke(cli, ["data", "import", str(out)],
                             env={"HUNCH_HOME": str(tmp_path / "elsewhere")})
    assert imported.exit_code == 0, imported.output
    with EventStore(settings.events_db) as store:
        before = {i["ITEM_ID"]: i for i in store.items()}
    with EventStore(tmp_path / "elsewhere" / "events.sqlite3") as store:
        assert {i["ITEM_ID"]: i for i in store.items()} == before
    assert len(before) == 33
