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

Events (PutEvents: votes, comments, impressions) go through the same threads as calls
do, in order per key, but through an :class:`EventBatcher`: PutEvents takes 1 to 10
events of one user and one session a call, and Amazon takes 1,000 calls a second per
dataset group, so one call per event capped a busy app at ~1,000 events a second across
its workers, each a round trip. When a thread picks an event up, the events of the same
group (user and session) queued behind it at that moment go with it, up to 10 in their
order; nothing waits for a call to fill (an idle queue sends an event at once), so the
calls grow only while events arrive faster than Amazon answers.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import zlib
from collections.abc import Callable, Hashable, Mapping, Sequence
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
# PutEvents: at most 10 events a call, all of one user and one session (the service
# model's eventList: 1 to 10); 1,000 calls a second per dataset group (Amazon's quotas).
EVENTS_PER_CALL = 10
# After a throttled PutEvents call (once botocore's own attempts were throttled too):
# wait this long, doubling at each throttle in a row, up to the second value, then send
# the same call again. The thread waits, and the calls queued behind it with it.
EVENT_RETRY_SECONDS = (1.0, 30.0)


class _Event:
    """An event an :class:`EventBatcher` queued on a forwarder thread."""

    __slots__ = ("group", "event", "batcher")

    def __init__(self, group: Hashable, event: Any, batcher: EventBatcher):
        self.group, self.event, self.batcher = group, event, batcher


# What a forwarder thread's queue holds: (key, a call or an event), or None to stop.
_Entry = tuple[str, "Callable[[], None] | _Event"] | None


class _Shard(queue.Queue):
    """One forwarder thread's queue; :meth:`take` removes the events queued behind one
    that may go in its call."""

    def take(self, key: str, first: _Event, most: int) -> list[_Event]:
        """Up to ``most`` events queued now that may join ``first``'s call (``key``'s,
        of its group and batcher), in their order; the scan stops at an entry of
        ``key`` that may not (a call, another group's event): a key's calls keep their
        order. Each taken entry is still to be marked done (``task_done``)."""
        taken: list[_Event] = []
        if most <= 0:
            return taken
        with self.mutex:
            kept: list[_Entry] = []
            while self.queue and len(taken) < most:
                entry = self.queue.popleft()
                if entry is None:  # closing: what follows it is not for this call
                    kept.append(entry)
                    break
                entry_key, item = entry
                if entry_key != key:
                    kept.append(entry)
                    continue
                if (isinstance(item, _Event) and item.batcher is first.batcher
                        and item.group == first.group):
                    taken.append(item)
                    continue
                kept.append(entry)
                break
            self.queue.extendleft(reversed(kept))
            if taken:
                self.not_full.notify(len(taken))
        return taken


