"""The Personalize forwarder: calls run in order on one thread, a full queue drops and
counts rather than grow, and closing sends what is queued."""

from __future__ import annotations

import threading

from recsys.backends.forwarder import BackgroundForwarder


def test_calls_run_in_order_and_a_full_queue_drops_and_counts() -> None:
    gate = threading.Event()
    done: list[int] = []
    dropped: list[int] = []
    forwarder = BackgroundForwarder(max_pending=3, on_dropped=lambda: dropped.append(1))
    started = threading.Event()

    def first() -> None:
        started.set()
        gate.wait(10)  # Amazon hangs: the thread is busy with this call
        done.append(0)

    assert forwarder.submit(first)
    assert started.wait(10)
    for k in range(1, 4):
        assert forwarder.submit(lambda k=k: done.append(k))
    assert not forwarder.submit(lambda: done.append(99))  # 3 queued: full
    assert forwarder.dropped == 1 and dropped == [1]
    gate.set()
    assert forwarder.wait_idle(10)
    assert done == [0, 1, 2, 3]


def test_a_failing_call_does_not_stop_the_thread_and_close_sends_what_is_queued() -> None:
    done: list[str] = []
    forwarder = BackgroundForwarder()

    def broken() -> None:
        raise RuntimeError("a bug in a call")

    forwarder.submit(broken)
    for name in ("a", "b", "c"):
        forwarder.submit(lambda name=name: done.append(name))
    forwarder.close()
    assert done == ["a", "b", "c"]
