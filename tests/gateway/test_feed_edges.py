"""Relay connections over GraphQL: every edge its own cursor, ``after`` any edge resumes
right after it, and bad cursors keep their typed errors."""

from __future__ import annotations

import time

from tests.gateway.test_app import codes, gql, serve, settings  # noqa: F401 (fixture)

PAGE = """query($first: Int!, $after: String) { feed(first: $first, after: $after) {
  pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  edges { cursor node { id } } } }"""


async def page(client, settings, after=None, first=5, user="reader"):  # noqa: F811
    body = (await gql(client, settings, PAGE, {"first": first, "after": after}, user)).json()
    assert "errors" not in body, body
    feed = body["data"]["feed"]
    return [e["cursor"] for e in feed["edges"]], [e["node"]["id"] for e in feed["edges"]], \
        feed["pageInfo"]


def test_each_edge_has_its_own_cursor_and_resumes_right_after_it(settings):  # noqa: F811
    async def scenario(client):
        cursors, first_ids, info = await page(client, settings)
        assert len(set(cursors)) == len(cursors) == 5
        assert (info["startCursor"], info["endCursor"]) == (cursors[0], cursors[-1])
        assert info["hasPreviousPage"] is False and info["hasNextPage"] is True
        # after edge 2 of page 1: the rest of page 1, then polls not served yet
        mid_cursors, mid_ids, mid_info = await page(client, settings, cursors[2])
        assert mid_ids[:2] == first_ids[3:]
        assert not set(mid_ids[2:]) & set(first_ids) and len(set(mid_ids)) == 5
        assert mid_info["hasPreviousPage"] is True
        # the replayed edges carry the cursors they had on page 1
        assert mid_cursors[:2] == cursors[3:]
        # after page 1's end: continues that same session, no repeat, no hole
        _, next_ids, _ = await page(client, settings, cursors[-1])
        assert next_ids[:3] == mid_ids[2:] and len(set(first_ids + next_ids)) == 10

    serve(settings, scenario)


def test_an_id_only_query_still_pages_by_end_cursor(settings):  # noqa: F811
    """Edge cursors are signed only when asked for; endCursor alone still pages."""
    query = """query($after: String) { feed(first: 5, after: $after) {
      pageInfo { endCursor } edges { node { id } } } }"""

    async def scenario(client):
        seen, after = [], None
        for _ in range(3):
            feed = (await gql(client, settings, query, {"after": after})).json()["data"]["feed"]
            seen += [e["node"]["id"] for e in feed["edges"]]
            after = feed["pageInfo"]["endCursor"]
        assert len(seen) == len(set(seen)) == 15

    serve(settings, scenario)


def test_bad_edge_cursors_keep_their_typed_errors(settings):  # noqa: F811
    settings.session_ttl_seconds = 1.0

    async def scenario(client):
        cursors, _, _ = await page(client, settings)
        payload, signature = cursors[1].split(".")
        tampered = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
        for after, user in [(tampered + "." + signature, "reader"), (cursors[1], "someone")]:
            body = (await gql(client, settings, PAGE, {"first": 5, "after": after}, user)).json()
            assert codes(body) == ["INVALID_CURSOR"], body
        time.sleep(1.2)  # past the session's time to live
        body = (await gql(client, settings, PAGE, {"first": 5, "after": cursors[1]})).json()
        assert codes(body) == ["CURSOR_EXPIRED"], body

    serve(settings, scenario)
