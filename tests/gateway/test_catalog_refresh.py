"""An edit to an existing poll in one worker reaches the others (issue 13: the catalog
refresh compared counts, so only new polls travelled). Two Services, as two uvicorn
workers would have, on one real SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
import time

from gateway.services import Services
from recsys.events import _SCHEMA, EventStore
from tests.gateway.test_app import operator, settings  # noqa: F401 - the fixture


def _has_category(services: Services, poll: str, category: str) -> bool:
    catalog = services.catalog
    return bool(catalog.value_mask("CATEGORY", [category])[catalog.index[poll]])


def test_an_edit_in_one_worker_reaches_another_after_its_refresh(settings):  # noqa: F811
    a, b = Services(settings), Services(settings)
    try:
        # Refresh by hand: the refresher's thread runs from start(), not called here.
        assert not a.refresher.running and not b.refresher.running
        given: list[dict] = []
        add_items = b.recipes.add_items
        b.recipes.add_items = lambda items: (given.append(items), add_items(items))[1]
        a.upsert_poll({"ITEM_ID": "p1", "CATEGORY": "politics", "QUESTION": "edited?"},
                      acting_user="a1")
        assert _has_category(a, "p1", "politics")
        assert not _has_category(b, "p1", "politics")  # b has not looked yet
        b.refresher.refresh_catalog()
        assert _has_category(b, "p1", "politics") and not _has_category(b, "p1", "sports")
        assert [items["p1"]["QUESTION"] for items in given] == ["edited?"]  # its recipes too
        # A new poll still travels, and nothing is read again when nothing changed.
        a.upsert_poll({"ITEM_ID": "brand-new", "CATEGORY": "science"}, acting_user="a2")
        b.refresher.refresh_catalog()
        b.refresher.refresh_catalog()
        assert [sorted(items) for items in given] == [["p1"], ["brand-new"]]
        assert b.polls_by_author("a2", 5) == ["brand-new"]
    finally:
        for services in (a, b):
            asyncio.run(services.close())


def test_a_version_1_store_is_migrated_and_its_polls_follow_edits(tmp_path):
    path = tmp_path / "events.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(_SCHEMA)  # the version-1 layout, no catalog sequence
    conn.execute("INSERT INTO items VALUES ('old', '{\"AUTHOR_ID\": \"ann\"}')")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with EventStore(path) as store:
        seen = store.catalog_seq()
        assert store.get_item("old") == {"ITEM_ID": "old", "AUTHOR_ID": "ann"}
        store.upsert_item({"ITEM_ID": "old", "CATEGORY": "X"}, acting_user="ann")
        seq, records = store.items_updated_since(seen)
        assert seq > seen and list(records) == ["old"] and records["old"]["CATEGORY"] == "X"
        assert store.items_updated_since(seq) == (seq, {})
    # a full import deletes the polls but never reuses a number a worker has seen
    with EventStore(path) as store:
        store.import_bulk(items=[{"ITEM_ID": "again"}], mode="full")
        later, records = store.items_updated_since(seq)
        assert list(records) == ["again"] and later > seq


def test_a_failing_refresh_shows_in_metrics_and_readiness_and_recovers(settings):  # noqa: F811
    """A worker whose store reads fail keeps serving; /metrics and /readyz say how its
    refresher is doing. No background tick: the test runs the rounds itself."""
    import httpx

    from gateway.app import create_app
    from tests.recsys.test_refresher import STORE_GONE, FailingStore

    settings = settings.model_copy(update={"refresh_seconds": 3600.0})
    services = Services(settings)
    reads = services.refresher.store = FailingStore(services.refresher.store)
    app = create_app(settings, services)

    def failures(metrics_text: str) -> str:
        return next(line for line in metrics_text.splitlines()
                    if line.startswith('hunch_refresh_consecutive_failures{task="catalog"}'))

    async def main() -> None:
        async with app.router.lifespan_context(app):
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                       base_url="http://gw")
            reads.down = True
            for _ in range(2):
                await asyncio.to_thread(services.refresher.run_once)
            assert failures((await client.get("/metrics", headers=operator(settings))).text).endswith(" 2.0")
            ready = (await client.get("/readyz", headers=operator(settings))).json()
            assert ready["refresher"]["catalog"]["consecutive_failures"] == 2
            assert STORE_GONE in ready["refresher"]["catalog"]["last_error"]
            assert ready["ready"] is True  # writes work: this outage is of reads only
            reads.down = False
            await asyncio.to_thread(services.refresher.run_once)
            text = (await client.get("/metrics", headers=operator(settings))).text
            assert failures(text).endswith(" 0.0")
            assert 'hunch_refresh_last_success_timestamp_seconds{task="catalog"}' in text
            await client.aclose()

    asyncio.run(main())


def test_a_worker_whose_refresher_stopped_is_not_ready(settings):  # noqa: F811
    services = Services(settings)
    try:
        assert asyncio.run(services.readiness())["ready"] is True

        def interpreter_exit() -> list[str]:
            raise SystemExit("shutting down")  # not a store error: ends the thread

        services.recipes.available = interpreter_exit
        services.refresher.start()
        services.refresher._thread.join(timeout=60)  # it ends at its first round
        del services.recipes.available  # readiness lists the models too
        checks = asyncio.run(services.readiness())
        assert checks["ready"] is False
        assert checks["refresher"]["crashed"] == "SystemExit: shutting down"
    finally:
        asyncio.run(services.close())


class LockCheckedCatalog:
    """The catalog, refusing reads made without the lock the refresher writes under."""

    def __init__(self, catalog, lock) -> None:
        self._catalog, self._lock = catalog, lock

    def __getattr__(self, name: str):
        assert self._lock.locked(), f"catalog.{name} read without the catalog lock"
        return getattr(self._catalog, name)


def test_in_network_polls_read_their_creation_time_under_the_catalog_lock(settings):  # noqa: F811
    """The refresher grows and rewrites the catalog's columns on its own thread (an edit
    clears a row, then sets it): a read between the two saw no creation time at all.
    A race that rare cannot be made to fail on demand; the lock discipline can."""
    services = Services(settings)
    try:
        services.upsert_poll({"ITEM_ID": "p-new", "CREATION_TIMESTAMP": 1_700_000_000},
                             acting_user="ann")
        services.feed_filters.catalog = LockCheckedCatalog(services.catalog,
                                                           services._catalog_lock)
        # From the catalog's author index (a poll only the graph knew could not be served).
        assert services.feed_filters.newest_polls_by(["ann"], 10) == [("p-new", 1_700_000_000.0)]
    finally:
        asyncio.run(services.close())


def test_events_a_live_model_rejects_show_in_metrics_and_readiness(settings):  # noqa: F811
    """A stored event the live model cannot fold in is not a store outage and does not
    make the worker unready, but /metrics and /readyz count it: those events reach the
    model only at its next training."""
    import httpx

    from gateway.app import create_app
    from recsys.events import Interaction

    services = Services(settings)
    app = create_app(settings, services)

    async def main() -> None:
        async with app.router.lifespan_context(app):
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                       base_url="http://gw")
            model = services.recipes.model("popularity-count")

            def observe(batch):
                raise ValueError("cannot take these events")

            model.observe = observe
            now = int(time.time())
            services.events.append_many([Interaction("u1", "p1", "HUNCH", now),
                                         Interaction("u2", "p1", "HUNCH", now)])
            services.recipes.model("popularity-count")  # catches up, as a request does
            text = (await client.get("/metrics", headers=operator(settings))).text
            assert 'hunch_events_not_folded_in_total{recipe="popularity-count"} 2.0' in text
            ready = (await client.get("/readyz", headers=operator(settings))).json()
            assert ready["events_not_folded_in"] == {"popularity-count": 2}
            assert ready["ready"] is True
            await client.aclose()

    asyncio.run(main())


def test_more_from_this_author_and_the_in_network_source_read_one_list(settings):  # noqa: F811
    """Both come from the catalog's author index, newest first: polls written in the same
    second are in poll id order in both (Author.polls had them in reverse id order)."""
    services = Services(settings)
    try:
        for poll in ("tie-b", "tie-a", "older"):
            services.upsert_poll({"ITEM_ID": poll, "CREATION_TIMESTAMP": 1_700_000_000
                                  - (poll == "older")}, acting_user="cat")
        assert services.polls_by_author("cat", 5) == ["tie-a", "tie-b", "older"]
        assert services.polls_by_author("cat", 1) == ["tie-a"]
        assert [p for p, _ in services.feed_filters.newest_polls_by(["cat"], 5)] == [
            "tie-a", "tie-b", "older"]
        assert services.polls_by_author("cat", 0) == []
    finally:
        asyncio.run(services.close())
