"""Versioned, immutable model artifacts: Personalize's "solution versions", on disk.

Layout: ``<root>/<recipe>/<version>/`` holds the recipe's own model files (written by
its ``save``) under ``model/`` and a ``manifest.json`` (recipe, version, created_at,
parameters, data fingerprint, offline metrics, training horizon).

Why publishing is a rename: the whole version is written into a hidden temporary
directory beside its final place and then renamed, which the filesystem does atomically,
so a server polling for new versions never loads half an artifact. Versions are never
modified: files and directories are made read-only and publishing an existing version is
refused. Generated version names sort in publication order (UTC time to the microsecond),
so the newest is found from a directory listing without opening any file; a caller who
names versions itself must pick names that sort the same way (e.g. ``v0002`` after
``v0001``).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import stat
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recsys.errors import HunchError
from recsys.recipes.base import Recipe

# Recipe name -> "module:Class", imported only when that recipe is used so that a
# missing optional recipe (or its heavy dependencies) does not break the others.
RECIPES: dict[str, str] = {
    "popularity-count": "recsys.recipes.popularity_count:PopularityCount",
    "trending-now": "recsys.recipes.trending_now:TrendingNow",
    "user-personalization": "recsys.recipes.user_personalization:UserPersonalization",
}
MANIFEST_FILE = "manifest.json"
MODEL_DIR = "model"
MANIFEST_FORMAT = 1  # bump when the manifest's meaning changes
_VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_READ_ONLY_FILE = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
_READ_ONLY_DIR = _READ_ONLY_FILE | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH


class UnknownRecipe(HunchError):
    """A recipe name that the engine does not have."""


class ArtifactNotFound(HunchError):
    """No published version (or not the one asked for) of a recipe."""


class ArtifactExists(HunchError):
    """Publishing a version that already exists (published versions never change)."""


class CorruptArtifact(HunchError):
    """An artifact directory whose manifest is missing or unreadable."""


def recipe_class(name: str) -> type[Recipe]:
    """The class of the recipe called ``name`` (e.g. "trending-now")."""
    target = RECIPES.get(name)
    if target is None:
        raise UnknownRecipe(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise UnknownRecipe(f"recipe {name!r} is not available in this build "
                            f"({module_name} is missing)") from exc
    return getattr(module, class_name)


@dataclass(frozen=True)
class Artifact:
    """A loaded version: the fitted model and its manifest."""

    recipe: str
    version: str
    model: Any
    manifest: dict[str, Any]
    path: Path


def _new_version() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def _make_read_only(path: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(path, topdown=False):
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), _READ_ONLY_FILE)
        os.chmod(dirpath, _READ_ONLY_DIR)


class ArtifactStore:
    """Publishes and finds versions of trained recipes under ``root``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _recipe_dir(self, recipe: str) -> Path:
        if recipe not in RECIPES:
            raise UnknownRecipe(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
        return self.root / recipe

    def publish(
        self,
        recipe: str,
        model: Recipe,
        params: dict[str, Any],
        data_fingerprint: str,
        metrics: dict[str, float] | None = None,
        *,
        version: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> str:
        """Write ``model`` as a new immutable version and return the version name.

        ``extra`` adds fields to the manifest (e.g. ``trained_until``, the newest event
        timestamp the model learned from, which serving uses to fold in newer events).
        """
        recipe_dir = self._recipe_dir(recipe)
        if version is None:
            version = _new_version()
            # Two publishes in the same microsecond: take the next free name.
            while (recipe_dir / version).exists():
                version = _new_version()
        elif not _VERSION_PATTERN.match(version):
            raise HunchError(
                f"version {version!r}: use letters, digits, '.', '_' or '-' (max 128), "
                "starting with a letter or digit"
            )
        final = recipe_dir / version
        if final.exists():
            raise ArtifactExists(
                f"{recipe} version {version} already exists at {final}; published versions "
                "never change: publish under a new version"
            )
        recipe_dir.mkdir(parents=True, exist_ok=True)
        staging = recipe_dir / f".staging-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            model.save(staging / MODEL_DIR)
            created = datetime.now(UTC)
            manifest = {
                "format": MANIFEST_FORMAT,
                "recipe": recipe,
                "version": version,
                "created_at": created.isoformat(),
                "parameters": params,
                "data_fingerprint": data_fingerprint,
                "metrics": metrics or {},
                **(extra or {}),
            }
            (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True)
                                                 + "\n")
            _make_read_only(staging)
            try:
                # rename() refuses a non-empty target, so two racing publishers of the
                # same explicit version cannot both win.
                os.rename(staging, final)
            except OSError as exc:
                raise ArtifactExists(
                    f"{recipe} version {version} already exists at {final}; publish under "
                    "a new version"
                ) from exc
        except BaseException:
            if staging.exists():
                _remove_tree(staging)
            raise
        return version

    def versions(self, recipe: str) -> list[str]:
        """Published versions of ``recipe``, oldest first."""
        recipe_dir = self._recipe_dir(recipe)
        if not recipe_dir.is_dir():
            return []
        return sorted(
            entry.name for entry in os.scandir(recipe_dir)
            if entry.is_dir() and not entry.name.startswith(".")
        )

    def latest(self, recipe: str) -> str | None:
        """The newest published version of ``recipe``, or None when there is none."""
        versions = self.versions(recipe)
        return versions[-1] if versions else None

    def manifest(self, recipe: str, version: str | None = None) -> dict[str, Any]:
        path = self._version_dir(recipe, version) / MANIFEST_FILE
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CorruptArtifact(f"{path}: unreadable manifest ({exc}); delete that "
                                  "version directory and train again") from exc

    def load(self, recipe: str, version: str | None = None) -> Artifact:
        """Load a version of ``recipe`` (the newest when ``version`` is None)."""
        path = self._version_dir(recipe, version)
        manifest = self.manifest(recipe, path.name)
        model = recipe_class(recipe).load(path / MODEL_DIR)
        return Artifact(recipe, path.name, model, manifest, path)

    def _version_dir(self, recipe: str, version: str | None) -> Path:
        if version is None:
            version = self.latest(recipe)
            if version is None:
                raise ArtifactNotFound(
                    f"no trained {recipe} model in {self.root}; run "
                    f"`hunch train --recipe {recipe} --data DIR` first"
                )
        path = self._recipe_dir(recipe) / version
        if not _VERSION_PATTERN.match(version) or not path.is_dir():
            known = ", ".join(self.versions(recipe)[-5:]) or "none"
            raise ArtifactNotFound(f"{recipe} has no version {version!r} in {self.root} "
                                   f"(newest: {known})")
        return path


def _remove_tree(path: Path) -> None:
    """Delete a (possibly read-only) directory tree we created."""

    for dirpath, _, _ in os.walk(path):
        os.chmod(dirpath, stat.S_IRWXU)
    shutil.rmtree(path)
