"""Calls to Amazon Personalize's write APIs (PutEvents, PutItems) made off the request path.

The local store is the record: an event is acknowledged once it is stored there, and
what Amazon hears is a copy. Made inline, each copy held the request until Amazon
answered, and an Amazon that hangs rather than refuses held it for every attempt's
connect and read timeouts (3 x (1 + 2) s): a vote took 9 s, and a handful of such
requests filled the worker threads every other resolver waits on.

Here a few threads send the copies. Calls with the same key (a user's events, a poll's
edits) go to the same thread, in the order they were made; different keys go in
parallel, since one call waits ~50 ms on Amazon and one thread alone would cap a worker
at ~20 copies a second where the request threads had sent several at once. Bounded
queues keep memory bounded through an outage; what does not fit is dropped and counted.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import zlib
from collections.abc import Callable

log = logging.getLogger(__name__)

# ~1 KB an event: 10 MB at most through an outage, minutes of a busy app's writes.
FORWARD_QUEUE_MAX = 10_000
# Calls in flight at once (botocore's default connection pool holds 10).
FORWARD_THREADS = 4
# A graceful shutdown sends what is queued for at most this long.
CLOSE_SECONDS = 5.0


class BackgroundForwarder:
    """Threads running queued calls, in order per key; each call handles its own
    failures."""

    def __init__(self, *, max_pending: int = FORWARD_QUEUE_MAX, threads: int = FORWARD_THREADS,
                 on_dropped: Callable[[], None] | None = None):
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

    def wait_idle(self, timeout: float) -> bool:
        """Whether everything queued so far was sent within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while any(q.unfinished_tasks for q in self._queues):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float = CLOSE_SECONDS) -> None:
        """Send what is queued (for at most ``timeout``), then stop the threads."""
        self.wait_idle(timeout)
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
