"""up_setting.py DATASET VARIANT [TAG]: UP with one setting patched (or `default`).

VARIANT is `name=value[,name=value]`:
- a constructor parameter (`factors=128`, `regularization=10`,
  `item_item_active_polls=6000`); a JSON value for a mapping
  (`event_weights={"HUNCH":1,"COMMENT":1}`) or a list;
- `alpha=V` for ALS_ALPHA (read by the collaborative component's fit and fold-in);
- `module.NAME=V` for a setting read by one component module or the blend
  (`walk.WALK_NEIGHBOURS=500`, `blend.BLEND_INVERSE_L2=10`);
- `NAME=V` (upper case) for a setting of `settings.py`, patched in every module of the
  recipe that reads it (`COLD_ITEM_PRIOR_STRENGTH=20`);
- `text.min_df=V` for the text encoder's minimum document frequency.
TAG names the run's checkpoint directory (default: VARIANT).
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import sys

from _common import evaluate_up

PACKAGE = "recsys.recipes.user_personalization"


def _value(text: str):
    return json.loads(text)  # ints, floats and mappings alike


def _recipe_modules() -> list:
    package = importlib.import_module(PACKAGE)
    names = [PACKAGE + "." + m.name for m in pkgutil.iter_modules(package.__path__)]
    components = importlib.import_module(PACKAGE + ".components")
    names += [PACKAGE + ".components." + m.name
              for m in pkgutil.iter_modules(components.__path__)]
    return [importlib.import_module(n) for n in names]


def patch(variant: str) -> None:
    evaluate = importlib.import_module("recsys.evaluation.evaluate")
    collaborative = importlib.import_module(PACKAGE + ".components.collaborative")
    # commas inside a JSON mapping or list belong to its value
    for assignment in re.split(r",(?![^{\[]*[}\]])", variant):
        name, text = assignment.split("=", 1)
        value = _value(text)
        if name == "text.min_df":
            text_module = importlib.import_module("recsys.text")
            text_module.TfidfSvdEncoder.__init__.__kwdefaults__["min_df"] = value
        elif "." in name:
            module_name, attribute = name.split(".")
            module = importlib.import_module(PACKAGE + "." + (
                module_name if module_name == "blend" else f"components.{module_name}"))
            if not hasattr(module, attribute):
                raise SystemExit(f"{module.__name__} has no {attribute}")
            setattr(module, attribute, value)
        elif name.isupper():
            readers = [m for m in _recipe_modules() if hasattr(m, name)]
            if not readers:
                raise SystemExit(f"no module of {PACKAGE} reads {name}")
            for module in readers:
                setattr(module, name, value)
        elif name == "alpha":
            collaborative.ALS_ALPHA = float(value)
        else:
            evaluate._RECIPES["up"][2][name] = value


if __name__ == "__main__":
    dataset, variant = sys.argv[1], sys.argv[2]
    tag = sys.argv[3] if len(sys.argv) > 3 else variant
    if variant != "default":
        patch(variant)
    evaluate_up(dataset, tag)
