"""The in-network source picks the same polls whatever the process's hash seed: polls
created at the same second are ordered by poll id (a set of followees once decided)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# Runs in a fresh interpreter per hash seed. Followees arrive as a frozenset (as
# follow_impact builds them) and the bare source gets its polls in set order: both
# orders change with PYTHONHASHSEED. Twelve authors, two polls each, all created in the
# same second, so only the tie-break decides which five are picked.
_PICKS = """
import json, sys
from recsys.analysis.follow_impact import _in_network_source
from recsys.backends.local import InNetworkSource

followees = {"reader": frozenset(f"author-{a}" for a in range(12))}
items = {f"poll-{a}-{k}": {"AUTHOR_ID": f"author-{a}", "CREATION_TIMESTAMP": 1_000}
         for a in range(12) for k in range(2)}
analysis = _in_network_source(followees, items, now=2_000)
bare = InNetworkSource(
    lambda user: followees[user],
    lambda authors, n: list({(p, 1_000.0) for p, m in items.items()
                             if m["AUTHOR_ID"] in set(authors)}))
json.dump({name: [s.item_id for s in source.candidates("reader", 5, exclude={"poll-3-0"})]
           for name, source in (("analysis", analysis), ("bare", bare))}, sys.stdout)
"""


def _picks(hash_seed: str) -> dict[str, list[str]]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", _PICKS], env=env, cwd=root,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_picks_do_not_depend_on_the_hash_seed():
    runs = [_picks(seed) for seed in ("1", "2", "3")]
    assert all(run == runs[0] for run in runs), runs
    # Smallest poll ids first among the tied, the excluded one skipped.
    expected = ["poll-0-0", "poll-0-1", "poll-1-0", "poll-1-1", "poll-10-0"]
    assert runs[0]["bare"] == expected
    assert runs[0]["analysis"] == expected
