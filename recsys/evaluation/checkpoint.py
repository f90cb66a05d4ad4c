"""Keep a long evaluation's finished folds on disk, so that it can resume.

A confirmation run (docs/public-data.md) on MovieLens 1M takes hours on two cores:
longer than a working session, and a killed run used to lose every fold it had measured.
With a checkpoint directory, ``evaluate`` writes each finished fold to a file of its own
(atomically: a crash loses at most the fold under way) and the same command resumes with
the folds not yet kept. Several processes may share one directory, each measuring its own
folds (``--only-folds``): a run that would take a day on one core takes half on two, and
its fold files can be carried to another machine. Nothing is printed before every fold
has run, so a confirmation dataset stays unseen until its run is whole.

Folds are pooled into one estimate only if they measured the same thing, so a checkpoint
belongs to one run: the same data files (sha256), the same options and the same code
(sha256 of ``recsys/``'s sources). Anything else is refused with what differs; run the
confirmation from a worktree pinned at one commit when it spans sessions.

The state is a pickle: load checkpoints you wrote yourself only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recsys.errors import HunchError
from recsys.public_sources import sha256_of

RUN_FILE = "run.json"
FOLD_FILE = "fold-{:02d}.pickle"  # by the fold's 1-based number, as printed


class CheckpointMismatch(HunchError):
    """The checkpoint directory holds another run's folds (other data, options or code)."""


def directory_digest(directory: Path, pattern: str = "*", recursive: bool = False) -> str:
    """One sha256 over the names and bytes of ``directory``'s files (sorted).

    Top-level files only unless ``recursive``: a data directory's files sit at its top,
    and a checkpoint kept inside it must not change its digest.
    """
    h = hashlib.sha256()
    paths = directory.rglob(pattern) if recursive else directory.glob(pattern)
    for path in sorted(p for p in paths if p.is_file()):
        relative = path.relative_to(directory)
        if "__pycache__" in relative.parts:  # only below ``directory``: it may sit in one
            continue
        h.update(relative.as_posix().encode() + b"\0")
        h.update(sha256_of(path).encode() + b"\n")
    return h.hexdigest()


def code_digest() -> str:
    """The engine's sources that compute a fold: any change makes folds incomparable."""
    return directory_digest(Path(__file__).resolve().parents[1], "*.py", recursive=True)


@dataclass
class FoldCheckpoint:
    """The finished folds of one evaluation run, in ``directory``."""

    directory: Path
    run: dict[str, Any]

    @classmethod
    def open(cls, directory: Path, run: dict[str, Any]) -> FoldCheckpoint:
        """Use ``directory`` for ``run`` (JSON-able), refusing another run's folds."""
        directory.mkdir(parents=True, exist_ok=True)
        run_path = directory / RUN_FILE
        run = json.loads(json.dumps(run, sort_keys=True))  # the shape it is stored in
        payload = json.dumps(run, indent=2, sort_keys=True).encode()
        # Created exclusively: two processes started together (one per core) must not
        # both find no run.json and each write its own options, the last one winning.
        if not _create_exclusively(run_path, payload):
            stored = json.loads(run_path.read_text())
            if stored != run:
                differs = sorted(k for k in set(stored) | set(run) if stored.get(k) != run.get(k))
                raise CheckpointMismatch(
                    f"{directory} holds folds of another run (differs in: "
                    f"{', '.join(differs)}); pass an empty directory, or delete this one "
                    "to start over"
                )
        return cls(directory, run)

    @property
    def run_digest(self) -> str:
        """The run's identity, kept in every fold file: a fold file carried over from
        another run's directory is refused, not pooled."""
        return hashlib.sha256(json.dumps(self.run, sort_keys=True).encode()).hexdigest()

    def fold_path(self, fold: int) -> Path:
        """The file of ``fold`` (0-based, as ``evaluate`` counts)."""
        return self.directory / FOLD_FILE.format(fold + 1)

    def load_fold(self, fold: int) -> dict[str, Any] | None:
        """What ``fold`` measured, or None when no run has kept it (yet)."""
        path = self.fold_path(fold)
        if not path.exists():
            return None
        try:
            with open(path, "rb") as f:
                kept = pickle.load(f)
        except Exception as exc:  # truncated, half-copied, or not a fold file at all
            raise CheckpointMismatch(
                f"{path} cannot be read ({type(exc).__name__}: {exc}); delete it to measure "
                f"fold {fold + 1} again") from exc
        if not isinstance(kept, dict) or kept.get("run") != self.run_digest:
            raise CheckpointMismatch(
                f"{path} was kept by another run (other data, options or code) than "
                f"{self.directory / RUN_FILE} describes; delete it to measure fold "
                f"{fold + 1} again with this run")
        return kept["record"]

    def save_fold(self, fold: int, record: dict[str, Any]) -> None:
        kept = {"run": self.run_digest, "record": record}
        _write_atomically(self.fold_path(fold),
                          pickle.dumps(kept, protocol=pickle.HIGHEST_PROTOCOL))


def _create_exclusively(path: Path, payload: bytes) -> bool:
    """Write ``path`` whole unless it exists: False when another process has it."""
    tmp = _written_beside(path, payload)
    try:
        try:
            os.link(tmp, path)  # atomic, and fails if the name exists
        except FileExistsError:
            return False
        _sync_directory(path.parent)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _written_beside(path: Path, payload: bytes) -> str:
    """``payload`` synced to a temporary file of its own next to ``path``: two runs
    saving into one directory at once must not write into each other's file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def _write_atomically(path: Path, payload: bytes) -> None:
    tmp = _written_beside(path, payload)  # never renames away another run's file
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    # The rename lives in the directory: until it is synced, a crash may lose it (and
    # with it the fold just reported kept), leaving the previous state.
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
