"""Relay connections over GraphQL: every edge its own cursor, ``after`` any edge resumes
right after it, and bad cursors keep their typed errors."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import replace

from gateway.settings import Settings
from recsys.feed_sessions import CursorSigner
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


def test_forged_cursors_are_refused_at_once_and_paging_goes_on(settings):  # noqa: F811
    """The development cursor secret is public: a cursor signed with it may point
    anywhere. Past the session's end, or below 0, or of the wrong type, it is
    INVALID_CURSOR (p=10**9 used to allocate ~8 GB and never answer)."""
    settings.environment = "development"
    settings.cursor_secret = Settings.model_fields["cursor_secret"].default
    signer = CursorSigner(settings.cursor_secret)

    def forge(end_cursor: str, **fields) -> str:
        payload = end_cursor.split(".")[0]
        raw = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        forged = base64.urlsafe_b64encode(json.dumps({**raw, **fields}).encode()).rstrip(b"=")
        return (forged + b"." + signer._sign(forged)).decode()

    async def refused(client, after: str) -> None:
        started = time.perf_counter()
        body = (await gql(client, settings, PAGE, {"first": 3, "after": after})).json()
        assert codes(body) == ["INVALID_CURSOR"], body
        assert "without `after`" in body["errors"][0]["message"]
        assert time.perf_counter() - started < 2.0

    async def scenario(client):
        _, first_ids, info = await page(client, settings)  # the session holds 5 polls
        end = info["endCursor"]
        real = signer.decode(end, "reader")
        # 10**6, not 10**9: should this regress, the test fails instead of eating memory
        for position in (10**6, 150, 6, -5, -1000):
            await refused(client, signer.encode(replace(real, position=position)))
        for value in ("5", 5.0, True, None):
            await refused(client, forge(end, p=value))
        await refused(client, forge(end, s=None))
        # the session's end is a cursor the server handed out: it pages on, no repeats,
        # and the walk runs to the end of the 30 polls with hasNextPage false
        assert signer.encode(replace(real, position=5)) == end
        seen, after = list(first_ids), end
        while True:
            _, ids, info = await page(client, settings, after, first=10)
            seen += ids
            after = info["endCursor"]
            if not info["hasNextPage"]:
                break
        assert len(seen) == len(set(seen)) == 30
        _, ids, info = await page(client, settings, after)  # past the end: still fine
        assert ids == [] and info["hasNextPage"] is False and info["endCursor"] == after
        await refused(client, signer.encode(replace(real, position=31)))

    serve(settings, scenario)
