"""Calls to Amazon Personalize's write APIs (PutEvents, PutItems) made off the request path.

The local store is the record: an event is acknowledged once it is stored there, and
what Amazon hears is a copy. Made inline, each copy held the request until Amazon
answered, and an Amazon that hangs rather than refuses held it for every attempt's
connect and read timeouts (3 x (1 + 2) s): a vote took 9 s, and a handful of such
requests filled the worker threads every other resolver waits on.

Here a few threads send the copies. Calls with the same key (a user's events) go to
the same thread, in the order they were made; different keys go in parallel, since one
call waits ~50 ms on Amazon and one thread alone would cap a worker at ~20 copies a
second where the request threads had sent several at once. Bounded queues keep memory
bounded through an outage; what does not fit is dropped and counted.

Records (PutItems: the polls) go another way, :class:`RecordBatcher`: Amazon takes at
most 10 a call and 10 calls a second per dataset group, so one call per poll written
capped the app at 10 polls a second before Amazon throttled, and each throttled copy
was dropped after botocore's retries. A record's latest state waits in one map, 10 go
to a call, calls are paced, and a throttled call's records wait and go again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from itertools import islice
from typing import Any

from recsys.errors import HunchError

log = logging.getLogger(__name__)

# ~1 KB an event: 10 MB at most through an outage, minutes of a busy app's writes.
FORWARD_QUEUE_MAX = 10_000
# Calls in flight at once (botocore's default connection pool holds 10).
FORWARD_THREADS = 4
# A graceful shutdown sends what is queued for at most this long.
CLOSE_SECONDS = 5.0
# PutItems: at most 10 records a call, 10 calls a second per dataset group (Amazon's
# quotas). One process paces its calls to that rate; several processes share the quota,
# and Amazon's throttling (records wait, then go again) paces them further.
RECORDS_PER_CALL = 10
RECORD_CALL_INTERVAL = 0.1
# After a throttled call: wait this long, doubling at each throttle in a row, up to the
# second value.
RECORD_RETRY_SECONDS = (1.0, 30.0)


class BackgroundForwarder:
    """Threads running queued calls, in order per key; each call handles its own
    failures."""

    def __init__(self, *, max_pending: int = FORWARD_QUEUE_MAX, threads: int = FORWARD_THREADS,
                 on_dropped: Callable[[], None] | None = None):
        self._batchers: list[RecordBatcher] = []
        per_thread = max(1, max_pending // threads)
        self._queues: list[queue.Queue[Callable[[], None] | None]] = [
            queue.Queue(maxsize=per_thread) for _ in range(threads)]
        self._on_dropped = on_dropped
        self.dropped = 0
        self._threads = [threading.Thread(target=self._run, args=(q,), daemon=True,
                                          name=f"personalize-forwarder-{n}")
                         for n, q in enumerate(self._queues)]
        for thread in self._threads:
            thread.start()

    def submit(self, key: str, call: Callable[[], None]) -> bool:
        """Queue ``call`` behind the earlier calls of ``key``; False (and counted) when
        that queue is full."""
        # crc32, not hash(): the same key picks the same thread in every process run
        shard = self._queues[zlib.crc32(key.encode("utf-8", "surrogatepass"))
                             % len(self._queues)]
        try:
            shard.put_nowait(call)
        except queue.Full:
            self.dropped += 1
            if self._on_dropped is not None:
                self._on_dropped()
            return False
        return True

    def records(self, send: Callable[[dict[str, Any]], None], **options: Any
                ) -> RecordBatcher:
        """A :class:`RecordBatcher` for ``send`` whose sending this forwarder's
        ``wait_idle`` and ``close`` include."""
        batcher = RecordBatcher(send, **options)
        self._batchers.append(batcher)
        return batcher

    def wait_idle(self, timeout: float) -> bool:
        """Whether everything queued so far was sent within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while any(q.unfinished_tasks for q in self._queues):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return all(b.wait_idle(max(0.0, deadline - time.monotonic())) for b in self._batchers)

    def close(self, timeout: float = CLOSE_SECONDS) -> None:
        """Send what is queued (for at most ``timeout``), then stop the threads."""
        deadline = time.monotonic() + timeout
        self.wait_idle(timeout)
        for batcher in self._batchers:
            batcher.close(max(0.0, deadline - time.monotonic()))
        for q in self._queues:
            try:
                q.put(None, timeout=0.1)
            except queue.Full:
                pass  # the threads are daemons: they end with the process
        for thread in self._threads:
            thread.join(timeout=0.5)

    def _run(self, calls: queue.Queue[Callable[[], None] | None]) -> None:
        while True:
            call = calls.get()
            try:
                if call is None:
                    return
                call()
            except Exception:  # noqa: BLE001 - a call reports its own failures; this is a bug
                log.exception("a Personalize forwarding call failed")
            finally:
                calls.task_done()


