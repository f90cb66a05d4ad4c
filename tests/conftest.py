"""Shared fixtures. Tests that need Neo4j fail (never skip) when CI=true."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_or_skip(available: bool, why: str) -> None:
    """Skip a test whose server is missing, except in CI where that is a failure."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{why} (CI=true: required, not skipped)")
    pytest.skip(why)
