"""The Personalize forwarder: a key's calls run in order on one thread while other keys
go on in parallel, a full queue drops and counts rather than grow, and closing sends
what is queued."""

from __future__ import annotations

import threading
import time
import zlib

from recsys.backends.forwarder import BackgroundForwarder


def test_calls_run_in_order_and_a_full_queue_drops_and_counts() -> None:
    gate = threading.Event()
    done: list[int] = []
    dropped: list[int] = []
    forwarder = BackgroundForwarder(max_pending=3, threads=1,
                                    on_dropped=lambda: dropped.append(1))
    started = threading.Event()

    def first() -> None:
        started.set()
        gate.wait(10)  # Amazon hangs: the thread is busy with this call
        done.append(0)

    assert forwarder.submit("u1", first)
    assert started.wait(10)
    for k in range(1, 4):
        assert forwarder.submit("u1", lambda k=k: done.append(k))
    assert not forwarder.submit("u2", lambda: done.append(99))  # 3 queued: full
    assert forwarder.dropped == 1 and dropped == [1]
    gate.set()
    assert forwarder.wait_idle(10)
    assert done == [0, 1, 2, 3]


def test_a_failing_call_does_not_stop_the_thread_and_close_sends_what_is_queued() -> None:
    done: list[str] = []
    forwarder = BackgroundForwarder()

    def broken() -> None:
        raise RuntimeError("a bug in a call")

    forwarder.submit("u1", broken)
    for name in ("a", "b", "c"):
        forwarder.submit("u1", lambda name=name: done.append(name))
    forwarder.close()
    assert done == ["a", "b", "c"]


def test_a_key_waits_for_its_own_calls_only() -> None:
    """One user's calls keep their order; another user's are not held behind a call
    that hangs (one thread alone capped a worker at ~20 copies a second)."""
    gate = threading.Event()
    done: list[str] = []
    forwarder = BackgroundForwarder(threads=4)
    # two keys that land on different threads (crc32 is stable across runs)
    keys = [f"user-{n}" for n in range(50)]
    slow = keys[0]
    fast = next(k for k in keys if zlib.crc32(k.encode()) % 4 != zlib.crc32(slow.encode()) % 4)
    forwarder.submit(slow, lambda: (gate.wait(10), done.append("slow-1")))
    forwarder.submit(slow, lambda: done.append("slow-2"))
    for n in range(3):
        forwarder.submit(fast, lambda n=n: done.append(f"fast-{n}"))
    deadline = time.monotonic() + 10
    while len(done) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert done == ["fast-0", "fast-1", "fast-2"]  # not behind the hanging call
    gate.set()
    assert forwarder.wait_idle(10)
    assert done[3:] == ["slow-1", "slow-2"]
