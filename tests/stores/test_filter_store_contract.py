"""Named filters: one contract, run on the SQLite store and on PostgreSQL (real server).

The SQLite-only file-sharing test stays in tests/recsys/test_filter_store.py."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from recsys.filters import (
    Catalog,
    FilterAlreadyExists,
    FilterContext,
    InvalidFilterExpression,
    InvalidFilterName,
    UnknownFilter,
    open_filter_store,
)
from recsys.filters.pg_store import PostgresFilterStore
from recsys.promotions_pg import PostgresPromotionStore
from recsys.schemas import ITEMS
from recsys.store_db import SchemaOutdated, StoreUnavailable

NO_VOTED = 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("HUNCH")'
BY_CATEGORY = "INCLUDE ItemID WHERE Items.CATEGORY IN ($CATEGORY)"
REPO = Path(__file__).resolve().parents[2]
HOSTS = 4  # stores racing on one name
RECOVERY_DEADLINE_SECONDS = 60  # generous: a bound on waiting, not a speed assertion


def open_store(url: str, **kwargs):
    """A store as a host opens it; the PostgreSQL schema is brought up to date first,
    as `hunch db upgrade` would."""
    return open_filter_store(url, upgrade=True, **kwargs)


def test_create_get_list_delete(store_url):
    with open_store(store_url) as store:
        created = store.create("no-voted", NO_VOTED)
        store.create("by_category", BY_CATEGORY)
        assert store.get("no-voted").expression == NO_VOTED
        assert [f.name for f in store.list()] == ["by_category", "no-voted"]
        store.delete("no-voted")
        assert [f.name for f in store.list()] == ["by_category"]
        with pytest.raises(UnknownFilter, match="no-voted"):
            store.get("no-voted")
        with pytest.raises(UnknownFilter):
            store.delete("no-voted")
    assert created.created_at > 0


def test_list_is_in_byte_order_of_names(store_url):
    with open_store(store_url) as store:
        for name in ("b", "B", "9x", "a1", "A_"):
            store.create(name, NO_VOTED)
        assert [f.name for f in store.list()] == sorted(["b", "B", "9x", "a1", "A_"])


def test_stored_filter_is_ready_to_apply(store_url):
    catalog = Catalog({"p1": {"CATEGORY": "sport"}, "p2": {"CATEGORY": "music"}})
    with open_store(store_url) as store:
        store.create("by-category", BY_CATEGORY)
        compiled = store.get("by-category").compiled
    ctx = FilterContext(catalog)
    assert compiled.apply(["p1", "p2"], ctx, {"CATEGORY": '"music"'}) == ["p2"]


def test_filters_are_immutable(store_url):
    with open_store(store_url) as store:
        first = store.create("f", NO_VOTED)
        again = store.create("f", NO_VOTED)  # re-running a deploy script is fine
        assert again.expression == NO_VOTED and again.created_at == first.created_at
        with pytest.raises(FilterAlreadyExists, match="cannot be edited"):
            store.create("f", BY_CATEGORY)
        assert store.get("f").expression == NO_VOTED
        store.delete("f")
        store.create("f", BY_CATEGORY)  # delete, then re-create, changes it
        assert store.get("f").expression == BY_CATEGORY


def test_invalid_expression_or_name_stores_nothing(store_url):
    with open_store(store_url, items_schema=ITEMS) as store:
        with pytest.raises(InvalidFilterExpression, match="at position"):
            store.create("bad", 'INCLUDE ItemID WHERE Items.CATEGORY INN ("x")')
        with pytest.raises(InvalidFilterExpression, match="textual"):
            store.create("bad", 'INCLUDE ItemID WHERE Items.QUESTION IN ("x")')
        with pytest.raises(InvalidFilterExpression, match="NUL"):
            store.create("bad", 'INCLUDE ItemID WHERE Items.CATEGORY IN ("a\x00b")')
        for name in ("", "-dash-first", "has space", "x" * 64):
            with pytest.raises(InvalidFilterName):
                store.create(name, NO_VOTED)
        assert store.list() == []
        assert store.version() == 0  # nothing was written


def test_survives_reopen_and_a_killed_process(store_url):
    # A child process creates a filter and dies without closing anything (like kill -9).
    child = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(REPO)!r})
        from recsys.filters import open_filter_store
        store = open_filter_store({store_url!r}, upgrade=True)
        store.create("from-child", {NO_VOTED!r})
        os._exit(0)
        """
    )
    subprocess.run([sys.executable, "-c", child], check=True, timeout=60)
    with open_store(store_url) as store:
        assert store.get("from-child").expression == NO_VOTED
        store.create("second", BY_CATEGORY)
    with open_store(store_url) as store:
        assert [f.name for f in store.list()] == ["from-child", "second"]


