"""Calls to Amazon Personalize's write APIs (PutEvents, PutItems) made off the request path.

The local store is the record: an event is acknowledged once it is stored there, and
what Amazon hears is a copy. Made inline, each copy held the request until Amazon
answered, and an Amazon that hangs rather than refuses held it for every attempt's
connect and read timeouts (3 x (1 + 2) s): a vote took 9 s, and a handful of such
requests filled the worker threads every other resolver waits on. Here one thread sends
the copies in the order they were made (a user's events stay in order); a bounded queue
keeps memory bounded through an outage, and what does not fit is dropped and counted.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

# ~1 KB an event: 10 MB at most through an outage, minutes of a busy app's writes.
FORWARD_QUEUE_MAX = 10_000
# A graceful shutdown sends what is queued for at most this long.
CLOSE_SECONDS = 5.0


class BackgroundForwarder:
    """One thread running queued calls in order; each call handles its own failures."""

    def __init__(self, *, max_pending: int = FORWARD_QUEUE_MAX,
                 on_dropped: Callable[[], None] | None = None):
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=max_pending)
        self._on_dropped = on_dropped
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="personalize-forwarder",
                                        daemon=True)
        self._thread.start()

    def submit(self, call: Callable[[], None]) -> bool:
        """Queue ``call``; False (and counted) when the queue is full."""
        try:
            self._queue.put_nowait(call)
        except queue.Full:
            self.dropped += 1
            if self._on_dropped is not None:
                self._on_dropped()
            return False
        return True

    def wait_idle(self, timeout: float) -> bool:
        """Whether everything queued so far was sent within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float = CLOSE_SECONDS) -> None:
        """Send what is queued (for at most ``timeout``), then stop the thread."""
        self.wait_idle(timeout)
        try:
            self._queue.put(None, timeout=0.1)
        except queue.Full:
            pass  # the thread is a daemon: it ends with the process
        self._thread.join(timeout=0.5)

    def _run(self) -> None:
        while True:
            call = self._queue.get()
            try:
                if call is None:
                    return
                call()
            except Exception:  # noqa: BLE001 - a call reports its own failures; this is a bug
                log.exception("a Personalize forwarding call failed")
            finally:
                self._queue.task_done()
