"""What callers need from an event store, and which one a URL selects.

Two stores keep the same contract (``tests/stores/test_event_store_contract.py`` runs the
same assertions on both):

* :class:`recsys.events.EventStore`: one embedded SQLite file, the default. One host (its
  worker processes share the file).
* :class:`recsys.postgres_events.PostgresEventStore`: PostgreSQL, for several hosts that
  share events, the catalog and the sequence tail.

:func:`open_event_store` picks one from ``HUNCH_STORE_URL``: ``sqlite:///abs/path`` or a
plain path for SQLite, ``postgresql://...`` (or ``postgres://``) for PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

from recsys import store_db
from recsys.admission import EventRules
from recsys.events import (
    DEFAULT_EVENTS_SINCE_LIMIT,
    DEFAULT_LATEST_PER_TYPE,
    PAGE_SIZE,
    EventStore,
    EventStoreError,
    ImportCounts,
    ImportMode,
    Impression,
    Interaction,
    PollDeletion,
)
from recsys.store_db import SchemaOutdated, store_location

__all__ = ["EventStoreProtocol", "SchemaOutdated", "StoreUnavailable", "describe_url",
           "open_event_store", "upgrade_stores"]



class StoreUnavailable(store_db.StoreUnavailable, EventStoreError):
    """The event store's server cannot be reached now (down, restarting, network).
    Nothing the caller did is wrong: retry later. A write that raised this may or may not
    have been committed; retrying it is safe, events are de-duplicated by id. (Also an
    :class:`EventStoreError`, and the :class:`recsys.store_db.StoreUnavailable` that
    every shared store raises.)"""

    retryable = True


@runtime_checkable
class EventStoreProtocol(Protocol):
    """The event store as its callers use it (gateway services, dataset import/export,
    the CLI, :class:`recsys.events.LatestInteractionsCache`, serving's event tail).

    Every write is all-or-nothing; appended events are durable once the call returns;
    an event id is stored once (a later duplicate is ignored); sequence numbers
    (:meth:`events_since`) and catalog sequence numbers (:meth:`items_updated_since`)
    grow in commit order, so a follower never misses a write committed later.
    """

    rules: EventRules | None

    # lifecycle
    def check_writable(self) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...

    # events
    def check_live(self, event: Interaction | Impression) -> None: ...
    def append(self, event: Interaction | Impression) -> bool: ...
    def append_many(self, events: Iterable[Interaction | Impression]) -> int: ...
    def counted_event_id(self, event: Interaction) -> str | None: ...
    def interactions(self) -> Iterator[Interaction]: ...
    def impressions(self) -> Iterator[Impression]: ...
    def events_between(self, start_ts: int, end_ts: int,
                       event_types: Iterable[str] | None = None) -> Iterator[Interaction]: ...
    def latest_events(self, user_id: str, per_type: int = DEFAULT_LATEST_PER_TYPE,
                      event_types: Iterable[str] | None = None,
                      ) -> dict[str, list[Interaction]]: ...
    def events_since(self, seq: int, limit: int = DEFAULT_EVENTS_SINCE_LIMIT,
                     ) -> list[tuple[int, Interaction | Impression]]: ...
    def last_seq(self) -> int: ...
    def stored_event_ids(self, pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]: ...
    def counts(self) -> dict[str, int]: ...
    def count_events(self, user_id: str | None = None, item_id: str | None = None,
                     event_type: str | None = None, since: int | None = None) -> int: ...
    def count_items(self) -> int: ...
    def seq_before(self, timestamp: int) -> int: ...
    def latest_item_ids(self, user_id: str, per_type: int = DEFAULT_LATEST_PER_TYPE,
                        ) -> dict[str, list[str]]: ...
    def user_context(self, user_id: str, per_type: int = DEFAULT_LATEST_PER_TYPE,
                     ) -> tuple[dict[str, list[str]], dict[str, Any] | None]: ...
    def interacting_users_since(self, seq: int, limit: int = DEFAULT_EVENTS_SINCE_LIMIT,
                                ) -> tuple[int, set[str], bool]: ...

    # recommendations (implicit impressions)
    def record_recommendations(self, rows: Iterable[tuple[str, str, Iterable[str], int]],
                               ) -> int: ...
    def forget_recommendations_before(self, timestamp: int, batch: int = ...) -> int: ...
    def record_recommendation(self, recommendation_id: str, user_id: str,
                              item_ids: Iterable[str], timestamp: int) -> bool: ...
    def recommendation_items(self, recommendation_id: str) -> tuple[str, ...] | None: ...
    def impression_counts(self, since: int | None = None) -> dict[str, int]: ...

    # catalog
    def upsert_items(self, records: Iterable[Mapping[str, Any]]) -> int: ...
    def upsert_item(self, record: Mapping[str, Any], *, acting_user: str,
                    admin: bool = False) -> dict[str, Any]: ...
    def delete_item(self, item_id: str, *, acting_user: str, admin: bool = False,
                    now: int | None = None) -> PollDeletion: ...
    def deleted_item_ids(self, item_ids: Iterable[str]) -> list[str]: ...
    def deletions_since(self, seq: int, limit: int = PAGE_SIZE,
                        ) -> tuple[int, dict[str, int]]: ...
    def deletions(self) -> Iterator[PollDeletion]: ...
    def import_deletions(self, deletions: Iterable[PollDeletion]) -> int: ...
    def upsert_users(self, records: Iterable[Mapping[str, Any]]) -> int: ...
    def get_item(self, item_id: str) -> dict[str, Any] | None: ...
    def unknown_item_ids(self, item_ids: Iterable[str]) -> list[str]: ...
    def get_items(self, item_ids: Iterable[str]) -> dict[str, dict[str, Any]]: ...
    def get_user(self, user_id: str) -> dict[str, Any] | None: ...
    def catalog_seq(self) -> int: ...
    def items_updated_since(self, seq: int, limit: int = PAGE_SIZE,
                            ) -> tuple[int, dict[str, dict[str, Any]]]: ...
    def items(self) -> Iterator[dict[str, Any]]: ...
    def users(self) -> Iterator[dict[str, Any]]: ...

    # bulk
    def import_bulk(self, interactions: Iterable[Interaction] = (),
                    impressions: Iterable[Impression] = (),
                    items: Iterable[Mapping[str, Any]] = (),
                    users: Iterable[Mapping[str, Any]] = (),
                    mode: ImportMode = "incremental",
                    deletions: Iterable[PollDeletion] = ()) -> ImportCounts: ...


def is_postgres_url(url: str | Path) -> bool:
    return store_location(url)[0] == "postgresql"


def store_exists(url: str | Path) -> bool:
    """Whether ``url`` names a store that is there: a SQLite file that exists (opening
    one creates it, empty), or any PostgreSQL URL (asked when opened)."""
    kind, where = store_location(url)
    return kind == "postgresql" or Path(where).exists()


def describe_url(url: str | Path) -> str:
    """The URL without its password, for messages and logs."""
    if not is_postgres_url(url):
        return str(url)
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(str(url))
    except Exception:  # noqa: BLE001 - a malformed URL: show only its scheme
        return str(url).split("://")[0] + "://..."
    shown = {k: v for k, v in parts.items() if k in ("host", "port", "dbname", "user")}
    return "postgresql://{user}@{host}:{port}/{dbname}".format(
        **{"user": "", "host": "", "port": "", "dbname": "", **shown})


def open_event_store(url: str | Path, rules: EventRules | None = None, *,
                     upgrade: bool = False) -> EventStoreProtocol:
    """The event store ``url`` names (see the module docstring). ``rules`` are the
    admission rules applied to appended (live) and imported (history) events. On
    PostgreSQL an outdated schema raises :class:`SchemaOutdated` unless ``upgrade``
    (what ``hunch db upgrade`` does); a SQLite file migrates itself on open, as always."""
    kind, where = store_location(url)
    if kind == "postgresql":
        from recsys.postgres_events import PostgresEventStore

        return PostgresEventStore(str(where), rules, upgrade=upgrade)
    return EventStore(where, rules)


def upgrade_stores(url: str | Path) -> dict[str, int | str]:
    """``hunch db upgrade``: apply the pending schema migrations of every store ``url``
    names (events, named filters, promotions); returns each component's version
    afterwards. Safe to run from several hosts at once (one advisory lock)."""
    from recsys.filters import open_filter_store
    from recsys.promotions import open_promotion_store

    with open_event_store(url, upgrade=True) as events:
        open_filter_store(url, upgrade=True).close()
        open_promotion_store(url, upgrade=True).close()
        if hasattr(events, "schema_versions"):
            return events.schema_versions()
    from recsys.events import SCHEMA_VERSION

    # SQLite files migrate (or create their tables) when opened, as they always have.
    return {"events": SCHEMA_VERSION, "filters": "ready", "promotions": "ready"}