def test_two_hosts_see_each_others_writes_and_versions(store_url):
    with open_store(store_url) as host_a, open_store(store_url) as host_b:
        seen = host_b.version()
        host_a.create("from-a", NO_VOTED)
        assert host_b.version() > seen  # b learns of the change by one cheap read
        assert host_b.get("from-a").expression == NO_VOTED
        host_a.create("from-a", NO_VOTED)  # a no-op create is no change
        unchanged = host_b.version()
        assert host_a.version() == unchanged
        host_b.delete("from-a")
        assert host_a.version() > unchanged
        with pytest.raises(UnknownFilter):
            host_a.get("from-a")


def test_a_delete_elsewhere_is_seen_once_the_cached_definition_is_old_enough(store_url):
    with open_store(store_url) as host_a, open_store(store_url) as host_b:
        host_a.create("f", NO_VOTED)
        assert host_b.get("f", max_age_seconds=3600).expression == NO_VOTED
        host_a.delete("f")
        assert host_b.get("f", max_age_seconds=3600).expression == NO_VOTED  # cached
        with pytest.raises(UnknownFilter):
            host_b.get("f", max_age_seconds=0)


def test_a_missing_filter_is_remembered_as_missing_as_long_as_a_definition(store_url):
    """A promotion naming a deleted filter asks for it on every feed request: the answer
    "missing" is reused for max_age_seconds like a definition, and a create (here or,
    once the answer is old enough, on another host) is seen."""
    with open_store(store_url) as host_a, open_store(store_url) as host_b:
        reads = []
        original = host_b._get

        def counted(name):
            reads.append(name)
            return original(name)

        host_b._get = counted
        for _ in range(5):
            with pytest.raises(UnknownFilter):
                host_b.get("gone", max_age_seconds=3600)
        assert reads == ["gone"]  # one store read for five requests
        host_a.create("gone", NO_VOTED)
        with pytest.raises(UnknownFilter):
            host_b.get("gone", max_age_seconds=3600)  # still the remembered answer
        assert host_b.get("gone", max_age_seconds=0).expression == NO_VOTED
        host_b.create("mine", NO_VOTED)  # a create here is seen here at once
        with pytest.raises(UnknownFilter):
            host_a.get("mine2", max_age_seconds=3600)
        host_a.create("mine2", NO_VOTED)
        assert host_a.get("mine2", max_age_seconds=3600).expression == NO_VOTED
        # names are the client's to choose: the missing ones remembered stay bounded
        from recsys.filters.store import MAX_REMEMBERED_MISSING

        for k in range(3 * MAX_REMEMBERED_MISSING):
            with pytest.raises(UnknownFilter):
                host_b.get(f"tried-{k}", max_age_seconds=3600)
        assert len(host_b._read_at) <= MAX_REMEMBERED_MISSING + 1
        assert host_b.get("gone", max_age_seconds=3600).expression == NO_VOTED  # kept


