"""A gateway on the PostgreSQL event store (HUNCH_STORE_URL): while the server is down a
write answers STORE_UNAVAILABLE with ``retryable: true`` and no internal detail, and the
same gateway takes writes again once the server is back (no restart). Real Services on
the real test PostgreSQL, over ASGI."""

from __future__ import annotations

import asyncio
import time

from gateway.settings import Settings
from recsys.event_stores import open_event_store, upgrade_stores
from tests.gateway.test_app import POLLS, T0, codes, gql, serve

# Bounds a hang while the pool reconnects (1 s backoff, doubling); times nothing.
RECOVERY_DEADLINE_SECONDS = 60.0
VOTE = """mutation($p: ID!, $id: String) { recordInteraction(input: {
  pollId: $p, eventType: "hunch", eventId: $id}) { __typename ... on Recorded { stored } } }"""


def test_a_write_while_postgres_is_down_is_retryable_and_recovers(
        tmp_path, postgres_server, postgres_url):
    settings = Settings(home=tmp_path, jwt_secret="s" * 40, cursor_secret="c" * 40,
                        environment="production", store_url=postgres_url)
    upgrade_stores(postgres_url)  # `hunch db upgrade`
    with open_event_store(postgres_url) as store:
        store.upsert_items({"ITEM_ID": p, "AUTHOR_ID": "a1", "CREATION_TIMESTAMP": T0}
                           for p in POLLS)

    async def scenario(client):
        body = (await gql(client, settings, VOTE, {"p": "p1", "id": "v1"})).json()
        assert body["data"]["recordInteraction"] == {"__typename": "Recorded", "stored": True}
        postgres_server.stop()
        try:
            body = (await gql(client, settings, VOTE, {"p": "p2", "id": "v2"})).json()
            assert codes(body) == ["STORE_UNAVAILABLE"], body
            error = body["errors"][0]
            assert error["extensions"]["retryable"] is True
            assert "retry" in error["message"] and str(postgres_server.port) not in str(body)
        finally:
            postgres_server.start()
        deadline = time.monotonic() + RECOVERY_DEADLINE_SECONDS
        while True:  # the client's retry, as the error invites
            body = (await gql(client, settings, VOTE, {"p": "p2", "id": "v2"})).json()
            if codes(body) != ["STORE_UNAVAILABLE"] or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert body["data"]["recordInteraction"] == {"__typename": "Recorded", "stored": True}

    serve(settings, scenario)
    with open_event_store(postgres_url) as store:
        assert [e.event_id for e in store.interactions()] == ["v1", "v2"]
