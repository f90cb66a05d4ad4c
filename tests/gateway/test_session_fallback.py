"""Feed sessions when Redis fails (helper-64's operator review): every feed page of every
host answered INTERNAL_SERVER_ERROR while Redis was down, and /readyz still said ready.
Now new feeds keep their sessions on the host (FallbackFeedSessionStore), the page says
so in ``extensions.degraded``, and /readyz lists it without pulling the host."""

from __future__ import annotations

from recsys.feed_sessions import FallbackFeedSessionStore, SQLiteFeedSessionStore
from recsys.mixer import FeedItem
from tests.gateway.test_app import gql, operator, serve, settings  # noqa: F401 - a fixture

PAGE = """query($after: String) { feed(first: 5, after: $after) {
  pageInfo { endCursor hasNextPage } edges { node { id } } } }"""


def test_a_feed_pages_through_a_redis_outage_on_the_hosts_own_sessions(settings):  # noqa: F811
    # Nothing listens on port 1: every Redis call is refused, as in an outage.
    down = settings.model_copy(update={"session_store": "redis",
                                       "redis_url": "redis://127.0.0.1:1/0"})

    async def scenario(client):
        seen: list[str] = []
        after = None
        for _ in range(3):
            response = await gql(client, down, PAGE, {"after": after})
            body = response.json()
            assert "errors" not in body, body
            assert body["extensions"]["degraded"] == ["sessions"], body
            page = body["data"]["feed"]
            seen += [e["node"]["id"] for e in page["edges"]]
            after = page["pageInfo"]["endCursor"]
        assert len(seen) == 15 == len(set(seen))  # no repeats across the pages
        ready = (await client.get("/readyz", headers=operator(settings)))
        assert ready.status_code == 200 and ready.json()["ready"] is True
        assert ready.json()["sessions"].startswith("redis unreachable")

    serve(down, scenario)


class _Flaky:
    """A shared store that fails while ``down``, else keeps sessions in memory."""

    def __init__(self, tmp_path) -> None:
        self.down = False
        self.inner = SQLiteFeedSessionStore(tmp_path / "shared.sqlite3")

    def __getattr__(self, name):
        method = getattr(self.inner, name)

        def call(*args):
            if self.down:
                raise ConnectionError("redis is down")
            return method(*args)

        return call


def test_sessions_return_to_the_shared_store_and_local_ones_live_on(tmp_path):
    now = [0.0]
    shared = _Flaky(tmp_path)
    failures: list[BaseException] = []
    store = FallbackFeedSessionStore(shared, SQLiteFeedSessionStore(tmp_path / "local.sqlite3"),
                                     (ConnectionError,), on_failure=failures.append,
                                     retry_seconds=5.0, clock=lambda: now[0])
    item = FeedItem("p1", "popularity-count", 1.0, 1)
    before, _ = store.create("u1", 600, [item])  # shared
    shared.down = True
    assert store.snapshot(before) is None  # unreadable: the cursor is expired
    during, _ = store.create("u1", 600, [item])
    assert during.startswith(FallbackFeedSessionStore.LOCAL) and store.degraded
    assert [i.item_id for i in store.snapshot(during).items] == ["p1"]
    assert store.extend(during, 1, [FeedItem("p2", "trending-now", 0.5, 1)])
    assert store.create("u2", 600)[0].startswith(FallbackFeedSessionStore.LOCAL)
    assert len(failures) == 1, failures  # new sessions left Redis alone after the failure
    shared.down = False
    now[0] = 0.5
    assert store.snapshot(before) is None  # cursors wait read_retry_seconds (1 s) ...
    now[0] = 4.0
    assert store.create("u3", 600)[0].startswith(FallbackFeedSessionStore.LOCAL)  # not yet
    # ... not retry_seconds (helper-65: one hiccup must not expire every shared session
    # for 5 s); a cursor of a Redis session tries Redis, and its answer ends the pause
    assert store.snapshot(before) is not None and not store.degraded
    after, _ = store.create("u1", 600, [item])
    assert not after.startswith(FallbackFeedSessionStore.LOCAL)
    assert store.snapshot(before) is not None  # Redis kept it through the outage
    assert [i.item_id for i in store.snapshot(during).items] == ["p1", "p2"]
    store.close()


def test_a_shared_stores_outage_is_listed_but_a_hosts_own_makes_it_unready(settings):  # noqa: F811
    """helper-64: with PostgreSQL (or Neo4j) down every host answered 503 on /readyz
    while its feed still served degraded, so a load balancer would pull them all."""
    import asyncio

    from gateway.services import Services
    from recsys.store_db import StoreUnavailable

    services = Services(settings)
    try:
        def down() -> None:
            raise StoreUnavailable("the database is unreachable")

        services.settings = settings.model_copy(
            update={"store_url": "postgresql://hunch@127.0.0.1:5432/hunch"})
        writable = services.events.check_writable
        services.events.check_writable = down
        never = asyncio.run(services.readiness())  # never reached: a host's own fault
        assert never["ready"] is False
        services.settings = settings
        services.events.check_writable = writable
        assert asyncio.run(services.readiness())["ready"] is True  # reached once
        services.events.check_writable = down
        own = asyncio.run(services.readiness())
        assert own["ready"] is False and own["store"].startswith("not writable")  # SQLite
        assert own["versions"] == {}  # nothing loaded yet, and readiness loads nothing
        live = services.recipes.version("popularity-count")  # a request's first look
        assert asyncio.run(services.readiness())["versions"] == {"popularity-count": live}
        services.settings = settings.model_copy(
            update={"store_url": "postgresql://hunch@127.0.0.1:5432/hunch"})
        shared = asyncio.run(services.readiness())
        assert shared["ready"] is True and shared["store"].startswith("not writable")
    finally:
        asyncio.run(services.close())


def test_a_memory_graph_beside_shared_stores_is_warned_of(settings, caplog):  # noqa: F811
    """helper-64: the README's several-hosts settings left each host its own graph; a
    follow made on one host reached no other and was lost with it."""
    import asyncio
    import logging

    from gateway.services import Services

    shared = settings.model_copy(update={"session_store": "redis",
                                         "redis_url": "redis://127.0.0.1:1/0"})
    for case, expected in ((settings, False), (shared, True)):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            services = Services(case)
        asyncio.run(services.close())
        assert any("HUNCH_GRAPH_STORE=memory" in r.getMessage()
                   for r in caplog.records) is expected


def test_closing_a_worker_closes_its_session_store(tmp_path):
    """Services.close left the sessions store open: its checkpoint thread went on waking
    every 2 s for good, one more per worker closed (every test that built one)."""
    import asyncio

    from gateway.services import Services
    from gateway.settings import Settings

    services = Services(Settings(home=tmp_path, graph_store="memory"))
    try:
        services.feed("u1", 5, None)  # a first session starts the store's thread
        thread = services.session_store._checkpointer
        assert thread.is_alive()
    finally:
        asyncio.run(services.close())
    thread.join(timeout=30)  # close() wakes it: it ends at once
    assert not thread.is_alive()
