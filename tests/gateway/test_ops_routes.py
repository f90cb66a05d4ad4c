"""/metrics and /readyz in production: details for operators only, and a readiness probe
nobody can turn into work (gateway/ops.py). In process, over ASGI, real Services."""

from __future__ import annotations

import asyncio
import sqlite3

import httpx
import pytest

from gateway.app import create_app
from gateway.auth import issue_token
from gateway.ops import SharedReadiness
from recsys.errors import HunchError
from tests.gateway.test_app import serve, settings  # noqa: F401 - a fixture

OPS_TOKEN = "o" * 40


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_production_shows_metrics_and_readiness_details_to_operators_only(settings):  # noqa: F811
    settings = settings.model_copy(update={"ops_token": OPS_TOKEN})

    async def scenario(client: httpx.AsyncClient) -> None:
        reader, admin = issue_token(settings, "reader"), issue_token(settings, "ops", admin=True)
        for headers in ({}, _bearer(reader), _bearer("o" * 39), _bearer(OPS_TOKEN + "x"),
                        {"authorization": OPS_TOKEN}):  # no scheme
            refused = await client.get("/metrics", headers=headers)
            assert refused.status_code == 401, headers
            assert "HUNCH_OPS_TOKEN" in refused.text and "hunch_" not in refused.text
            public = await client.get("/readyz", headers=headers)
            assert public.status_code == 200 and public.json() == {"ready": True}
        for headers in (_bearer(OPS_TOKEN), _bearer(admin)):
            assert "hunch_" in (await client.get("/metrics", headers=headers)).text
            details = (await client.get("/readyz", headers=headers)).json()
            assert details["ready"] is True and details["store"] == "writable"
            assert "refresher" in details and "versions" in details

    serve(settings, scenario)


def test_without_an_ops_token_only_admins_read_metrics(settings):  # noqa: F811
    async def scenario(client: httpx.AsyncClient) -> None:
        assert (await client.get("/metrics", headers=_bearer(""))).status_code == 401
        admin = issue_token(settings, "ops", admin=True)
        assert (await client.get("/metrics", headers=_bearer(admin))).status_code == 200

    serve(settings, scenario)


def test_development_keeps_every_route_open(settings):  # noqa: F811
    settings = settings.model_copy(update={"environment": "development"})

    async def scenario(client: httpx.AsyncClient) -> None:
        assert "hunch_" in (await client.get("/metrics")).text
        assert (await client.get("/readyz")).json()["store"] == "writable"

    serve(settings, scenario)


def test_a_short_ops_token_is_refused_in_production(settings):  # noqa: F811
    with pytest.raises(HunchError, match="HUNCH_OPS_TOKEN"):
        create_app(settings.model_copy(update={"ops_token": "short"}))


def test_a_readiness_probe_waiting_for_the_write_lock_leaves_the_worker_serving(settings):  # noqa: F811
    """The probe's write check waits for the store's write lock (an import holds it); it
    ran on the event loop, and every request of the worker waited with it."""
    settings = settings.model_copy(update={"ops_token": OPS_TOKEN})
    holder = sqlite3.connect(settings.events_db, isolation_level=None)

    async def scenario(client: httpx.AsyncClient) -> None:
        holder.execute("BEGIN IMMEDIATE")  # what an import's transaction holds
        probe = asyncio.ensure_future(client.get("/readyz", headers=_bearer(OPS_TOKEN)))
        try:
            for _ in range(20):  # let the probe reach the lock
                await asyncio.sleep(0)
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            # answered while the probe still waits for the lock the test holds
            assert not probe.done()
        finally:
            holder.execute("COMMIT")
        assert (await probe).json()["store"] == "writable"

    try:
        serve(settings, scenario)
    finally:
        holder.close()


def test_anonymous_probes_share_one_check_a_second():
    now = [100.0]
    runs = []
    release = asyncio.Event()

    async def check() -> dict:
        runs.append(now[0])
        await release.wait()
        return {"ready": len(runs) == 1}

    readiness = SharedReadiness(check, max_age=1.0, clock=lambda: now[0])

    async def main() -> None:
        probes = [asyncio.ensure_future(readiness.ready()) for _ in range(50)]
        await asyncio.sleep(0)
        probes[0].cancel()  # a caller that goes away does not cancel the others' check
        release.set()
        answers = await asyncio.gather(*probes[1:])
        assert answers == [True] * 49 and runs == [100.0]
        now[0] = 100.9
        assert await readiness.ready() is True and len(runs) == 1  # still fresh
        now[0] = 101.0
        assert await readiness.ready() is False and len(runs) == 2  # a new check

    asyncio.run(main())
