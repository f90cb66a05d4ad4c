"""Named promotions: one contract, run on the SQLite store and on PostgreSQL (real server)."""

from __future__ import annotations

import threading
import time

import pytest

from recsys.promotions import (
    InvalidPromotion,
    Promotion,
    PromotionAlreadyExists,
    UnknownPromotion,
    open_promotion_store,
)
from recsys.store_db import SchemaOutdated, StoreUnavailable

HOSTS = 4  # stores racing on one name
RECOVERY_DEADLINE_SECONDS = 60  # generous: a bound on waiting, not a speed assertion
EXPR = 'INCLUDE ItemID WHERE Items.CATEGORY IN ("news")'


def open_store(url: str):
    """A store as a host opens it, its PostgreSQL schema brought up to date first."""
    return open_promotion_store(url, upgrade=True)


def test_promotion_store_is_durable_and_picks_the_active_one(store_url):
    store = open_store(store_url)
    store.create(Promotion("low", 10, "x", priority=1))
    store.create(Promotion("high", 10, "x", priority=5, start_at=100, end_at=200))
    with pytest.raises(PromotionAlreadyExists):
        store.create(Promotion("low", 20, "x"))
    assert store.active(now=150).name == "high"
    assert store.active(now=250).name == "low"
    store.update("low", percent_promoted_items=30)
    with pytest.raises(InvalidPromotion):
        store.update("low", percent_promoted_items=300)
    store.close()
    reopened = open_store(store_url)
    assert reopened.get("low").percent_promoted_items == 30
    reopened.delete("high")
    with pytest.raises(UnknownPromotion):
        reopened.get("high")
    assert [p.name for p in reopened.list()] == ["low"]
    reopened.close()


def test_every_field_round_trips(store_url):
    promotion = Promotion("spring", 25, EXPR, filter_values={"CATEGORY": '"news"', "é": "ü"},
                          start_at=1_700_000_000.5, end_at=1_800_000_000.0, priority=-3,
                          filter_name="by-category")
    with open_store(store_url) as store:
        assert store.create(promotion) == promotion
        assert store.get("spring") == promotion
        assert store.list() == [promotion]


def test_update_changes_only_what_it_names(store_url):
    with open_store(store_url) as store:
        store.create(Promotion("p", 10, EXPR, priority=2))
        updated = store.update("p", end_at=500.0)
        assert updated == Promotion("p", 10, EXPR, priority=2, end_at=500.0)
        assert store.get("p") == updated
        with pytest.raises(InvalidPromotion, match="end time"):
            store.update("p", start_at=600.0)
        with pytest.raises(UnknownPromotion):
            store.update("nope", priority=1)
        with pytest.raises(UnknownPromotion):
            store.delete("nope")
        assert store.list() == [updated]


def test_invalid_promotions_are_refused_in_every_store(store_url):
    with open_store(store_url) as store:
        for bad in (dict(name="nul\x00name"), dict(filter_values={"K": "a\x00b"})):
            with pytest.raises(InvalidPromotion, match="NUL"):
                store.create(Promotion(**{"name": "p", "percent_promoted_items": 10,
                                          "filter_expression": EXPR, **bad}))
        assert store.list() == [] and store.version() == 0


def test_list_and_ties_follow_byte_order_of_names(store_url):
    names = ["b", "B", "_x", "a1", "Ä"]
    with open_store(store_url) as store:
        for name in names:
            store.create(Promotion(name, 10, EXPR))
        assert [p.name for p in store.list()] == sorted(names)
        assert store.active().name == min(names)  # equal priorities: first name wins


def test_two_hosts_see_each_others_writes_and_versions(store_url):
    with open_store(store_url) as host_a, open_store(store_url) as host_b:
        seen = host_b.version()
        host_a.create(Promotion("from-a", 10, EXPR))
        after_create = host_b.version()
        assert after_create > seen  # b learns of the change by one cheap read
        assert host_b.active().name == "from-a"
        host_b.update("from-a", percent_promoted_items=50)
        after_update = host_a.version()
        assert after_update > after_create
        assert host_a.get("from-a").percent_promoted_items == 50
        with pytest.raises(PromotionAlreadyExists):
            host_b.create(Promotion("from-a", 10, EXPR))
        with pytest.raises(InvalidPromotion):
            host_b.update("from-a", percent_promoted_items=0)
        assert host_a.version() == after_update  # refused writes change nothing
        host_a.delete("from-a")
        assert host_b.version() > after_update
        assert host_b.active() is None


def test_concurrent_creates_of_one_name_one_wins(store_url):
    stores = [open_store(store_url) for _ in range(HOSTS)]
    start = threading.Barrier(HOSTS)
    outcomes: list[object] = [None] * HOSTS

    def create(i: int) -> None:
        start.wait()
        try:
            outcomes[i] = stores[i].create(Promotion("race", 10 + i, EXPR))
        except Exception as exc:  # noqa: BLE001 - collected and checked below
            outcomes[i] = exc

    threads = [threading.Thread(target=create, args=(i,)) for i in range(HOSTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        winners = [o for o in outcomes if isinstance(o, Promotion)]
        losers = [o for o in outcomes if not isinstance(o, Promotion)]
        assert len(winners) == 1, outcomes
        assert all(isinstance(e, PromotionAlreadyExists) for e in losers), losers
        assert stores[0].list() == winners
    finally:
        for s in stores:
            s.close()


def test_the_factory_keeps_the_sqlite_file_where_it_is(tmp_path):
    path = tmp_path / "events.sqlite3"
    with open_promotion_store(f"sqlite://{path}") as store:
        store.create(Promotion("p", 10, EXPR))
    with open_promotion_store(path) as store:  # the plain path of today
        assert [p.name for p in store.list()] == ["p"]


# --- PostgreSQL only: versioned schema, outages ------------------------------------


def test_an_outdated_schema_says_to_run_hunch_db_upgrade(postgres_url):
    with pytest.raises(SchemaOutdated, match="hunch db upgrade"):
        open_promotion_store(postgres_url)
    open_promotion_store(postgres_url, upgrade=True).close()
    with open_promotion_store(postgres_url) as store:
        assert store.list() == []


def test_an_unreachable_server_is_a_retryable_error_and_the_store_recovers(
        postgres_server, postgres_url):
    store = open_store(postgres_url)
    try:
        store.create(Promotion("p", 10, EXPR))
        postgres_server.stop()
        try:
            for attempt in (lambda: store.create(Promotion("q", 10, EXPR)),
                            lambda: store.update("p", priority=3), store.version):
                with pytest.raises(StoreUnavailable, match="unreachable") as caught:
                    attempt()
                assert caught.value.retryable is True
        finally:
            postgres_server.start()
        deadline = time.monotonic() + RECOVERY_DEADLINE_SECONDS
        while True:  # the same store object reconnects by itself
            try:
                store.update("p", priority=3)
                break
            except StoreUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert store.get("p").priority == 3
    finally:
        store.close()
