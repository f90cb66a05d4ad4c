"""up_setting.py DATASET VARIANT: UP with one setting patched (or `default`).

VARIANT is `name=value[,name=value]`: a constructor parameter (`factors=128`,
`regularization=10`, `item_item_active_polls=6000`), `alpha=V` for ALS_ALPHA (read by
the collaborative component's fit and fold-in), or `module.NAME=V` for a setting read by
a component module or the blend (`walk.WALK_NEIGHBOURS=500`, `blend.BLEND_INVERSE_L2=10`).
"""

from __future__ import annotations

import importlib
import sys

from _common import evaluate_up


def patch(variant: str) -> None:
    evaluate = importlib.import_module("recsys.evaluation.evaluate")
    collaborative = importlib.import_module(
        "recsys.recipes.user_personalization.components.collaborative")
    for assignment in variant.split(","):
        name, text = assignment.split("=")
        value = int(text) if text.isdigit() else float(text)
        if "." in name:
            module_name, attribute = name.split(".")
            module = importlib.import_module("recsys.recipes.user_personalization." + (
                module_name if module_name == "blend" else f"components.{module_name}"))
            if not hasattr(module, attribute):
                raise SystemExit(f"{module.__name__} has no {attribute}")
            setattr(module, attribute, value)
        elif name == "alpha":
            collaborative.ALS_ALPHA = float(value)
        else:
            evaluate._RECIPES["up"][2][name] = value


if __name__ == "__main__":
    dataset, variant = sys.argv[1], sys.argv[2]
    if variant != "default":
        patch(variant)
    evaluate_up(dataset, variant)
