"""What feed responses showed is written behind the requests; a store outage drops those
batches with one warning, and writing resumes when the store is back."""

from __future__ import annotations

import logging

from recsys.events import EventStore
from recsys.recommendation_log import RecommendationLog
from tests.recsys.test_refresher import STORE_GONE, FailingStore


def test_an_outage_drops_batches_with_one_warning_and_writing_resumes(tmp_path, caplog):
    path = tmp_path / "events.sqlite3"
    store = FailingStore(EventStore(path))
    # No background flush: the test flushes, so it knows which batch met the outage.
    recommendations = RecommendationLog(store, flush_seconds=3600)
    store.down = True
    for k in range(3):
        recommendations.record(f"during{k}", "u1", ["p1", "p2"])
        recommendations.flush()  # does not raise
    store.down = False
    recommendations.record("after", "u1", ["p3"])
    recommendations.close()  # flushes
    with EventStore(path) as events:
        assert events.recommendation_items("after") == ("p3",)
        assert events.recommendation_items("during0") is None
    assert recommendations.dropped == 3
    warned = [r.getMessage() for r in caplog.records
              if r.name == "recsys.recommendation_log" and r.levelno >= logging.WARNING]
    assert len(warned) == 2 and STORE_GONE in warned[0] and "again" in warned[1]


def test_a_pending_recommendation_is_found_before_it_is_written(tmp_path):
    """What a response showed is known from the moment it is served: the Personalize
    forwarder reads it for a vote that arrives before the writer's next flush."""
    path = tmp_path / "events.sqlite3"
    recommendations = RecommendationLog(EventStore(path), flush_seconds=3600)
    recommendations.record("r1", "u1", ["p1", "p2"])
    recommendations.record("r2", "u1", ["p3"])
    assert recommendations.pending_items("r1") == ["p1", "p2"]
    assert recommendations.pending_items("r2") == ["p3"]
    assert recommendations.pending_items("unknown") is None
    recommendations.flush()
    assert recommendations.pending_items("r1") is None  # written: the store has it now
    with EventStore(path) as events:
        assert events.recommendation_items("r1") == ("p1", "p2")
    recommendations.close()


def test_a_recommendation_is_found_while_its_batch_is_being_written(tmp_path):
    """Between taking the pending batch and the store's commit, a recommendation was in
    neither place: a vote forwarded to Personalize then lost the polls it was shown (a
    loaded CI machine widened that window until a gateway test failed)."""
    import threading

    path = tmp_path / "events.sqlite3"
    writing, release = threading.Event(), threading.Event()

    class SlowStore(EventStore):
        def record_recommendations(self, rows, *args, **kwargs):
            rows = list(rows)
            writing.set()
            release.wait(10)
            return super().record_recommendations(rows, *args, **kwargs)

    store = SlowStore(path)
    recommendations = RecommendationLog(store, flush_seconds=3600)
    recommendations.record("r1", "u1", ["p1", "p2"])
    flusher = threading.Thread(target=recommendations.flush)
    flusher.start()
    assert writing.wait(10)
    try:
        # mid-write: not pending any more, not yet in the store
        assert store.recommendation_items("r1") is None
        assert recommendations.pending_items("r1") == ["p1", "p2"]
    finally:
        release.set()
        flusher.join(10)
    assert recommendations.pending_items("r1") is None
    assert store.recommendation_items("r1") == ("p1", "p2")
    recommendations.close()


def test_a_row_the_store_refuses_does_not_take_its_batch_with_it(tmp_path):
    """helper-63: an admin's feed for a 300-character user id failed the batch's write
    with InvalidEvent, and the other users' recommendations in it were dropped too."""
    path = tmp_path / "events.sqlite3"
    recommendations = RecommendationLog(EventStore(path), flush_seconds=3600)
    recommendations.record("ok1", "u1", ["p1"])
    recommendations.record("bad", "u" * 300, ["p2"])
    recommendations.record("ok2", "u2", ["p3"])
    recommendations.close()
    with EventStore(path) as events:
        assert events.recommendation_items("ok1") == ("p1",)
        assert events.recommendation_items("ok2") == ("p3",)
        assert events.recommendation_items("bad") is None
    assert recommendations.dropped == 1


def test_recommendations_past_their_retention_are_forgotten(tmp_path):
    """helper-63: every feed page's row (~1 KB) was kept for ever."""
    import time

    path = tmp_path / "events.sqlite3"
    with EventStore(path) as events:
        events.record_recommendations([("old", "u1", ["p1"], int(time.time()) - 40 * 86_400),
                                       ("recent", "u1", ["p2"], int(time.time()) - 86_400)])
    log = RecommendationLog(EventStore(path), flush_seconds=0.01,
                            retention_seconds=30 * 86_400, forget_every_seconds=3600)
    for _ in range(500):  # the writer thread forgets at its first turn
        if log.forgotten:
            break
        time.sleep(0.01)
    log.close()
    assert log.forgotten == 1
    with EventStore(path) as events:
        assert events.recommendation_items("old") is None
        assert events.recommendation_items("recent") == ("p2",)
    keep_all = RecommendationLog(EventStore(path), flush_seconds=3600)
    assert keep_all.forget_old() == 0
    keep_all.close()


def test_a_backlog_is_forgotten_a_batch_at_a_time(tmp_path, monkeypatch):
    """helper-65: the first pass after an upgrade deleted the whole backlog in back-to-back
    transactions on the flushing thread. Batches now pause, on a thread of their own."""
    import time

    from recsys import recommendation_log

    monkeypatch.setattr(recommendation_log, "FORGET_BATCH_ROWS", 2)
    monkeypatch.setattr(recommendation_log, "FORGET_PAUSE_SECONDS", 0.0)
    path = tmp_path / "events.sqlite3"
    old = int(time.time()) - 40 * 86_400
    with EventStore(path) as events:
        events.record_recommendations([(f"old{k}", "u1", ["p1"], old) for k in range(5)])
    store = EventStore(path)
    calls: list[int] = []
    original = store.forget_recommendations_before

    def counted(before, batch):
        calls.append(batch)
        return original(before, batch)

    store.forget_recommendations_before = counted
    log = RecommendationLog(store, flush_seconds=3600, retention_seconds=30 * 86_400,
                            forget_every_seconds=3600)
    log._stop.set()  # no background turn: this test runs the pass itself
    log._forget_thread.join(timeout=10)
    log._stop.clear()
    assert log.forget_old() == 5 and calls == [2, 2, 2]
    log.close()
