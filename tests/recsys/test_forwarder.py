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


class _Throttled(Exception):
    pass


class _Refused(Exception):
    pass


def _batcher(send, **options):
    from recsys.backends.forwarder import RecordBatcher

    failures: list[tuple[str | None, int]] = []
    batcher = RecordBatcher(
        send, throttled=lambda exc: isinstance(exc, _Throttled),
        refused_as_input=lambda exc: isinstance(exc, _Refused),
        on_failed=lambda exc, n: failures.append((type(exc).__name__ if exc else None, n)),
        **{"interval": 0.0, "retry": (0.01, 0.02), **options})
    return batcher, failures


def test_records_go_ten_to_a_call_and_a_records_latest_state_wins() -> None:
    """PutItems takes 10 records a call and 10 calls a second per dataset group: one
    call per poll written capped the app at 10 polls a second. 25 polls (one written
    twice while waiting) go in 3 calls, with the poll's newest state."""
    gate = threading.Event()
    calls: list[dict] = []

    def send(records: dict) -> None:
        gate.wait(10)  # Amazon is slow: the rest queue up meanwhile
        calls.append(records)

    batcher, failures = _batcher(send)
    batcher.submit("p0", {"v": 0})
    time.sleep(0.05)  # p0's call is in flight
    for k in range(1, 25):
        batcher.submit(f"p{k}", {"v": 0})
    batcher.submit("p3", {"v": 1})  # edited before it was sent
    gate.set()
    assert batcher.wait_idle(10)
    batcher.close()
    assert [len(c) for c in calls] == [1, 10, 10, 4]
    sent = {k: v for c in calls for k, v in c.items()}
    assert len(sent) == 25 and sent["p3"] == {"v": 1} and failures == []


def test_a_throttled_call_waits_and_goes_again_and_a_bad_record_costs_one() -> None:
    """A throttled PutItems lost its polls after botocore's retries; now they wait
    and go again, unless a newer state was written meanwhile. A call refused for what
    it holds is sent record by record: the nine good records are not lost."""
    calls: list[dict] = []
    throttles = [2]

    def send(records: dict) -> None:
        calls.append(dict(records))
        if throttles[0]:
            throttles[0] -= 1
            raise _Throttled()
        if "bad" in records:
            raise _Refused()

    batcher, failures = _batcher(send)
    for k in range(3):
        batcher.submit(f"p{k}", {"v": k})
    assert batcher.wait_idle(10)
    assert calls[-1] == {"p0": {"v": 0}, "p1": {"v": 1}, "p2": {"v": 2}}
    assert failures == [("_Throttled", 0), ("_Throttled", 0)]  # retried, none given up
    calls.clear()
    batcher.submit("a", {})
    batcher.submit("bad", {})
    batcher.submit("b", {})
    assert batcher.wait_idle(10)
    batcher.close()
    assert calls == [{"a": {}, "bad": {}, "b": {}}, {"a": {}}, {"bad": {}}, {"b": {}}]
    assert failures[2:] == [("_Refused", 1)]


def test_a_full_map_refuses_new_records_and_closing_does_not_retry_throttles() -> None:
    gate = threading.Event()

    def send(records: dict) -> None:
        gate.wait(10)
        raise _Throttled()

    batcher, failures = _batcher(send, max_pending=2)
    batcher.submit("p0", {})
    time.sleep(0.05)  # in flight
    assert batcher.submit("p1", {}) and batcher.submit("p2", {})
    assert batcher.submit("p1", {"newer": True})  # a known record is replaced, not refused
    assert not batcher.submit("p3", {})
    assert failures == [(None, 1)]
    gate.set()
    batcher.close(timeout=5)
    # closing: throttled calls are given up (reported: all 3 polls), not retried for ever
    assert sum(n for name, n in failures if name == "_Throttled") == 3
    assert batcher.wait_idle(0)


def test_closing_with_a_backlog_reports_what_was_not_sent_and_stops() -> None:
    """A shutdown's few seconds send ~50 calls at Amazon's pace: close returned with
    the rest still in the map and unreported, the thread went on sending after the
    store closed, and a poll submitted after close waited for ever, unreported."""
    calls: list[dict] = []

    def send(records: dict) -> None:
        time.sleep(0.02)
        calls.append(records)

    batcher, failures = _batcher(send)
    for k in range(300):
        batcher.submit(f"p{k}", {})
    batcher.close(timeout=0.1)
    time.sleep(0.1)  # the call in flight at close ends
    sent = sum(len(c) for c in calls)
    assert sent < 300 and sum(n for _, n in failures) == 300 - sent
    assert {name for name, _ in failures} == {"RecordsNotSent"}
    time.sleep(0.1)
    assert sum(len(c) for c in calls) == sent  # stopped: nothing goes after close
    assert not batcher.submit("late", {}) and failures[-1] == ("RecordsNotSent", 1)
    assert batcher.wait_idle(0)
