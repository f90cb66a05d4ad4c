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
  __typename ... on InvalidInputError { message } ... on Recorded { eventId stored } } }"""
IMPRESSIONS = """mutation($p: [ID!]!, $r: String) { recordImpressions(pollIds: $p,
  recommendationId: $r) { __typename ... on InvalidInputError { message } } }"""

# Ids no mutation may take, and the words its refusal must say.
BAD_IDS = [("probe|pipe", "'|'"), ("   ", "whitespace"), ("u1 ", "whitespace"),
           (" u1", "whitespace"), ("probe\x00nul", "U+0000"), ("esc\x1b[2J", "U+001B"),
           ("c1\x9b", "U+009B"), ("", "non-empty"), ("p" * 257, "too long"),
           ("evil\u202egpj.exe", "U+202E"), ("zero\u200bwidth", "U+200B"),
           ("bom\ufeff", "U+FEFF"), ("line\u2028sep", "U+2028")]


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
    """New ids (a poll created, event and recommendation ids) follow one rule; user ids
    the same but for '|' (sign-in providers issue "google-oauth2|..."); ids of polls
    are looked up in the catalog, which a bad one is never in: refused either way."""
    user_id_ok = bad == "probe|pipe"

    async def scenario(client):
        _refused((await _upsert(client, settings, id=bad, categories=["X"])).json(),
                 "upsertPoll", says)
        if not user_id_ok:
            _refused((await _upsert(client, settings, id="fine", categories=["X"],
                                    authorId=bad)).json(), "upsertPoll", says)
            body = (await gql(client, settings, FOLLOW, {"u": bad})).json()
            _refused(body, "follow", says)
            _refused(body, "unfollow", says)
        if not user_id_ok:  # event and recommendation ids follow the user-id rule
            for interaction in ({"pollId": "p1", "eventId": bad},
                                {"pollId": "p1", "recommendationId": bad}):
                if interaction.get("eventId") == "":
                    continue  # no id: one is generated (the last test)
                body = (await gql(client, settings, INTERACTION, {"i": interaction})).json()
                _refused(body, "recordInteraction", says)
            body = (await gql(client, settings, IMPRESSIONS, {"p": ["p1"], "r": bad})).json()
            _refused(body, "recordImpressions", says)
        for interaction in ({"pollId": bad}, {"pollId": "p1", "impression": ["p2", bad]}):
            body = (await gql(client, settings, INTERACTION, {"i": interaction})).json()
            assert body["data"]["recordInteraction"]["__typename"] in (
                "InvalidInputError", "UnknownPollError"), body
        body = (await gql(client, settings, IMPRESSIONS, {"p": ["p1", bad]})).json()
        assert body["data"]["recordImpressions"]["__typename"] in (
            "InvalidInputError", "UnknownPollError"), body
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


def test_sign_in_providers_user_ids_with_a_bar_can_be_followed_and_author(settings):  # noqa: F811
    """Auth0 issues "google-oauth2|1093..." as a token's sub: that user signs in, so they
    must be followable and may name themselves as a poll's author (review of 259de43)."""
    provider_id = "google-oauth2|109378432"

    async def scenario(client):
        for user_id in (provider_id, "Zoë", "李雷", "\U0001F469\u200d\U0001F4BB-dev",
                        "alice@example.com", "two words",
                        "مهسا\u200cرضایی",  # Persian's zero-width non-joiner
                        "שלום\u200f",  # a right-to-left mark
                        "\U0001F3F4\U000E0067\U000E0062\U000E0073\U000E0063\U000E0074"
                        "\U000E007F",  # the Scotland flag: tag characters
                        "co\u00adop"):  # a soft hyphen
            body = (await gql(client, settings, FOLLOW, {"u": user_id})).json()
            assert body["data"]["follow"]["__typename"] == "FollowChanged", body
            assert body["data"]["unfollow"]["__typename"] == "FollowChanged", body
        body = (await _upsert(client, settings, user=provider_id, id="by-provider-user",
                              categories=["X"], authorId=provider_id)).json()
        assert body["data"]["upsertPoll"]["__typename"] == "Poll", body
        # Clients build event and recommendation ids from such user ids.
        body = (await gql(client, settings, INTERACTION, {"i": {
            "pollId": "p1", "eventId": f"{provider_id}:42",
            "recommendationId": "rec|1"}})).json()
        assert body["data"]["recordInteraction"]["__typename"] == "Recorded", body

    serve(settings, scenario)
    assert _stored(settings, "by-provider-user")["AUTHOR_ID"] == provider_id


def test_polls_imported_with_odd_ids_still_take_votes_and_empty_event_id_is_none(
        settings):  # noqa: F811
    """The import keeps ids as the dataset has them ("poll 7 " included): a vote on such
    a poll is judged by the catalog, not refused by the rule for new ids. An empty
    eventId is no id, as before: one is generated."""
    with EventStore(settings.events_db) as store:
        store.upsert_items([{"ITEM_ID": "poll 7 ", "CATEGORY": "X",
                             "CREATION_TIMESTAMP": int(time.time()) - 60}])

    async def scenario(client):
        body = (await gql(client, settings, INTERACTION, {"i": {
            "pollId": "poll 7 ", "impression": ["poll 7 "], "eventId": ""}})).json()
        recorded = body["data"]["recordInteraction"]
        assert recorded["__typename"] == "Recorded" and recorded["stored"], body
        assert recorded["eventId"]  # generated
        body = (await gql(client, settings, IMPRESSIONS, {"p": ["poll 7 "]})).json()
        assert body["data"]["recordImpressions"]["__typename"] == "Recorded", body

    serve(settings, scenario)


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
                      "question": "two\nlines, \"quoted\"", "description": "<b>x</b>" * 1000},  # 1,999 characters once cleaned
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


def test_a_stored_time_an_int_cannot_carry_is_null_not_an_error(settings):  # noqa: F811
    """Older releases imported CREATION_TIMESTAMP in milliseconds or far in the future
    (the import refuses them now): `createdAt` failed with "Int cannot represent non
    32-bit signed integer value", a field error that fails a page for clients that
    treat any error as failure."""
    with EventStore(settings.events_db) as store:
        store.upsert_items([{"ITEM_ID": "ms", "CATEGORY": "X", "CREATION_TIMESTAMP":
                             1_704_109_165_000},
                            {"ITEM_ID": "fine", "CATEGORY": "X", "CREATION_TIMESTAMP":
                             1_704_109_165}])

    async def scenario(client):
        body = (await gql(client, settings, '{ a: poll(id: "ms") { id createdAt } '
                                             'b: poll(id: "fine") { createdAt } }')).json()
        assert "errors" not in body, body
        assert body["data"] == {"a": {"id": "ms", "createdAt": None},
                                "b": {"createdAt": 1_704_109_165}}

    serve(settings, scenario)


def test_a_category_sent_twice_is_stored_once(settings):  # noqa: F811
    """helper-63: ["a", "a"] was stored as "a|a"."""
    async def scenario(client):
        body = (await _upsert(client, settings, id="dup", categories=["a", "b", "a"])).json()
        assert body["data"]["upsertPoll"]["__typename"] == "Poll", body

    serve(settings, scenario)
    assert _stored(settings, "dup")["CATEGORY"] == "a|b"
