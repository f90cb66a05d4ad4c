"""up_without_twins.py DATASET: UP with its history-twins switch held off (the blend of
one weight per column for every user), to pair against UP as it is: what the twins add.

The twins are in the product since session 22 (recsys/recipes/user_personalization/
blend.py); the study that found them is `docs/studies/up_history_twins.py` at 55bbd3e.
"""

from __future__ import annotations

import sys

from _common import evaluate_up

if __name__ == "__main__":
    from recsys.recipes.user_personalization import blend

    # The held-out ranking is told twins rank worse, so fit never keeps them.
    blend._twins_held_out_ndcg = lambda *args: (1.0, 0.0)
    evaluate_up(sys.argv[1], "no-twins")
