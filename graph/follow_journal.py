"""FollowJournal: the follows and unfollows made through the API, kept on disk for the
embedded (in-memory) follower graph.

The in-memory graph is rebuilt at every start (from follows.csv when there is one), so
without this an acknowledged ``follow`` or ``unfollow`` was gone after a restart. The
journal keeps each (follower, followee) pair's latest state in a SQLite file under
``HUNCH_HOME``; the gateway replays it over the graph at start, after follows.csv, so an
unfollow of a follow the file lists stays undone. Neo4j keeps its own follows and
needs none of this.

One row per pair, not a log: the file grows with the pairs ever touched, not with the
clicks. Several workers of one host share the file (WAL): each replays it when it
starts, and its refresher reads the changes other workers made since (each change is
numbered), so a follow on one worker reaches the others' graphs within a refresh.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from recsys.sqlite_wal import enable_wal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS follows (
    follower TEXT NOT NULL,
    followee TEXT NOT NULL,
    following INTEGER NOT NULL,  -- 1: follows, 0: unfollowed
    at INTEGER NOT NULL,  -- epoch seconds of the change
    seq INTEGER NOT NULL,  -- the journal's change number: other workers read what is new
    PRIMARY KEY (follower, followee)
) WITHOUT ROWID;
"""
# A journal written before changes were numbered (no seq column): numbered in the
# order of their times, so a worker replays them as before and reads later ones.
_NUMBER_OLD_ROWS = """
ALTER TABLE follows ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
UPDATE follows SET seq = (
    SELECT n FROM (SELECT follower AS f, followee AS e,
                          row_number() OVER (ORDER BY at, follower, followee) AS n
                   FROM follows)
    WHERE f = follows.follower AND e = follows.followee);
"""


class FollowJournal:
    """Each pair's latest follow state, durable once :meth:`record` returns, numbered
    so that a worker reads only the changes made since it last looked."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False,
                                     isolation_level=None)
        enable_wal(self._conn)
        # FULL: a change is on disk when record() returns, as an acknowledged event is.
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("BEGIN IMMEDIATE")  # workers starting together take turns
        try:
            self._conn.execute(_SCHEMA)
            columns = {row[1] for row in self._conn.execute("PRAGMA table_info(follows)")}
            if "seq" not in columns:
                for statement in filter(str.strip, _NUMBER_OLD_ROWS.split(";")):
                    self._conn.execute(statement)
            self._conn.execute("CREATE INDEX IF NOT EXISTS follows_by_seq ON follows (seq)")
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._lock = threading.Lock()

    def record(self, follower: str, followee: str, following: bool, at: int) -> None:
        with self._lock:
            # IMMEDIATE: writers of every worker take turns, so numbers follow commits.
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(
                    "INSERT INTO follows VALUES (?, ?, ?, ?, "
                    "(SELECT coalesce(max(seq), 0) + 1 FROM follows)) "
                    # A follow sent again keeps the time it was made (an unfollow
                    # sent again, the time it was undone).
                    "ON CONFLICT (follower, followee) DO UPDATE SET "
                    "at = CASE WHEN following = excluded.following THEN at "
                    "ELSE excluded.at END, "
                    "following = excluded.following, seq = excluded.seq",
                    (follower, followee, int(following), int(at)))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def changes_since(self, seq: int) -> tuple[int, list[tuple[str, str, bool, int]]]:
        """The pairs changed after change number ``seq``, oldest change first:
        (the newest number read, [(follower, followee, following, at)])."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT follower, followee, following, at, seq FROM follows WHERE seq > ? "
                "ORDER BY seq", (seq,)).fetchall()
        if not rows:
            return seq, []
        return rows[-1][4], [(a, b, bool(f), int(t)) for a, b, f, t, _ in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
