"""What each feed response showed, written to the event store off the request path."""

from __future__ import annotations

import logging
import threading
import time

from recsys.errors import InvalidEvent
from recsys.events import FORGET_BATCH_ROWS, EventStore

log = logging.getLogger(__name__)

# How often queued feed responses are written: a request never waits on an fsync, and a
# crash loses at most this long's worth of soft state.
RECOMMENDATION_FLUSH_SECONDS = 0.2
# How often recommendations past their retention are deleted (indexed range deletes of
# FORGET_BATCH_ROWS, FORGET_PAUSE_SECONDS apart: the table held every feed page for ever,
# ~1 KB a page).
FORGET_EVERY_SECONDS = 3600.0
FORGET_PAUSE_SECONDS = 0.1


class RecommendationLog:
    """Writes what each feed response showed, off the request path, in batches.

    A response's items are soft state (they only turn later events that name the
    recommendation id into implicit impressions), so requests append them to a list
    and one thread writes that list every ``RECOMMENDATION_FLUSH_SECONDS`` instead of
    costing each request an fsync. ``close`` flushes what is pending (graceful
    shutdown); a crash loses at most that interval's worth, never an acknowledged event.
    While the store cannot be written (PostgreSQL restarting) batches are dropped, not
    kept (memory must not grow with an outage), with one warning per outage.
    """

    def __init__(self, events: EventStore, *,
                 flush_seconds: float = RECOMMENDATION_FLUSH_SECONDS,
                 retention_seconds: float | None = None,
                 forget_every_seconds: float = FORGET_EVERY_SECONDS):
        self.events = events
        self.flush_seconds = flush_seconds
        # None keeps them all; else one worker of each host deletes what is older every
        # forget_every_seconds (several doing it at once only repeat an empty delete).
        self.retention_seconds = retention_seconds
        self.forget_every_seconds = forget_every_seconds
        self._first_forget = min(forget_every_seconds, 1.0)  # soon after start, then hourly
        self.forgotten = 0
        self.dropped = 0  # recommendations not stored because the store failed
        self._failing = False
        self._pending: list[tuple[str, str, list[str], int]] = []
        # The batch being written: still looked up by pending_items until the store has
        # it (swapped out of _pending, not yet committed, it was in neither place, and a
        # vote forwarded in that window lost the polls its recommendation showed).
        self._writing: list[list[tuple[str, str, list[str], int]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="recommendation-log", daemon=True)
        self._thread.start()
        self._forget_thread: threading.Thread | None = None
        if retention_seconds is not None:
            self._forget_thread = threading.Thread(target=self._run_forget, daemon=True,
                                                   name="recommendation-retention")
            self._forget_thread.start()

    def record(self, recommendation_id: str, user_id: str, item_ids: list[str]) -> None:
        with self._lock:  # no wake-up of the writer: it polls, requests never wait on it
            self._pending.append((recommendation_id, user_id, item_ids, int(time.time())))

    def pending_items(self, recommendation_id: str) -> list[str] | None:
        """The polls of a recommendation recorded here and not yet written (the store
        has the others); None when it is not pending."""
        with self._lock:
            # Newest first: what is pending, then the batches being written.
            for batch in (self._pending, *reversed(self._writing)):
                for pending_id, _, item_ids, _ in reversed(batch):
                    if pending_id == recommendation_id:
                        return item_ids
        return None

    def flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
            if batch:
                self._writing.append(batch)
        if batch:
            try:
                try:
                    self.events.record_recommendations(batch)
                except InvalidEvent:
                    # One bad row must not take the others with it: each alone, and only
                    # what the store refuses is dropped (a bug upstream: ids are checked
                    # where clients send them).
                    self._record_one_by_one(batch)
            except Exception as exc:  # noqa: BLE001 - logged; the feed keeps serving
                self.dropped += len(batch)
                if not self._failing:
                    log.warning("could not store %d recommendation(s) (%s: %s); dropping "
                                "them until the store is back", len(batch),
                                type(exc).__name__, exc, exc_info=exc)
                self._failing = True
            else:
                if self._failing:
                    log.warning("recommendations are stored again (%d dropped so far)",
                                self.dropped)
                self._failing = False
            finally:
                with self._lock:
                    self._writing.remove(batch)

    def _record_one_by_one(self, batch: list) -> None:
        for row in batch:
            try:
                self.events.record_recommendations([row])
            except InvalidEvent as exc:
                self.dropped += 1
                log.error("recommendation %r not stored: %s", str(row[0])[:80], exc)

    def forget_old(self, now: float | None = None) -> int:
        """Delete recommendations past the retention (none without one), a batch at a
        time with a pause between batches (a backlog after an upgrade must not hold the
        store's writers); returns how many. A failure is logged and tried again at the
        next turn; stopping ends it between batches."""
        if self.retention_seconds is None:
            return 0
        before = int((time.time() if now is None else now) - self.retention_seconds)
        deleted = 0
        while not self._stop.is_set():
            try:
                n = self.events.forget_recommendations_before(before, FORGET_BATCH_ROWS)
            except Exception as exc:  # noqa: BLE001 - soft state: the next turn tries again
                log.warning("old recommendations not deleted (%s: %s)",
                            type(exc).__name__, exc)
                break
            deleted += n
            self.forgotten += n
            if n < FORGET_BATCH_ROWS:
                break
            self._stop.wait(FORGET_PAUSE_SECONDS)
        return deleted

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self.flush()

    def _run_forget(self) -> None:
        # Its own thread: the writes of new recommendations go on meanwhile.
        while not self._stop.wait(self._first_forget):
            self._first_forget = self.forget_every_seconds
            self.forget_old()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        if self._forget_thread is not None:
            self._forget_thread.join(timeout=30)  # ends between batches
        self.flush()
        self.events.close()
