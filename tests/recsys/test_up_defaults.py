"""Every User-Personalization default has an entry saying what chose it (issue 14), and
no entry names a confirmation dataset.

The code side is read from the code itself: UP's constructor parameters, every
upper-case module-level name assigned in the UP package's modules (by parsing them, so
an imported name does not count twice), the text encoder's DEFAULT_* settings and the
event clock's."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

import recsys.recipes.user_personalization as up_package
from recsys.public_sources import PINNED_SOURCES
from recsys.recipes.user_personalization import defaults as registry
from recsys.recipes.user_personalization.model import UserPersonalization

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_DATA = ROOT / "docs" / "public-data.md"
UP_DEFAULTS_DOC = ROOT / "docs" / "up-defaults.md"
TEXT_MODULE = ROOT / "recsys" / "text.py"
CLOCK_MODULE = ROOT / "recsys" / "recipes" / "clock.py"


def _module_constants(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, ast.AnnAssign) else [])
        for t in targets:
            if isinstance(t, ast.Name) and re.fullmatch(r"[A-Z][A-Z0-9_]*", t.id):
                names.add(t.id)
    return names


def code_defaults() -> set[str]:
    """Every hyperparameter and named setting UP has today."""
    params = {n for n in inspect.signature(UserPersonalization.__init__).parameters
              if n != "self"}
    package = Path(up_package.__file__).parent
    constants = set().union(*(_module_constants(p) for p in package.rglob("*.py")
                              if p.name != "defaults.py"))
    text = {n for n in _module_constants(TEXT_MODULE) if n.startswith("DEFAULT_")}
    # UP's event clock; UP passes its own lead (AGE_CLOCK_MAX_LEAD_SECONDS).
    clock = _module_constants(CLOCK_MODULE) - {"CLOCK_MAX_LEAD_SECONDS"}
    return params | constants | text | clock


def dataset_roles() -> dict[str, str]:
    """docs/public-data.md's Roles table: dataset -> development or confirmation."""
    text = PUBLIC_DATA.read_text()
    section = text[text.index("### Roles"):]
    roles = dict(re.findall(r"^\| `([a-z0-9-]+)` \| (development|confirmation) \|",
                            section, re.MULTILINE))
    assert roles, "docs/public-data.md has no Roles table"
    return roles


def test_every_default_of_up_has_an_entry() -> None:
    missing = code_defaults() - set(registry.by_name()) - set(registry.NOT_DEFAULTS)
    assert not missing, (
        f"UP defaults without an entry in recsys/recipes/user_personalization/defaults.py: "
        f"{sorted(missing)}; say whether each is chosen in fit or frozen, and on what data")


def test_entries_are_unique_and_name_defaults_that_exist() -> None:
    names = [d.name for d in registry.DEFAULTS]
    assert len(names) == len(set(names))
    stale = set(names) - code_defaults()
    assert not stale, f"entries for defaults UP no longer has: {sorted(stale)}"


@pytest.mark.parametrize("entry", registry.DEFAULTS, ids=lambda d: d.name)
def test_entry_value_is_the_codes(entry: registry.Default) -> None:
    # A default changed without its entry (and its reason) is a new, unrecorded choice.
    assert entry.live_value() == entry.value


def test_no_entry_names_a_confirmation_dataset() -> None:
    roles = dataset_roles()
    confirmation = {d for d, r in roles.items() if r == "confirmation"}
    development = {d for d, r in roles.items() if r == "development"}
    assert confirmation, "docs/public-data.md names no confirmation dataset"
    for entry in registry.DEFAULTS:
        assert not set(entry.data) & confirmation, (
            f"{entry.name} was chosen on confirmation data {set(entry.data) & confirmation}: "
            "confirmation datasets are run once and choose nothing")
        unknown = set(entry.data) - development - registry.NOT_DATA
        assert not unknown, f"{entry.name} names data that docs/public-data.md lacks: {unknown}"
        assert entry.data, f"{entry.name} names no data (use none/unrecorded/prior-art)"


def test_public_data_roles_agree_with_the_pinned_sources() -> None:
    roles = dataset_roles()
    for name, source in PINNED_SOURCES.items():
        assert roles.get(name) == source.role, name


def test_chosen_in_fit_entries_say_where_in_fit() -> None:
    for entry in registry.DEFAULTS:
        if entry.chosen == registry.IN_FIT:
            assert "in fit" in entry.reason and "fallback" in entry.reason, entry.name
        else:
            assert entry.chosen == registry.FROZEN, entry.name


def test_up_defaults_doc_is_generated_from_the_registry() -> None:
    assert UP_DEFAULTS_DOC.read_text() == registry.render_markdown(), (
        "docs/up-defaults.md is stale: python -m recsys.recipes.user_personalization."
        "defaults > docs/up-defaults.md")
