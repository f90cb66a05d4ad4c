"""The GraphQL app in process (real Services on a small real engine, over ASGI): what
the per-request shortcuts (document cache, poll-record lookahead, per-request
extensions) must not change for a client."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from gateway.app import create_app
from gateway.auth import issue_token
from gateway.settings import Settings
from recsys.artifacts import ArtifactStore
from recsys.events import EventStore, Interaction
from recsys.recipes.base import TrainingData
from recsys.recipes.popularity_count import PopularityCount

T0 = 1_700_000_000
POLLS = [f"p{i}" for i in range(30)]

ID_ONLY = """query($after: String) { feed(first: 5, after: $after) {
  pageInfo { endCursor } edges { source node { id } } } }"""
WITH_FIELDS = "{ feed(first: 5) { edges { node { id question categories } } } }"
WITH_FRAGMENT = """{ feed(first: 5) { edges { node { ...Shown } } } }
fragment Shown on Poll { id question }"""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A home with 30 polls and a popularity model, so the feed has something to serve."""
    s = Settings(home=tmp_path, jwt_secret="s" * 40, cursor_secret="c" * 40,
                 environment="production")
    events = EventStore(s.events_db)
    events.upsert_items([
        {"ITEM_ID": p, "CATEGORY": "sports|news", "AUTHOR_ID": "a1",
         "CREATION_TIMESTAMP": T0, "QUESTION": f"question of {p}?"} for p in POLLS])
    events.close()
    votes = [Interaction(f"u{k}", p, "HUNCH", T0 + k) for i, p in enumerate(POLLS)
             for k in range(i + 1)]
    model = PopularityCount().fit(TrainingData(votes))
    ArtifactStore(s.artifacts_dir).publish("popularity-count", model, model.params(), "fp",
                                           extra={"trained_until": T0 + 100})
    return s


def serve(settings: Settings, scenario: Callable[[httpx.AsyncClient], Awaitable[None]],
          app: Starlette | None = None) -> None:
    """Run ``scenario`` against the app (``create_app(settings)`` unless given), between
    its startup and shutdown."""
    app = app if app is not None else create_app(settings)

    async def main() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
                await scenario(client)

    asyncio.run(main())


def gql(client: httpx.AsyncClient, settings: Settings, query: str, variables=None,
        user: str = "reader"):
    return client.post("/graphql", json={"query": query, "variables": variables or {}},
                       headers={"Authorization": f"Bearer {issue_token(settings, user)}"})


def operator(settings: Settings) -> dict[str, str]:
    """Headers of an admin's request: production shows /metrics and /readyz's details to
    operators only (gateway/ops.py)."""
    return {"Authorization": f"Bearer {issue_token(settings, 'ops', admin=True)}"}


def codes(body: dict) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


def test_poll_fields_are_served_when_asked_directly_or_through_a_fragment(settings):
    async def scenario(client):
        for query in (WITH_FIELDS, WITH_FRAGMENT):
            body = (await gql(client, settings, query)).json()
            nodes = [e["node"] for e in body["data"]["feed"]["edges"]]
            assert len(nodes) == 5, body
            assert all(n["question"] == f"question of {n['id']}?" for n in nodes)
        body = (await gql(client, settings, WITH_FIELDS)).json()
        assert body["data"]["feed"]["edges"][0]["node"]["categories"] == ["sports", "news"]
        body = (await gql(client, settings, ID_ONLY)).json()
        assert [set(e["node"]) for e in body["data"]["feed"]["edges"]] == [{"id"}] * 5

    serve(settings, scenario)


def test_a_repeated_bad_document_gets_its_code_every_time(settings):
    too_deep = "{ poll(id: \"p1\") { author { polls { author { polls { author { polls { id } } } } } } } }"
    many_tokens = "{ me { " + " ".join(["id"] * 2100) + " } }"

    async def scenario(client):
        for _ in range(2):  # the second answer comes from the document cache
            assert codes((await gql(client, settings, "{ feed(first: 5 { id }")).json()) == [
                "GRAPHQL_PARSE_FAILED"]
            assert codes((await gql(client, settings, too_deep)).json()) == [
                "GRAPHQL_VALIDATION_FAILED"]
            assert codes((await gql(client, settings, many_tokens)).json()) == [
                "GRAPHQL_PARSE_FAILED"]
            introspection = (await gql(client, settings, "{ __schema { types { name } } }")).json()
            assert set(codes(introspection)) == {"GRAPHQL_VALIDATION_FAILED"}  # production
            body = (await gql(client, settings, ID_ONLY)).json()
            assert "errors" not in body and len(body["data"]["feed"]["edges"]) == 5

    serve(settings, scenario)


def test_concurrent_requests_each_get_their_own_errors_and_data(settings):
    """Interleaved requests (each waits on its feed page off the event loop) must not
    see each other's results: a bad cursor's error keeps its code, good pages stay clean."""

    async def scenario(client):
        requests = [gql(client, settings, ID_ONLY, {"after": "not-a-cursor" if i % 2 else None},
                        user=f"user{i}") for i in range(8)]
        bodies = [r.json() for r in await asyncio.gather(*requests)]
        for i, body in enumerate(bodies):
            if i % 2:
                assert codes(body) == ["INVALID_CURSOR"], body
            else:
                assert "errors" not in body and len(body["data"]["feed"]["edges"]) == 5, body

    serve(settings, scenario)


def test_a_user_pages_with_the_cursor_without_repeats(settings):
    async def scenario(client):
        seen: list[str] = []
        after = None
        for _ in range(4):
            feed = (await gql(client, settings, ID_ONLY, {"after": after})).json()["data"]["feed"]
            seen += [e["node"]["id"] for e in feed["edges"]]
            after = feed["pageInfo"]["endCursor"]
        assert len(seen) == 20 and len(set(seen)) == 20

    serve(settings, scenario)


