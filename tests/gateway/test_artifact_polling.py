"""Every gateway polls the shared artifact store: two gateways (separate homes standing
in for two hosts) swap in a version published on S3 by a trainer, with no request and
no restart, and then serve it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.auth import issue_token
from gateway.services import Services
from gateway.settings import Settings
from recsys.artifacts import S3ArtifactStore
from recsys.events import EventStore, Interaction
from recsys.recipes.base import TrainingData
from recsys.recipes.popularity_count import PopularityCount
from tests.gateway.test_app import operator
from tests.s3_server import s3, s3_server  # noqa: F401 - fixtures

T0 = 1_700_000_000
POLLS = ["old-favourite", "new-favourite", "filler"]
POP = "popularity-count"
# Generous: the machine is shared; the swap itself takes one poll (0.2 s) and a tail tick.
SWAP_DEADLINE_SECONDS = 60


def favouring(poll: str) -> PopularityCount:
    votes = [Interaction(f"u{k}", poll, "HUNCH", T0 + k) for k in range(3)]
    votes.append(Interaction("u9", "filler", "HUNCH", T0 + 9))
    return PopularityCount().fit(TrainingData(votes))


def gateway_settings(home: Path, s3) -> Settings:
    settings = Settings(home=home, jwt_secret="s" * 40, cursor_secret="c" * 40,
                        environment="production", artifacts_url=s3.url(),
                        s3_endpoint_url=s3.endpoint_url, artifacts_poll_seconds=0.2,
                        slot_plan="popularity-count")
    home.mkdir(parents=True)
    events = EventStore(settings.events_db)
    events.upsert_items([{"ITEM_ID": p, "AUTHOR_ID": "a1", "CREATION_TIMESTAMP": T0}
                         for p in POLLS])
    events.close()
    return settings


def test_two_gateways_swap_in_a_version_published_to_the_shared_store(s3, tmp_path):
    trainer = S3ArtifactStore(s3.url(), tmp_path / "trainer-cache",
                              endpoint_url=s3.endpoint_url)
    v1 = trainer.publish(POP, favouring("old-favourite"), {}, "fp1",
                         extra={"trained_until": T0 + 9})
    hosts = [gateway_settings(tmp_path / name, s3) for name in ("host-a", "host-b")]
    services = [Services(s) for s in hosts]
    apps = [create_app(s, svc) for s, svc in zip(hosts, services)]

    async def first_poll(app, settings) -> str:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            token = issue_token(settings, "reader")
            body = (await client.post(
                "/graphql", json={"query": "{ feed(first: 1) { edges { node { id } } } }"},
                headers={"Authorization": f"Bearer {token}"})).json()
        assert "errors" not in body, body
        return body["data"]["feed"]["edges"][0]["node"]["id"]

    async def main() -> None:
        async with apps[0].router.lifespan_context(apps[0]), \
                apps[1].router.lifespan_context(apps[1]):
            assert [svc.recipes.describe() for svc in services] == [{POP: v1}] * 2
            v2 = await asyncio.to_thread(trainer.publish, POP, favouring("new-favourite"),
                                         {}, "fp2", extra={"trained_until": T0 + 9})
            # No request is made: each gateway's own loop polls the store and swaps.
            deadline = time.monotonic() + SWAP_DEADLINE_SECONDS
            while (any(svc.recipes.describe() != {POP: v2} for svc in services)
                   and time.monotonic() < deadline):
                await asyncio.sleep(0.1)
            assert [svc.recipes.describe() for svc in services] == [{POP: v2}] * 2
            for app, settings in zip(apps, hosts):
                assert await first_poll(app, settings) == "new-favourite"
            # Each host downloaded the version into its own cache.
            for settings in hosts:
                assert (settings.home / "artifacts-cache" / s3.bucket / "models" / POP
                        / v2 / "manifest.json").is_file()

    asyncio.run(main())


@pytest.mark.slow  # botocore's retries against a port where nothing listens
def test_a_gateway_whose_artifact_store_is_down_starts_serves_and_says_not_ready(s3,
                                                                                  tmp_path):
    from tests.servers import free_port

    settings = gateway_settings(tmp_path / "host", s3).model_copy(
        update={"s3_endpoint_url": f"http://127.0.0.1:{free_port()}"})  # nothing listens
    app = create_app(settings)

    async def main() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
                ready = await client.get("/readyz", headers=operator(settings))
                token = issue_token(settings, "reader")
                feed = await client.post(
                    "/graphql", json={"query": "{ feed(first: 2) { edges { node { id } } } }"},
                    headers={"Authorization": f"Bearer {token}"})
        assert ready.status_code == 503 and ready.json()["models"] == []
        body = feed.json()
        assert "errors" not in body, body  # no model: the feed falls back, never fails
        assert body["data"]["feed"]["edges"] == []

    asyncio.run(main())