class RecordsNotSent(HunchError):
    """Records the batcher could not send before it closed (or submitted after): the
    store has them; Amazon has them after an import of `hunch personalize export-items`."""

    def __init__(self, records: int):
        self.records = records
        super().__init__(
            f"{records:,} record(s) had not gone to Amazon when the forwarder closed; the "
            "store has them: import `hunch personalize export-items` into Amazon's Items "
            "dataset (incremental) to bring it up to date")


class RecordBatcher:
    """The latest state of each record (a poll by id), sent to ``send`` up to
    ``per_call`` at a time by one thread, one call per ``interval`` at most. A call
    ``throttled(exc)`` says was refused for the rate puts its records back (a newer
    state written meanwhile wins) and waits (RECORD_RETRY_SECONDS); one
    ``refused_as_input(exc)`` says was refused for what it holds is sent again record
    by record, so one bad record costs one. Other failures, and what a full map cannot
    take, are reported to ``on_failed(exc or None, records)`` and dropped: the store has
    the record."""

    def __init__(self, send: Callable[[dict[str, Any]], None], *,
                 throttled: Callable[[BaseException], bool] = lambda exc: False,
                 refused_as_input: Callable[[BaseException], bool] = lambda exc: False,
                 on_failed: Callable[[BaseException | None, int], None] = lambda e, n: None,
                 per_call: int = RECORDS_PER_CALL, interval: float = RECORD_CALL_INTERVAL,
                 retry: tuple[float, float] = RECORD_RETRY_SECONDS,
                 max_pending: int = FORWARD_QUEUE_MAX):
        self._send, self._throttled, self._refused = send, throttled, refused_as_input
        self._on_failed = on_failed
        self._per_call, self._interval, self._retry = per_call, interval, retry
        self._max_pending = max_pending
        self._pending: dict[str, Any] = {}  # insertion order: oldest first
        self._in_flight = 0
        self._closing = False
        self._closed = False  # nothing is taken or sent any more
        self._cond = threading.Condition()
        self._wake = threading.Event()  # ends a pause early when closing
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="personalize-records")
        self._thread.start()

    def submit(self, record_id: str, record: Mapping[str, Any]) -> bool:
        """Queue ``record`` as ``record_id``'s latest state (replacing one not yet
        sent); False (and reported) when the map is full."""
        with self._cond:
            if self._closed:
                full = True
            elif record_id not in self._pending and len(self._pending) >= self._max_pending:
                full = True
            else:
                full = False
                self._pending.pop(record_id, None)  # to the back: the newest
                self._pending[record_id] = dict(record)
                self._cond.notify_all()
        if full:
            self._on_failed(RecordsNotSent(1) if self._closed else None, 1)
        return not full

    def wait_idle(self, timeout: float) -> bool:
        """Whether everything submitted so far was sent (or given up) within
        ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float = CLOSE_SECONDS) -> None:
        """Send what waits (for at most ``timeout``; a throttled call is not retried
        then), then stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._wake.set()
        self._thread.join(timeout)
        # What is left would go on after the store closed, or be lost with the process
        # unreported: given up, reported; the thread ends after its call in flight.
        with self._cond:
            left = len(self._pending)
            self._pending.clear()
            self._closed = True
            self._cond.notify_all()
        if left:
            self._on_failed(RecordsNotSent(left), left)

    def _run(self) -> None:
        pause = 0.0
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending:
                    return  # closing, and nothing waits
                batch = dict(islice(self._pending.items(), self._per_call))
                for record_id in batch:
                    del self._pending[record_id]
                self._in_flight = len(batch)
            try:
                pause = self._deliver(batch, pause)
            finally:
                with self._cond:
                    self._in_flight = 0
                    self._cond.notify_all()
            if not self._closing:
                self._wake.wait(max(self._interval, pause))

    def _deliver(self, batch: dict[str, Any], pause: float) -> float:
        """Send one batch; the pause before the next call."""
        try:
            self._send(batch)
            return 0.0
        except Exception as exc:  # noqa: BLE001 - reported below; the store has the record
            if self._throttled(exc) and not self._closing:
                with self._cond:
                    for record_id, record in batch.items():
                        self._pending.setdefault(record_id, record)  # a newer state wins
                first, most = self._retry
                self._on_failed(exc, 0)  # retried: reported, nothing lost
                return min(most, max(first, pause * 2))
            if len(batch) > 1 and self._refused(exc):
                for record_id, record in batch.items():
                    try:
                        self._send({record_id: record})
                    except Exception as one:  # noqa: BLE001 - reported
                        self._on_failed(one, 1)
                return pause
            self._on_failed(exc, len(batch))
            return pause
