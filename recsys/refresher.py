"""Keeping one serving process in step with the shared store, off the request path.

Several worker processes (and hosts) write to one event store; each serves from its own
in-memory catalog and models. A :class:`Refresher` runs one background thread that, every
``interval_seconds``, does two things:

- **catalog**: reads the polls added or changed since the last catalog sequence number it
  read (one indexed query when nothing changed) into the catalog the filters read, and
  makes them recommendable by the live recipes (new polls, edited text and categories);
- **models**: folds the events stored since each live model's last sequence number into
  it (:meth:`RecipeService.model`), which also swaps in a newer trained version when one
  was published. Without this the first feed request after a burst of events paid for
  folding all of them under the model's lock (about 0.5 s for 5,000 impressions), and
  every page queued behind it waited too: the feed's p99 at 200 req/s.

Faults: the store may go away (a PostgreSQL restart, a full disk, a locked file). A
failing task logs once per outage with the reason, is tried again after a delay that
doubles up to ``max_backoff_seconds``, and resumes from the sequence numbers it had
reached: they only advance after a page is applied, so nothing is skipped and nothing is
applied twice. Meanwhile requests serve from what is in memory. :meth:`Refresher.health`
says, per task, when it last succeeded and how many times in a row it has failed.

The backoff is two lines of arithmetic, written here rather than with a retry library:
the loop runs forever on its own schedule (it never gives up, and a success resets it),
which is not the call-until-success shape retry libraries wrap.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from recsys.errors import HunchError

if TYPE_CHECKING:  # only for hints: settings import this module's defaults, cheaply
    from recsys.filters import Catalog
    from recsys.serving import RecipeService

log = logging.getLogger(__name__)

# How often a worker looks for polls and events that other workers stored. Both looks
# are one indexed query when nothing is new, and folding 1 s of events is a few ms; a
# poll upserted on one host is served by the others within a second (issue 16), which a
# 1 s interval met only when the machine had nothing else to do.
REFRESH_SECONDS = 0.25
# The longest wait between two tries while the store is failing: a store that is down
# (PostgreSQL restarting, a full disk) is asked again after 0.25, 0.5, 1, 2, 4, 8 s,
# then every 10 s. A restart of a few seconds is noticed a moment after it ends; a long
# outage costs each worker one query per task every 10 s instead of four a second.
REFRESH_BACKOFF_LIMIT_SECONDS = 10.0

CATALOG = "catalog"
MODELS = "models"
TASKS = (CATALOG, MODELS)  # every refresher's; a gateway may add its own (extra_tasks)


class CatalogSource(Protocol):
    """What the refresher reads from :class:`recsys.events.EventStore`."""

    def catalog_seq(self) -> int: ...

    def items(self) -> Any: ...

    def items_updated_since(self, seq: int) -> tuple[int, dict[str, dict[str, Any]]]: ...

    def deletions_since(self, seq: int) -> tuple[int, dict[str, int]]: ...


class InvalidRefreshSetting(HunchError):
    """A refresh interval or backoff limit that cannot work (zero, negative)."""


@dataclass(frozen=True)
class RefreshHealth:
    """How one refresh task is doing (for metrics and the readiness route)."""

    task: str
    last_success: float | None  # Unix time the task last finished; None: not yet
    consecutive_failures: int
    last_error: str | None  # the reason of the newest failure, while failing
    retry_in_seconds: float  # the wait before the next try (grows while failing)


class Refresher:
    """Keeps ``catalog`` and the live models of ``recipes`` in step with ``store``.

    ``catalog_lock`` is the lock requests hold while they read ``catalog``. Call
    :meth:`load_catalog` once before serving, :meth:`start` after the models are loaded
    (the thread must not load them a second time, concurrently), :meth:`stop` at
    shutdown, before the stores are closed. :meth:`run_once` does one round now.
    """

    def __init__(self, store: CatalogSource, catalog: Catalog, catalog_lock: threading.Lock,
                 recipes: RecipeService, *, interval_seconds: float = REFRESH_SECONDS,
                 max_backoff_seconds: float | None = None,
                 on_health: Callable[[RefreshHealth], None] | None = None,
                 extra_tasks: Mapping[str, Callable[[], None]] | None = None) -> None:
        """``extra_tasks``: more steps run every round with the same health and backoff
        (the gateway's embedded follower graph reads its journal so)."""
        if not interval_seconds > 0:
            raise InvalidRefreshSetting(
                f"the refresh interval must be more than 0 seconds, got {interval_seconds!r}")
        if max_backoff_seconds is None:  # never wait less after a failure than between rounds
            max_backoff_seconds = max(REFRESH_BACKOFF_LIMIT_SECONDS, interval_seconds)
        if not max_backoff_seconds >= interval_seconds:
            raise InvalidRefreshSetting(
                f"the refresh backoff limit ({max_backoff_seconds!r} s) must be at least the "
                f"refresh interval ({interval_seconds!r} s)")
        self.store = store
        self.catalog = catalog
        self.catalog_lock = catalog_lock
        self.recipes = recipes
        self.interval_seconds = interval_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.on_health = on_health
        self.catalog_seq = 0  # the newest catalog sequence number applied
        self.deletions_seq = 0  # ... and of the deletions applied (read on their own)
        self.crashed: str | None = None  # set if the thread ever ends by an unexpected error
        self._steps: dict[str, Callable[[], None]] = {
            CATALOG: self.refresh_catalog, MODELS: self.fold_new_events, **(extra_tasks or {})}
        self._health = {task: RefreshHealth(task, None, 0, None, interval_seconds)
                        for task in self._steps}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ the work

    def load_catalog(self) -> None:
        """Read the whole catalog (startup); later refreshes read only what changed."""
        seq = self.store.catalog_seq()  # first: a write during the read is read again later
        records = {r["ITEM_ID"]: r for r in self.store.items()}
        with self.catalog_lock:
            self.catalog.upsert(records)
            self.catalog_seq = seq
        self.refresh_deletions()  # every tombstone: trained models may know those polls

    def refresh_catalog(self) -> None:
        """Pick up polls that other workers added or changed: those stamped with a
        catalog sequence number above the last one applied here."""
        while True:
            # A page at a time, outside the lock: requests keep reading the catalog.
            seq, records = self.store.items_updated_since(self.catalog_seq)
            if not records:
                break
            with self.catalog_lock:
                self.catalog.upsert(records)
                self.catalog_seq = seq
            # New polls become recommendable here too (trending, exploration); edited
            # ones get their new text and categories (a worker's own edits come back
            # once too: re-applying a record is harmless).
            self.recipes.add_items(records)
        self.refresh_deletions()

    def refresh_deletions(self) -> None:
        """Polls deleted through any worker or host since the last deletion applied:
        every source, promotion and author list stops serving them (the catalog's
        live mask), as a new poll starts being served, within one refresh."""
        while True:
            seq, deleted = self.store.deletions_since(self.deletions_seq)
            if not deleted:
                return
            with self.catalog_lock:
                self.catalog.delete(deleted)
                self.deletions_seq = seq

    def serve_deleted(self, poll_ids: Iterable[str]) -> None:
        """Polls this worker just deleted: never served again from the next request on
        (the refresh reads them back once; deleting twice is harmless)."""
        with self.catalog_lock:
            self.catalog.delete(poll_ids)

    def serve_written(self, records: dict[str, dict[str, Any]]) -> None:
        """Polls this worker just wrote: served at once, without waiting for the next
        refresh (which reads them back once; re-applying a record is harmless)."""
        with self.catalog_lock:
            self.catalog.upsert(records)
        self.recipes.add_items(records)

    def fold_new_events(self) -> None:
        """Fold newly stored events into every live model (and swap in newer versions).
        Every recipe gets its turn; the first failure is raised after all were tried.
        The round reads the store's head once, as a feed request does: a model already
        there reads nothing, so a quiet round is one query, not one per recipe."""
        failure: Exception | None = None
        head = getattr(self.recipes, "head", None)  # the head the recipes follow, if any
        with head.request() if head is not None else contextlib.nullcontext():
            for recipe in self.recipes.available():
                try:
                    self.recipes.model(recipe)  # folds what is new, under the model's lock
                except Exception as exc:  # noqa: BLE001 - raised below, once the others ran
                    failure = failure or exc
        if failure is not None:
            raise failure

    def run_once(self) -> dict[str, RefreshHealth]:
        """One round of every task now; failures are recorded, not raised."""
        for task in self._steps:
            self._attempt(task)
        return self.health()

    # ------------------------------------------------------------------ health

    def health(self) -> dict[str, RefreshHealth]:
        """Each task's last success, consecutive failures and next wait."""
        return dict(self._health)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _attempt(self, task: str) -> RefreshHealth:
        before = self._health[task]
        try:
            self._steps[task]()
        except Exception as exc:  # noqa: BLE001 - any store error: logged, retried later
            failures = before.consecutive_failures + 1
            reason = f"{type(exc).__name__}: {exc}"
            health = RefreshHealth(task, before.last_success, failures, reason,
                                   self._backoff(failures))
            if failures == 1:  # once per outage; the recovery is logged too
                log.warning("refresh of the %s failed (%s); serving what is in memory, "
                            "retrying with waits up to %g s", task, reason,
                            self.max_backoff_seconds, exc_info=exc)
            else:
                log.debug("refresh of the %s failed again (%d in a row): %s",
                          task, failures, reason)
        else:
            health = RefreshHealth(task, time.time(), 0, None, self.interval_seconds)
            if before.consecutive_failures:
                log.warning("refresh of the %s recovered after %d failure(s)",
                            task, before.consecutive_failures)
        self._health[task] = health
        if self.on_health is not None:
            try:
                self.on_health(health)
            except Exception:  # noqa: BLE001 - reporting must not stop the refresher
                log.exception("reporting the %s refresh's health failed", task)
        return health

    def _backoff(self, failures: int) -> float:
        """The wait after ``failures`` failures in a row: the interval, doubled per
        further failure, at most ``max_backoff_seconds``."""
        return min(self.max_backoff_seconds, self.interval_seconds * 2 ** (failures - 1))

    # ------------------------------------------------------------------ thread

    def start(self) -> None:
        """Run the tasks every ``interval_seconds`` on a thread (once per Refresher)."""
        if self._thread is not None:
            raise RuntimeError("this refresher was already started")
        self._thread = threading.Thread(target=self._run, name="refresher", daemon=True)
        self._thread.start()

    @property
    def stopping(self) -> bool:
        """:meth:`stop` was called: a task should not start long work."""
        return self._stop.is_set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread; it may be mid-read, so wait up to ``timeout`` for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            due = {task: time.monotonic() + self.interval_seconds for task in self._steps}
            while not self._stop.wait(max(0.0, min(due.values()) - time.monotonic())):
                for task in self._steps:
                    if due[task] <= time.monotonic():
                        due[task] = time.monotonic() + self._attempt(task).retry_in_seconds
        except BaseException as exc:
            # Not a store fault (those are caught per task): a bug, or the interpreter
            # going down. Said loudly here and by the readiness route; the thread ends.
            self.crashed = f"{type(exc).__name__}: {exc}"
            log.critical("the refresher stopped: %s; this worker's catalog and models no "
                         "longer follow the store", self.crashed, exc_info=exc)
