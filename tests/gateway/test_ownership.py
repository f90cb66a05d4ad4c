"""Who may write a poll: upsertPoll creates polls only as the caller and changes a poll
only for its stored author or an internal tool (issue 13: any user could take over any
poll). Real Services on a real SQLite file, over ASGI."""

from __future__ import annotations

import pytest

from gateway.auth import issue_token
from recsys.errors import NotPollAuthor
from recsys.events import EventStore
from tests.gateway.test_app import serve, settings  # noqa: F401 - the fixture

UPSERT = """mutation($input: PollInput!) { upsertPoll(input: $input) {
  __typename ... on Poll { id authorId question categories } } }"""


def _upsert(client, settings, user, admin=False, **poll):  # noqa: F811
    token = issue_token(settings, user, admin=admin)
    return client.post("/graphql", json={"query": UPSERT, "variables": {"input": poll}},
                       headers={"Authorization": f"Bearer {token}"})


def _stored(settings, poll_id):  # noqa: F811
    with EventStore(settings.events_db) as store:
        return store.get_item(poll_id)


def test_another_user_cannot_take_over_a_poll_and_its_author_and_admins_can_edit(
        settings):  # noqa: F811
    before = _stored(settings, "p1")
    assert before["AUTHOR_ID"] == "a1"

    async def scenario(client):
        # The attack of issue 13: user b names itself author of a1's poll.
        for author in ("b", None):
            poll = {"id": "p1", "categories": ["X"], "question": "defaced"}
            if author:
                poll["authorId"] = author
            body = (await _upsert(client, settings, "b", **poll)).json()
            assert body["data"] is None, body
            assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
            assert "another author" in body["errors"][0]["message"]
            assert _stored(settings, "p1") == before
        # Nor may b create a poll in someone else's name.
        body = (await _upsert(client, settings, "b", id="b-fake", categories=["X"],
                              authorId="a1")).json()
        assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
        assert _stored(settings, "b-fake") is None
        # The author edits; the author cannot give the poll away.
        body = (await _upsert(client, settings, "a1", id="p1", categories=["news"],
                              question="edited by its author")).json()
        assert body["data"]["upsertPoll"]["authorId"] == "a1", body
        body = (await _upsert(client, settings, "a1", id="p1", categories=["news"],
                              authorId="b")).json()
        assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
        # An internal tool may edit any poll; the stored author stays when left out.
        body = (await _upsert(client, settings, "tools", admin=True, id="p1",
                              categories=["news"], question="moderated")).json()
        assert body["data"]["upsertPoll"] == {
            "__typename": "Poll", "id": "p1", "authorId": "a1", "question": "moderated",
            "categories": ["news"]}
        # A new poll without authorId is the caller's.
        body = (await _upsert(client, settings, "b", id="b-own", categories=["X"])).json()
        assert body["data"]["upsertPoll"]["authorId"] == "b", body

    serve(settings, scenario)
    assert _stored(settings, "p1")["QUESTION"] == "moderated"
    # edits without createdAt keep the creation time (an edit is not a new poll)
    assert _stored(settings, "p1")["CREATION_TIMESTAMP"] == before["CREATION_TIMESTAMP"]
    assert _stored(settings, "b-own")["CREATION_TIMESTAMP"] > before["CREATION_TIMESTAMP"]
    assert _stored(settings, "b-own")["AUTHOR_ID"] == "b"


def test_the_store_checks_ownership_in_the_write_transaction(tmp_path):
    with EventStore(tmp_path / "events.sqlite3") as store:
        created = store.upsert_item({"ITEM_ID": "p", "CATEGORY": "X"}, acting_user="ann")
        assert created["AUTHOR_ID"] == "ann"
        with pytest.raises(NotPollAuthor):
            store.upsert_item({"ITEM_ID": "p", "QUESTION": "mine now"}, acting_user="bob")
        with pytest.raises(NotPollAuthor):  # a stored poll without author: admins only
            store.upsert_items([{"ITEM_ID": "orphan", "CATEGORY": "X"}])
            store.upsert_item({"ITEM_ID": "orphan", "QUESTION": "?"}, acting_user="bob")
        assert store.get_item("p") == created  # unchanged by the refused write
        edited = store.upsert_item({"ITEM_ID": "p", "QUESTION": "?"}, acting_user="bob",
                                   admin=True)
        assert edited["AUTHOR_ID"] == "ann" and edited["QUESTION"] == "?"


def test_an_author_cannot_post_date_or_back_date_a_poll(settings):  # noqa: F811
    """A poll's age drives its rank (UP's age steps, the in-network source's newest
    first): a post-dated poll would stay "newest" for ever. Authors date polls within the
    live window; internal tools importing history may back-date, never post-date."""
    import time

    async def scenario(client):
        now = int(time.time())
        for created_at in (2_147_483_647, now + 3600, -2_147_483_648, now - 30 * 86400):
            body = (await _upsert(client, settings, "b", id="b-dated", categories=["X"],
                                  createdAt=created_at)).json()
            assert body["data"]["upsertPoll"]["__typename"] == "InvalidInputError", body
            assert _stored(settings, "b-dated") is None
        body = (await _upsert(client, settings, "b", id="b-dated", categories=["X"],
                              createdAt=now - 60)).json()
        assert body["data"]["upsertPoll"]["__typename"] == "Poll", body
        assert _stored(settings, "b-dated")["CREATION_TIMESTAMP"] == now - 60
        # The author cannot re-date it into the future either.
        body = (await _upsert(client, settings, "b", id="b-dated", categories=["X"],
                              createdAt=2_147_483_647)).json()
        assert body["data"]["upsertPoll"]["__typename"] == "InvalidInputError", body
        assert _stored(settings, "b-dated")["CREATION_TIMESTAMP"] == now - 60
        # Internal tools import history (a year back), but nothing from the future.
        for created_at, accepted in ((now - 365 * 86400, True), (2_147_483_647, False)):
            body = (await _upsert(client, settings, "tools", admin=True, id="old",
                                  categories=["X"], authorId="a1",
                                  createdAt=created_at)).json()
            assert (body["data"]["upsertPoll"]["__typename"] == "Poll") is accepted, body

    serve(settings, scenario)


def test_follow_refuses_a_user_id_no_store_can_hold(settings):  # noqa: F811
    token = issue_token(settings, "b")
    query = """mutation($u: ID!) { follow(userId: $u) { __typename
      ... on InvalidInputError { message } } unfollow(userId: $u) { __typename } }"""

    async def scenario(client):
        body = (await client.post("/graphql", json={"query": query,
                                                    "variables": {"u": "x" * 30_000}},
                                  headers={"Authorization": f"Bearer {token}"})).json()
        assert body["data"]["follow"]["__typename"] == "InvalidInputError", body
        assert len(body["data"]["follow"]["message"]) < 500
        assert body["data"]["unfollow"]["__typename"] == "InvalidInputError", body

    serve(settings, scenario)
