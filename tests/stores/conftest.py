"""Fixtures of the store contract suites: each test runs once per implementation."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    """Where a store lives: a real SQLite file (as a plain path, as today) or a fresh
    PostgreSQL database (the session's real server)."""
    if request.param == "sqlite":
        return str(tmp_path / "events.sqlite3")
    return request.getfixturevalue("postgres_url")
