"""Which of the project's source files changed while a test run was going.

A run imports most modules early and some only when a test first needs them (the gateway
imports ``graph.memory_store`` inside ``_make_graph``). A commit, checkout or edit in the
tree during a run therefore mixes two versions in one process: helper-75's full
tests/recsys run (08:48-08:55 on 2026-12-07) failed
``test_a_vote_stored_by_another_worker_leaves_the_next_feed`` with ``ImportError:
cannot import name 'first_follows' from 'graph._validation'``: ``graph._validation``
had been imported (old) by an earlier test, the commit cc04ca3 that added the function
and its use landed in that clone at 08:50:37, and the feed test was the first to import
``graph.memory_store`` (new). Nothing was wrong with the code; the conftest names such
files in the run's summary so a failure like it is recognised at once.
"""

from __future__ import annotations

import os
from pathlib import Path

SOURCE_DIRS = ("gateway", "recsys", "graph", "hunchio", "tests")
_SKIPPED_DIRS = {"node_modules", "__pycache__"}


def source_stamps(root: Path, dirs: tuple[str, ...] = SOURCE_DIRS) -> dict[str, tuple[int, int]]:
    """Every ``.py`` file under ``root``'s ``dirs``: relative path -> (mtime ns, size)."""
    stamps: dict[str, tuple[int, int]] = {}
    for top in dirs:
        for folder, subdirs, files in os.walk(root / top):
            subdirs[:] = [d for d in subdirs if d not in _SKIPPED_DIRS and not d.startswith(".")]
            for name in files:
                if name.endswith(".py"):
                    path = Path(folder, name)
                    try:
                        stat = path.stat()
                    except OSError:  # removed meanwhile: counts as changed below
                        continue
                    stamps[path.relative_to(root).as_posix()] = (stat.st_mtime_ns, stat.st_size)
    return stamps


def changed_sources(before: dict[str, tuple[int, int]],
                    after: dict[str, tuple[int, int]]) -> list[str]:
    """Files added, removed or rewritten between two :func:`source_stamps`, sorted."""
    return sorted(path for path in before.keys() | after.keys()
                  if before.get(path) != after.get(path))
