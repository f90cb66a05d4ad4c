"""The test PostgreSQL itself: starts, keeps committed rows over a restart, survives a crash."""

from __future__ import annotations

import psycopg


def test_committed_rows_survive_restart_and_crash(postgres_server, postgres_url):
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1)")
    postgres_server.stop()
    postgres_server.start()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("INSERT INTO t VALUES (2)")
    postgres_server.kill()
    postgres_server.start()
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT sum(x) FROM t").fetchone()[0] == 3
