"""The run's summary names source files changed while the tests ran (tests/conftest.py)."""

from __future__ import annotations

import os

from tests.source_changes import changed_sources, source_stamps


def test_files_edited_added_or_removed_during_a_run_are_named(tmp_path):
    (tmp_path / "graph").mkdir()
    (tmp_path / "graph" / "node_modules").mkdir()
    (tmp_path / "graph" / "_validation.py").write_text("def check(): ...\n")
    (tmp_path / "graph" / "memory_store.py").write_text("from graph._validation import check\n")
    (tmp_path / "graph" / "gone.py").write_text("")
    (tmp_path / "graph" / "notes.txt").write_text("")
    before = source_stamps(tmp_path, ("graph",))
    assert set(before) == {"graph/_validation.py", "graph/memory_store.py", "graph/gone.py"}
    assert changed_sources(before, source_stamps(tmp_path, ("graph",))) == []

    # A commit landing mid-run: one file rewritten (same size, newer time), one added, one
    # removed; what is not Python source, or sits in node_modules, does not count.
    validation = tmp_path / "graph" / "_validation.py"
    validation.write_text("def first(): ...\n")
    stat = validation.stat()
    os.utime(validation, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    (tmp_path / "graph" / "journal.py").write_text("")
    (tmp_path / "graph" / "gone.py").unlink()
    (tmp_path / "graph" / "notes.txt").write_text("edited")
    (tmp_path / "graph" / "node_modules" / "x.py").write_text("")
    assert changed_sources(before, source_stamps(tmp_path, ("graph",))) == [
        "graph/_validation.py", "graph/gone.py", "graph/journal.py"]