class BackgroundForwarder:
    """Threads running queued calls, in order per key; each call handles its own
    failures."""

    def __init__(self, *, max_pending: int = FORWARD_QUEUE_MAX, threads: int = FORWARD_THREADS,
                 on_dropped: Callable[[], None] | None = None):
        self._batchers: list[RecordBatcher] = []
        per_thread = max(1, max_pending // threads)
        self._queues: list[_Shard] = [_Shard(maxsize=per_thread) for _ in range(threads)]
        self._on_dropped = on_dropped
        self.dropped = 0
        self.closing = False  # a throttled event call is given up rather than retried
        self._closed = False  # the threads are stopping: what is submitted now is dropped
        self._wake = threading.Event()  # ends a retry's pause early when closing
        self._threads = [threading.Thread(target=self._run, args=(q,), daemon=True,
                                          name=f"personalize-forwarder-{n}")
                         for n, q in enumerate(self._queues)]
        for thread in self._threads:
            thread.start()

    def submit(self, key: str, call: Callable[[], None]) -> bool:
        """Queue ``call`` behind the earlier calls of ``key``; False (and counted) when
        that queue is full."""
        return self._put(key, call)

    def events(self, send: Callable[[Any, list[Any]], None], **options: Any
               ) -> EventBatcher:
        """An :class:`EventBatcher` sending through this forwarder's threads."""
        return EventBatcher(self, send, **options)

    def _put(self, key: str, item: Callable[[], None] | _Event) -> bool:
        if self._closed:
            # No thread would take it: left in a queue it was neither sent nor counted.
            self._drop()
            return False
        # crc32, not hash(): the same key picks the same thread in every process run
        shard = self._queues[zlib.crc32(key.encode("utf-8", "surrogatepass"))
                             % len(self._queues)]
        try:
            shard.put_nowait((key, item))
        except queue.Full:
            self._drop()
            return False
        return True

    def _drop(self) -> None:
        self.dropped += 1
        if self._on_dropped is not None:
            self._on_dropped()

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
        """Send what is queued (for at most ``timeout``; a throttled event call is not
        retried then), then stop the threads."""
        deadline = time.monotonic() + timeout
        self.closing = True
        self._wake.set()
        self.wait_idle(timeout)
        for batcher in self._batchers:
            batcher.close(max(0.0, deadline - time.monotonic()))
        self._closed = True
        for q in self._queues:
            try:
                q.put(None, timeout=0.1)
            except queue.Full:
                pass  # the threads are daemons: they end with the process
        for thread in self._threads:
            thread.join(timeout=0.5)

    def _run(self, calls: _Shard) -> None:
        while True:
            entry = calls.get()
            done = 1
            try:
                if entry is None:
                    return
                key, item = entry
                if isinstance(item, _Event):
                    # what is queued now goes with it; nothing waits for more
                    more = calls.take(key, item, item.batcher.per_call - 1)
                    done += len(more)
                    item.batcher.deliver(item.group, [item.event] + [m.event for m in more])
                else:
                    item()
            except Exception:  # noqa: BLE001 - a call reports its own failures; this is a bug
                log.exception("a Personalize forwarding call failed")
            finally:
                for _ in range(done):
                    calls.task_done()

    def pause(self, seconds: float) -> bool:
        """Wait ``seconds`` unless closing (then at once); whether still not closing."""
        if not self.closing:
            self._wake.wait(seconds)
        return not self.closing


class EventBatcher:
    """Events sent to ``send(group, events)`` on a :class:`BackgroundForwarder`'s
    threads, in order per key: the events of one group (PutEvents: one user and one
    session) queued behind the one a thread picks up go in its call, up to ``per_call``
    in their order; the thread takes what is queued and never waits for more.

    A call ``throttled(exc)`` says was refused for the rate goes again whole, after a
    pause (EVENT_RETRY_SECONDS, doubling), reported as ``on_failed(exc, 0)``; when
    closing it is given up. One ``refused_as_input(exc)`` says was refused for what it
    holds is sent again event by event, so one bad event costs one. Other failures are
    reported as ``on_failed(exc, events given up)``; the store has the events."""

    def __init__(self, forwarder: BackgroundForwarder, send: Callable[[Any, list[Any]], None],
                 *, throttled: Callable[[BaseException], bool] = lambda exc: False,
                 refused_as_input: Callable[[BaseException], bool] = lambda exc: False,
                 on_failed: Callable[[BaseException, int], None] = lambda e, n: None,
                 per_call: int = EVENTS_PER_CALL,
                 retry: tuple[float, float] | None = None):
        self._forwarder = forwarder
        self._send, self._throttled, self._refused = send, throttled, refused_as_input
        self._on_failed = on_failed
        self.per_call = max(1, per_call)
        self.retry = retry or EVENT_RETRY_SECONDS

    def submit(self, key: str, group: Hashable, event: Any) -> bool:
        """Queue ``event`` behind the earlier calls and events of ``key`` (the events of
        ``group`` must all have the same key); False (and counted by the forwarder) when
        that queue is full."""
        return self._forwarder._put(key, _Event(group, event, self))

    def deliver(self, group: Hashable, events: Sequence[Any]) -> None:
        """Send ``events`` (of ``group``, at most ``per_call``) in one call, on the
        calling thread, handling its failures."""
        events = list(events)
        try:
            self._send_retrying(group, events)
        except Exception as exc:  # noqa: BLE001 - reported; the store has the events
            if len(events) > 1 and self._refused(exc):
                for event in events:
                    try:  # one by one, each retried when throttled as the call was
                        self._send_retrying(group, [event])
                    except Exception as one:  # noqa: BLE001 - reported
                        self._on_failed(one, 1)
                return
            self._on_failed(exc, len(events))

    def _send_retrying(self, group: Hashable, events: list[Any]) -> None:
        """One call; sent again whole after a pause (EVENT_RETRY_SECONDS, doubling) for
        as long as it is throttled (each reported as ``on_failed(exc, 0)``) and the
        forwarder is not closing. Any other failure, or a throttle while closing, is
        raised."""
        pause = 0.0
        while True:
            try:
                self._send(group, events)
                return
            except Exception as exc:
                if not self._throttled(exc) or self._forwarder.closing:
                    raise
                self._on_failed(exc, 0)  # retried: reported, nothing lost yet
                first, most = self.retry
                pause = min(most, max(first, pause * 2))
                if not self._forwarder.pause(pause):
                    raise  # closing meanwhile: given up


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
