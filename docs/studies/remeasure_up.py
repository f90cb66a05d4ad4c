"""remeasure_up.py DATA KEPT OUT: User-Personalization alone measured again, with this
checkout's code, on every fold of a kept evaluation run, the other models' kept outcomes
reused.

For a fix to UP after a (confirmation) run was read, when the evaluation and the peers
did not change: each fold is measured by the evaluation's own ``_measure_fold`` with UP
as the only contender (so UP's outcome is what a whole run would keep), and written with
the kept peers' outcomes into the checkpoint directory OUT under this code's run
identity. Per fold it prints whether UP's per-user metrics equal the kept ones and what
its fit chose (history twins, re-ranker); no metric value. Then, from this checkout,
``hunch evaluate`` with the kept run's options and ``--checkpoint OUT`` reports the run
(it measures nothing: every fold is in). Session 28 re-measured Amazon Tools and Office
this way after the history twins' fix (docs/public-data.md, "Confirmation runs").
The data is checked against the kept run's digest and the kept folds against its run;
that the evaluation and the other models' code did not change since the kept run is the
caller's to check (``git diff KEPT_COMMIT -- recsys`` outside UP's recipe).

Run from the repository's root: ``PYTHONPATH=. python docs/studies/remeasure_up.py
~/.cache/hunch/public-data/tools confirmation/tools-17ee747 /tmp/tools-remeasured``.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from recsys.datasets import load_directory
from recsys.evaluation.checkpoint import FoldCheckpoint, code_digest, directory_digest
from recsys.evaluation.split import user_folds

# The module (the package re-exports its function under the same name).
E = importlib.import_module("recsys.evaluation.evaluate")


def main(data_dir: Path, kept: Path, out: Path) -> None:
    run = json.loads((kept / "run.json").read_text())
    if run["split"] != "personalize" or run["ablate"] or run["event_values"] or run["comment_texts"]:
        raise SystemExit("only plain personalize-split runs are re-measured here")
    if directory_digest(data_dir) != run["data"]:
        raise SystemExit(f"{data_dir} is not the data {kept} was measured on")
    kept_folds = FoldCheckpoint.open(kept, run)  # refuses fold files of another run
    data = load_directory(data_dir).training_data()
    interactions = list(data.interactions)
    catalog = sorted(set(data.items) | {e.item_id for e in interactions})
    events_per_user = Counter(e.user_id for e in interactions)
    heavy_min = float(np.quantile(list(events_per_user.values()), E.HEAVY_USER_QUANTILE))
    up = E.RecipeContender(E.UP_KEY, run["seed"], None)
    results = {up.key: E.ModelResult(up.key, up.name, up.kind, family=up.family,
                                     configuration=up.configuration)}
    store = FoldCheckpoint.open(out, {**run, "code": code_digest()})
    for split_ in user_folds(interactions, run["folds"], seed=run["seed"]):
        stored = kept_folds.load_fold(split_.fold)
        if stored is None:
            raise SystemExit(f"{kept} has no fold {split_.fold + 1}")
        record = E._measure_fold(split_, [up], results, set(), catalog, data, None, None,
                                 run["tuning_folds"], run["seed"], events_per_user,
                                 heavy_min, E._Silent())
        new, old = record["outcomes"][up.key], stored["outcomes"][up.key]
        # Folds kept before fit summaries (4826a3c) or the re-ranker's entry in them
        # (60fe2f0) were recorded say null.
        was = old.fit_summary or {}
        print(json.dumps({
            "fold": split_.fold + 1,
            "per_user_identical": all(np.array_equal(new.per_user[k], old.per_user[k])
                                      for k in old.per_user),
            "twins": [was.get("history_twins"), new.fit_summary["history_twins"]],
            "rerank": [was.get("rerank", {}).get("on"), new.fit_summary["rerank"]["on"]],
        }), flush=True)
        stored["outcomes"][up.key] = new
        store.save_fold(split_.fold, stored)


if __name__ == "__main__":
    main(*(Path(a).expanduser() for a in sys.argv[1:4]))