def test_operation_latency_is_counted_under_the_root_field(settings):
    def count(metrics: str, operation: str) -> float:
        match = re.search(
            rf'hunch_graphql_operation_seconds_count\{{operation="{operation}"\}} (\S+)', metrics)
        return float(match.group(1)) if match else 0.0

    async def scenario(client):
        before = (await client.get("/metrics", headers=operator(settings))).text
        await gql(client, settings, ID_ONLY)
        await gql(client, settings, ID_ONLY)
        await gql(client, settings, "{ me { id } }")
        await gql(client, settings, "{ feed(first: 5 { id }")  # does not parse
        await gql(client, settings, "{ madeUpField }")  # does not validate
        after = (await client.get("/metrics", headers=operator(settings))).text
        assert count(after, "feed") - count(before, "feed") == 2
        assert count(after, "me") - count(before, "me") == 1
        assert count(after, "unknown") - count(before, "unknown") == 2
        assert 'operation="madeUpField"' not in after

    serve(settings, scenario)


def test_events_are_recorded_off_the_event_loop_with_the_same_answers(settings):
    interaction = """mutation($p: ID!, $id: String) { recordInteraction(input: {
      pollId: $p, eventType: "hunch", eventId: $id}) {
      __typename ... on Recorded { stored eventId } } }"""
    impressions = """mutation($ids: [ID!]!) { recordImpressions(pollIds: $ids) {
      __typename } }"""

    async def scenario(client):
        async def send(query, variables):
            return (await gql(client, settings, query, variables, user="voter")).json()["data"]

        first = (await send(interaction, {"p": "p29", "id": "e1"}))["recordInteraction"]
        again = (await send(interaction, {"p": "p29", "id": "e1"}))["recordInteraction"]
        assert (first["stored"], again["stored"]) == (True, False)
        assert again["eventId"] == "e1"
        # a second vote under another id, or none, answers with the vote that counts
        for other_id in ("e9", None):
            second = (await send(interaction, {"p": "p29", "id": other_id}))["recordInteraction"]
            assert (second["stored"], second["eventId"]) == (False, "e1"), second
        unknown = (await send(interaction, {"p": "nope", "id": "e2"}))["recordInteraction"]
        assert unknown["__typename"] == "UnknownPollError"
        shown = (await send(impressions, {"ids": ["p1", "p2"]}))["recordImpressions"]
        assert shown["__typename"] == "Recorded"
        # the vote is stored: the default exclusion filter hides p29 from a new session
        def shown_to(user: str):
            return gql(client, settings, ID_ONLY, user=user)

        voter = (await shown_to("voter")).json()["data"]["feed"]["edges"]
        other = (await shown_to("someone-else")).json()["data"]["feed"]["edges"]
        assert "p29" in [e["node"]["id"] for e in other]  # the most popular poll
        assert voter and "p29" not in [e["node"]["id"] for e in voter]

    serve(settings, scenario)


def test_events_stored_by_another_worker_are_folded_in_before_any_feed_asks(settings):
    """The refresher folds new events in the background, so no feed request pays
    for a backlog (the stall behind the gateway's p99 at 200 req/s)."""
    from gateway.services import Services
    from recsys.refresher import REFRESH_SECONDS

    services = Services(settings)
    app = create_app(settings, services)

    async def main() -> None:
        async with app.router.lifespan_context(app):
            other_worker = EventStore(settings.events_db)
            other_worker.append_many(
                [Interaction(f"fan{k}", "p0", "HUNCH", T0 + 200 + k) for k in range(60)])
            newest = other_worker.last_seq()
            other_worker.close()
            # Read the live version directly: the public accessors fold events in themselves.
            live = services.recipes._live["popularity-count"]
            for _ in range(int(20 * REFRESH_SECONDS / 0.05)):  # generous: a busy machine
                if live.last_seq >= newest:
                    break
                await asyncio.sleep(0.05)
            assert live.last_seq >= newest, "new events were not folded in without a request"
            # Under the live lock: the refresher moves last_seq before it observes the
            # batch (both under this lock), so read without it the model could still be
            # mid-fold (a flake seen once on a loaded machine).
            with live.lock:
                top = live.artifact.model.recommend(None, 1)
            assert [i.item_id for i in top] == ["p0"]  # 60 new fans beat p29's 30 votes

    asyncio.run(main())


def test_a_batch_of_operations_is_refused_with_what_to_send_instead(settings):
    """Apollo Client's BatchHttpLink sends a JSON array of operations; each would have
    its own side effects and limits, so batches are refused (as Apollo Server 4 does by
    default), with what to send instead: strawberry said "Batching is not enabled"."""
    async def scenario(client):
        token = {"Authorization": f"Bearer {issue_token(settings, 'reader')}"}
        batch = [{"query": "{ feed(first: 2) { edges { cursor } } }"}, {"query": "{ me { id } }"}]
        refused = await client.post("/graphql", json=batch, headers=token)
        assert refused.status_code == 400
        (error,) = refused.json()["errors"]
        assert error["extensions"]["code"] == "BAD_REQUEST"
        assert "one operation per request" in error["message"]
        assert "BatchHttpLink" in error["message"]
        # a scalar body is still told the shape of a request
        scalar = await client.post("/graphql", json="{ me { id } }", headers=token)
        assert scalar.status_code == 400
        assert "must be a JSON object" in scalar.json()["errors"][0]["message"]
        # and one operation alone is served
        one = await client.post("/graphql", json=batch[1], headers=token)
        assert one.status_code == 200 and one.json()["data"]["me"]["id"] == "reader"

    serve(settings, scenario)
