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


def _events(forwarder, **options):
    """An EventBatcher whose calls are recorded as (group, events); failures as
    (exception name, events given up)."""
    calls: list[tuple[str, list]] = []
    failures: list[tuple[str, int]] = []

    def send(group, events) -> None:
        calls.append((group, list(events)))
        if any(isinstance(event, _Throttled) for event in events):
            raise _Throttled()  # Amazon over its rate, whatever the call holds
        if "bad" in events:
            raise _Refused()  # Amazon cannot take this event: the whole call fails

    batcher = forwarder.events(
        send, throttled=lambda exc: isinstance(exc, _Throttled),
        refused_as_input=lambda exc: isinstance(exc, _Refused),
        on_failed=lambda exc, n: failures.append((type(exc).__name__, n)),
        **{"retry": (0.01, 0.02), **options})
    return batcher, calls, failures


def test_events_queued_together_go_in_one_call_without_passing_their_keys_other_calls():
    """A thread takes the events of one group queued behind the one it picks up (10 at
    most); it stops at a call or another group's event of the same key, so a key's
    calls keep their order, and leaves other keys' entries where they are."""
    gate = threading.Event()
    done: list[str] = []
    forwarder = BackgroundForwarder(threads=1)
    batcher, calls, failures = _events(forwarder)
    forwarder.submit("u1", lambda: gate.wait(10))
    for k in range(12):
        batcher.submit("u1", "s1", f"a{k}")
    batcher.submit("u2", "s2", "b0")  # another key between them: left in place
    batcher.submit("u1", "s1", "a12")
    forwarder.submit("u1", lambda: done.append("call"))  # a call of the key: a border
    batcher.submit("u1", "s1", "a13")
    batcher.submit("u1", "other-session", "c0")  # another group of the key: a border
    batcher.submit("u1", "s1", "a14")
    batcher.submit("u2", "s2", "b1")
    gate.set()
    assert forwarder.wait_idle(10)
    forwarder.close()
    assert calls == [("s1", [f"a{k}" for k in range(10)]),
                     ("s1", ["a10", "a11", "a12"]),
                     ("s2", ["b0", "b1"]),
                     ("s1", ["a13"]), ("other-session", ["c0"]), ("s1", ["a14"])]
    assert done == ["call"] and failures == []


def test_a_throttled_event_call_goes_again_whole_but_not_once_closing():
    gate = threading.Event()
    forwarder = BackgroundForwarder(threads=1)
    # A pause far longer than close waits: only close ending it lets the call be
    # given up (and counted) before close returns.
    batcher, calls, failures = _events(forwarder, retry=(600.0, 600.0))
    forwarder.submit("u1", lambda: gate.wait(10))
    batcher.submit("u1", "s1", _Throttled())
    batcher.submit("u1", "s1", "a1")
    gate.set()
    deadline = time.monotonic() + 10
    while not failures and time.monotonic() < deadline:
        time.sleep(0.01)
    assert failures == [("_Throttled", 0)]  # pausing before the same call again
    forwarder.close()  # ends the pause: the call is given up, counted, not retried
    assert len(calls) == 1 and failures == [("_Throttled", 0), ("_Throttled", 2)]


def test_a_refused_event_call_is_sent_again_event_by_event():
    gate = threading.Event()
    forwarder = BackgroundForwarder(threads=1)
    batcher, calls, failures = _events(forwarder)
    forwarder.submit("u1", lambda: gate.wait(10))
    for event in ("a0", "bad", "a2"):
        batcher.submit("u1", "s1", event)
    gate.set()
    assert forwarder.wait_idle(10)
    forwarder.close()
    assert calls == [("s1", ["a0", "bad", "a2"]), ("s1", ["a0"]), ("s1", ["bad"]),
                     ("s1", ["a2"])]
    assert failures == [("_Refused", 1)]


def test_events_a_full_queue_cannot_take_are_dropped_and_counted():
    gate = threading.Event()
    dropped: list[int] = []
    forwarder = BackgroundForwarder(max_pending=2, threads=1,
                                    on_dropped=lambda: dropped.append(1))
    batcher, calls, _ = _events(forwarder)
    started = threading.Event()
    forwarder.submit("u1", lambda: (started.set(), gate.wait(10)))
    assert started.wait(10)
    assert batcher.submit("u1", "s1", "a0") and batcher.submit("u1", "s1", "a1")
    assert not batcher.submit("u1", "s1", "a2")
    assert forwarder.dropped == 1 and dropped == [1]
    gate.set()
    assert forwarder.wait_idle(10)
    forwarder.close()
    assert calls == [("s1", ["a0", "a1"])]


def test_an_event_resent_alone_is_retried_when_throttled():
    """A call refused for what it holds goes again event by event; one of those calls
    throttled was counted lost (helper-74 left it), though a throttled call is retried
    whole: each is retried alike now."""
    gate = threading.Event()
    forwarder = BackgroundForwarder(threads=1)
    calls: list[list] = []
    failures: list[tuple[str, int]] = []
    throttled: list[int] = []

    def send(group, events) -> None:
        calls.append(list(events))
        if "bad" in events:
            raise _Refused()
        if events == ["a2"] and not throttled:
            throttled.append(1)
            raise _Throttled()  # Amazon over its rate, this once

    batcher = forwarder.events(
        send, throttled=lambda exc: isinstance(exc, _Throttled),
        refused_as_input=lambda exc: isinstance(exc, _Refused),
        on_failed=lambda exc, n: failures.append((type(exc).__name__, n)),
        retry=(0.01, 0.02))
    forwarder.submit("u1", lambda: gate.wait(10))
    for event in ("a0", "bad", "a2"):
        batcher.submit("u1", "s1", event)
    gate.set()
    assert forwarder.wait_idle(10)
    forwarder.close()
    assert calls == [["a0", "bad", "a2"], ["a0"], ["bad"], ["a2"], ["a2"]]
    assert failures == [("_Refused", 1), ("_Throttled", 0)]  # only "bad" lost


def test_what_is_submitted_after_close_is_dropped_and_counted():
    """No thread takes a queue's entries once the forwarder closed: an event or call
    submitted then sat unsent and uncounted."""
    dropped: list[int] = []
    forwarder = BackgroundForwarder(threads=1, on_dropped=lambda: dropped.append(1))
    batcher, calls, _ = _events(forwarder)
    forwarder.close()
    assert batcher.submit("u1", "s1", "late") is False
    assert forwarder.submit("u1", lambda: calls.append(("call", []))) is False
    assert forwarder.dropped == 2 and dropped == [1, 1] and calls == []