def test_concurrent_creates_of_one_name_one_wins(store_url):
    """Several hosts create one name with different expressions at once: exactly one
    stores its expression, every other gets FilterAlreadyExists."""
    expressions = [f'INCLUDE ItemID WHERE Items.CATEGORY IN ("c{i}")' for i in range(HOSTS)]
    stores = [open_store(store_url) for _ in range(HOSTS)]
    start = threading.Barrier(HOSTS)
    outcomes: list[object] = [None] * HOSTS

    def create(i: int) -> None:
        start.wait()
        try:
            outcomes[i] = stores[i].create("race", expressions[i])
        except Exception as exc:  # noqa: BLE001 - collected and checked below
            outcomes[i] = exc

    threads = [threading.Thread(target=create, args=(i,)) for i in range(HOSTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        winners = [o for o in outcomes if not isinstance(o, Exception)]
        losers = [o for o in outcomes if isinstance(o, Exception)]
        assert len(winners) == 1, outcomes
        assert all(isinstance(e, FilterAlreadyExists) for e in losers), losers
        assert stores[0].get("race").expression == winners[0].expression
        assert [f.name for f in stores[0].list()] == ["race"]
    finally:
        for s in stores:
            s.close()


def test_the_factory_keeps_the_sqlite_file_where_it_is(tmp_path):
    path = tmp_path / "events.sqlite3"
    with open_filter_store(f"sqlite://{path}") as store:
        store.create("f", NO_VOTED)
    with open_filter_store(path) as store:  # the plain path of today
        assert [f.name for f in store.list()] == ["f"]


# --- PostgreSQL only: versioned schema, outages ------------------------------------


def _schema_rows(url: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT component, version FROM hunch_schema").fetchall())


def test_an_outdated_schema_says_to_run_hunch_db_upgrade(postgres_url):
    with pytest.raises(SchemaOutdated, match="hunch db upgrade"):
        open_filter_store(postgres_url)
    with open_filter_store(postgres_url, upgrade=True) as store:
        store.create("f", NO_VOTED)
    assert _schema_rows(postgres_url) == {"filters": 1}
    with open_filter_store(postgres_url) as store:  # up to date: opens without upgrading
        assert [f.name for f in store.list()] == ["f"]
        store.upgrade()  # nothing pending: a no-op
    assert _schema_rows(postgres_url) == {"filters": 1}


def test_hosts_upgrading_at_once_apply_each_migration_once(postgres_url):
    opened: list[object] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2 * HOSTS)

    def open_and_upgrade(cls) -> None:
        start.wait()
        try:
            opened.append(cls(postgres_url, upgrade=True))
        except BaseException as exc:  # noqa: BLE001 - checked below
            errors.append(exc)

    threads = [threading.Thread(target=open_and_upgrade, args=(cls,))
               for cls in (PostgresFilterStore, PostgresPromotionStore) for _ in range(HOSTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for store in opened:
        store.close()
    assert errors == []
    assert _schema_rows(postgres_url) == {"filters": 1, "promotions": 1}


def test_an_unreachable_server_is_a_retryable_error_and_the_store_recovers(
        postgres_server, postgres_url):
    store = open_filter_store(postgres_url, upgrade=True)
    try:
        store.create("f", NO_VOTED)
        assert store.get("f", max_age_seconds=0).expression == NO_VOTED
        postgres_server.stop()
        try:
            with pytest.raises(StoreUnavailable, match="unreachable") as caught:
                store.create("g", NO_VOTED)
            assert caught.value.retryable is True
            with pytest.raises(StoreUnavailable):
                store.list()
            # The feed's path keeps serving the definition it read before.
            assert store.get("f", max_age_seconds=0).expression == NO_VOTED
        finally:
            postgres_server.start()
        deadline = time.monotonic() + RECOVERY_DEADLINE_SECONDS
        while True:  # no reopen, no restart of the store: it reconnects by itself
            try:
                store.create("g", NO_VOTED)
                break
            except StoreUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert [f.name for f in store.list()] == ["f", "g"]
    finally:
        store.close()


def test_a_store_opened_during_an_outage_works_once_the_server_is_back(
        postgres_server, postgres_url):
    open_filter_store(postgres_url, upgrade=True).close()
    postgres_server.stop()
    try:
        store = open_filter_store(postgres_url)  # a gateway starting while it is down
        with pytest.raises(StoreUnavailable):
            store.list()
    finally:
        postgres_server.start()
    try:
        deadline = time.monotonic() + RECOVERY_DEADLINE_SECONDS
        while True:
            try:
                assert store.list() == []
                break
            except StoreUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        store.close()


def test_an_unknown_store_url_is_a_typed_error_naming_the_choices():
    from recsys.promotions import open_promotion_store
    from recsys.store_db import InvalidStoreUrl

    for opener in (open_filter_store, open_promotion_store):
        with pytest.raises(InvalidStoreUrl, match="postgresql://"):
            opener("mysql://db/hunch")
