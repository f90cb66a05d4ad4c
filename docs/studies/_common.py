"""What the studies share: where data and checkpoints live, and the evaluate command."""

from __future__ import annotations

import os
from pathlib import Path

DATA = Path(os.environ.get("HUNCH_PUBLIC_DATA_DIR", Path.home() / ".cache/hunch/public-data"))
RUNS = Path(os.environ.get("HUNCH_STUDY_DIR", "/tmp/hunch-studies"))


def evaluate_up(dataset: str, tag: str, folds: int = 5) -> None:
    """`hunch evaluate` of UP alone (5 folds, seed 0), its folds kept under RUNS."""
    from gateway.cli import cli

    cli(["evaluate", "--data", str(DATA / dataset), "--folds", str(folds), "--seed", "0",
         "--models", "up", "--tuning-folds", "1", "--json",
         "--checkpoint", str(RUNS / f"{dataset}-{tag}")])
