"""Opening a SQLite file in WAL mode when several processes open it at once."""
from __future__ import annotations

import random
import sqlite3
import time


def enable_wal(conn: sqlite3.Connection, timeout_s: float = 30.0) -> str:
    """Switch ``conn``'s file to WAL and return the journal mode SQLite reports.

    Two processes that change a fresh file's journal mode at the same moment make one of
    them fail with "database is locked" at once: SQLite does not call its busy handler
    there (it would deadlock), so the connection's ``timeout`` does not help. Worker
    processes of one host start together, so the switch is retried here until
    ``timeout_s``; once the file is in WAL the pragma is a read and never conflicts.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(random.uniform(0.005, 0.05))  # jitter: the racers must not re-collide
