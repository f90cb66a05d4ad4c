"""Two hosts (two Services with separate home directories) share named filters and
promotions through HUNCH_STORE_URL: a change on one reaches the other's feed by polling
the store's version, on a shared SQLite file and on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

import recsys.feed_filters as feed_filters_module
from gateway.services import Services
from gateway.settings import Settings
from recsys.event_stores import upgrade_stores
from recsys.promotions import Promotion

EXPR = 'INCLUDE ItemID WHERE Items.CATEGORY IN ("news")'


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'shared.sqlite3'}"
    url = request.getfixturevalue("postgres_url")
    upgrade_stores(url)  # `hunch db upgrade`: events, filters, promotions
    return url


def _host(tmp_path, name: str, store_url: str) -> Services:
    settings = Settings(home=tmp_path / name, jwt_secret="s" * 40, cursor_secret="c" * 40,
                        environment="production", store_url=store_url)
    return Services(settings)


@pytest.fixture
def two_hosts(tmp_path, shared_store_url, monkeypatch):
    # Every call polls the version: the test steps instead of waiting for the period.
    monkeypatch.setattr(feed_filters_module, "PROMOTION_REFRESH_SECONDS", 0.0)
    a, b = _host(tmp_path, "a", shared_store_url), _host(tmp_path, "b", shared_store_url)
    yield a, b
    for host in (a, b):
        asyncio.run(host.close())


def test_a_promotion_changed_on_one_host_reaches_the_others_feed(two_hosts):
    a, b = two_hosts
    assert b._active_promotion() is None
    a.promotions.create(Promotion("spring", 20, EXPR))
    a.promotions_changed()
    assert b._active_promotion().name == "spring"
    a.promotions.update("spring", end_at=time.time() - 1)  # ended: b stops applying it
    assert b._active_promotion() is None
    a.filters.create("news", EXPR)
    assert b.filters.get("news", max_age_seconds=0).expression == EXPR


def test_an_unchanged_version_reads_no_promotions(two_hosts):
    a, b = two_hosts
    a.promotions.create(Promotion("spring", 20, EXPR))
    assert b._active_promotion().name == "spring"
    listed = []
    real_list = b.promotions.list
    b.promotions.list = lambda: listed.append(1) or real_list()
    for _ in range(3):
        assert b._active_promotion().name == "spring"
    assert listed == []  # one version read per refresh, no re-read of every promotion
    a.promotions.update("spring", priority=2)
    assert b._active_promotion().priority == 2 and listed == [1]


def test_the_feed_keeps_its_promotion_while_postgres_is_down(tmp_path, postgres_server,
                                                             postgres_url, monkeypatch):
    monkeypatch.setattr(feed_filters_module, "PROMOTION_REFRESH_SECONDS", 0.0)
    upgrade_stores(postgres_url)
    host = _host(tmp_path, "a", postgres_url)
    try:
        host.promotions.create(Promotion("spring", 20, EXPR))
        with psycopg.connect(postgres_url) as conn:  # the host really writes to PostgreSQL
            assert conn.execute("SELECT name FROM promotions").fetchall() == [("spring",)]
        assert host._active_promotion().name == "spring"
        postgres_server.stop()
        try:
            assert host._active_promotion().name == "spring"  # no error reaches the feed
        finally:
            postgres_server.start()
    finally:
        asyncio.run(host.close())
