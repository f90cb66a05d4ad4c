"""What the benchmarks that run on demo data (or on a directory the user names) share:
the ``--users/--polls/--days/--seed/--data`` options and the directory they give."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def add_data_arguments(parser: argparse.ArgumentParser, *, users: int, polls: int,
                       days: int, seed: int = 1) -> None:
    """The demo data's size (each benchmark's own defaults) and ``--data DIR``."""
    parser.add_argument("--users", type=int, default=users)
    parser.add_argument("--polls", type=int, default=polls)
    parser.add_argument("--days", type=int, default=days)
    parser.add_argument("--seed", type=int, default=seed)
    parser.add_argument("--data", type=Path, default=None,
                        help="an existing Personalize-format directory instead of demo data")


def data_directory(args: argparse.Namespace, tmp: str | Path) -> Path:
    """``--data``, or demo data of the options' size generated under ``tmp``."""
    if args.data is not None:
        return args.data
    if str(REPO) not in sys.path:  # run as `python bench/bench_x.py` from anywhere
        sys.path.insert(0, str(REPO))
    from recsys.demo_data import generate_demo_data

    directory = Path(tmp) / "demo"
    generate_demo_data(directory, users=args.users, polls=args.polls, days=args.days,
                       seed=args.seed)
    return directory
