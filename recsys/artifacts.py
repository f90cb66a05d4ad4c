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

Offline metrics are computed after a version is published (a model serves while they
are computed), so they live beside the version, not in it: ``<version>.metrics.json``
(:meth:`ArtifactStore.record_metrics`, :meth:`ArtifactStore.metrics`).

Several hosts share versions in one of two ways (:func:`open_artifact_store`):

- A **shared directory** (NFS, EFS, a CIFS or CephFS mount): the same class, as long as
  the mount keeps the two promises publishing relies on: ``rename`` of a directory within
  the filesystem is atomic and refuses a non-empty target, and a rename is visible to the
  other hosts' directory listings (close-to-open consistency, as NFS gives). The staging
  directory lives beside the version, so the rename never crosses filesystems.
- **S3** (or an S3-compatible store), :class:`S3ArtifactStore`: S3 has no rename, so the
  manifest is the commit. See that class for the layout.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

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
# S3: a version's manifest sits beside its files' folder, as "<version>.manifest.json".
S3_MANIFEST_SUFFIX = ".manifest.json"
# Beside a version (a file, so directory listings of versions skip it; an S3 key that is
# no manifest): its offline metrics, written after the version was published.
METRICS_SUFFIX = ".metrics.json"
# Downloaded S3 versions kept per recipe in a host's cache: the live one, the one before
# (to go back by publishing it again is a new version anyway) and one being swapped in.
CACHED_VERSIONS_KEPT = 3
# Each S3 request: connecting should take milliseconds on a network that works, so a
# dead endpoint fails a poll within seconds; reads of large model files get longer.
S3_CONNECT_TIMEOUT_SECONDS = 5
S3_READ_TIMEOUT_SECONDS = 60
S3_MAX_ATTEMPTS = 3  # botocore's standard retry mode: throttling and 5xx retried

log = logging.getLogger(__name__)


class UnknownRecipe(HunchError):
    """A recipe name that the engine does not have."""


class ArtifactNotFound(HunchError):
    """No published version (or not the one asked for) of a recipe."""


class ArtifactExists(HunchError):
    """Publishing a version that already exists (published versions never change)."""


class CorruptArtifact(HunchError):
    """An artifact directory whose manifest is missing or unreadable."""


class InvalidArtifactLocation(HunchError):
    """An artifact store location that is neither a directory nor ``s3://bucket/prefix``."""


class ArtifactStoreUnavailable(ArtifactNotFound):
    """The artifact store did not answer or refused (S3 endpoint down, bucket missing,
    credentials). A subclass of :class:`ArtifactNotFound` because, to a server, it means
    the same thing: no version can be had now, serve what is live or fall back."""


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


class VersionStore(Protocol):
    """What publishing and serving need of an artifact store (directory or S3)."""

    location: str

    def publish(self, recipe: str, model: Recipe, params: dict[str, Any],
                data_fingerprint: str, metrics: dict[str, float] | None = None, *,
                version: str | None = None, extra: dict[str, Any] | None = None) -> str: ...

    def versions(self, recipe: str) -> list[str]: ...

    def latest(self, recipe: str) -> str | None: ...

    def manifest(self, recipe: str, version: str | None = None) -> dict[str, Any]: ...

    def load(self, recipe: str, version: str | None = None) -> Artifact: ...

    def record_metrics(self, recipe: str, version: str, metrics: dict[str, float],
                       note: str | None = None) -> None: ...

    def metrics(self, recipe: str, version: str | None = None) -> dict[str, Any] | None: ...


def _metrics_record(recipe: str, version: str, metrics: dict[str, float],
                    note: str | None) -> bytes:
    record = {"recipe": recipe, "version": version, "metrics": metrics,
              "computed_at": datetime.now(UTC).isoformat()}
    if note:
        record["metrics_note"] = note
    return (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()


def open_artifact_store(location: Path | str, *, s3_endpoint_url: str | None = None,
                        cache_dir: Path | str | None = None) -> VersionStore:
    """The store at ``location``: ``s3://bucket/prefix`` (versions downloaded into
    ``cache_dir`` before loading) or a directory path, local or a shared mount."""
    text = str(location)
    if "://" not in text and not text.lower().startswith("s3:"):
        return ArtifactStore(text)
    if not text.startswith("s3://"):
        raise InvalidArtifactLocation(
            f"artifact store {text!r}: give a directory path or s3://bucket/prefix")
    if cache_dir is None:
        raise InvalidArtifactLocation(
            f"artifact store {text}: S3 versions need a local cache directory to be "
            "downloaded into (HUNCH_ARTIFACTS_CACHE_PATH)")
    return S3ArtifactStore(text, cache_dir, endpoint_url=s3_endpoint_url)


def _check_recipe(recipe: str) -> None:
    if recipe not in RECIPES:
        raise UnknownRecipe(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")


def _check_version_name(version: str) -> None:
    if not _VERSION_PATTERN.match(version):
        raise HunchError(
            f"version {version!r}: use letters, digits, '.', '_' or '-' (max 128), "
            "starting with a letter or digit"
        )


def _write_version(staging: Path, recipe: str, version: str, model: Recipe,
                   params: dict[str, Any], data_fingerprint: str,
                   metrics: dict[str, float] | None, extra: dict[str, Any] | None
                   ) -> dict[str, Any]:
    """Write a version's files (model/ and manifest.json) into ``staging``."""
    model.save(staging / MODEL_DIR)
    manifest = {
        "format": MANIFEST_FORMAT,
        "recipe": recipe,
        "version": version,
        "created_at": datetime.now(UTC).isoformat(),
        "parameters": params,
        "data_fingerprint": data_fingerprint,
        "metrics": metrics or {},
        **(extra or {}),
    }
    (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


class ArtifactStore:
    """Publishes and finds versions of trained recipes under the directory ``root``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    @property
    def location(self) -> str:
        return str(self.root)

    def _recipe_dir(self, recipe: str) -> Path:
        _check_recipe(recipe)
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
        else:
            _check_version_name(version)
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
            _write_version(staging, recipe, version, model, params, data_fingerprint,
                           metrics, extra)
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

    def record_metrics(self, recipe: str, version: str, metrics: dict[str, float],
                       note: str | None = None) -> None:
        """Record the offline metrics of the published ``version`` (replacing earlier ones),
        beside it: the version itself never changes. Written whole or not at all."""
        path = self._version_dir(recipe, version)
        staging = path.parent / f".metrics-{uuid.uuid4().hex}"
        try:
            staging.write_bytes(_metrics_record(recipe, path.name, metrics, note))
            os.replace(staging, path.parent / f"{path.name}{METRICS_SUFFIX}")
        finally:
            staging.unlink(missing_ok=True)

    def metrics(self, recipe: str, version: str | None = None) -> dict[str, Any] | None:
        """The recorded offline metrics of ``version`` (newest when None): ``metrics``,
        ``computed_at`` and maybe ``metrics_note``; None while none are recorded."""
        path = self._version_dir(recipe, version)
        target = path.parent / f"{path.name}{METRICS_SUFFIX}"
        try:
            return json.loads(target.read_text())
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as exc:
            raise CorruptArtifact(f"{target}: unreadable metrics ({exc}); delete it and "
                                  "train again") from exc

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


class S3ArtifactStore:
    """Versions in an S3 bucket (or an S3-compatible store) under ``s3://bucket/prefix``.

    Layout under the prefix::

        <recipe>/<version>.manifest.json          the commit: the version exists once this does
        <recipe>/<version>/<upload>/model/...     the model files, under a per-publish folder

    S3 has no rename, so publishing uploads every file first and writes the manifest
    last, with a conditional put (``If-None-Match: *``) so that of two publishers of one
    version exactly one wins; a version without a manifest (a publisher killed half-way)
    does not exist to readers, and its files are in a folder no manifest names. The
    per-publish folder is why the loser of such a race cannot overwrite the winner's
    files. Listing the versions of a recipe is one ``ListObjectsV2`` with a ``/``
    delimiter: manifests come back as objects, version folders as common prefixes (not
    read). A version is downloaded whole into ``cache_dir`` (a hidden folder renamed into
    place, as :class:`ArtifactStore` publishes) before it is loaded, once per host.
    Every failure to reach the store is an :class:`ArtifactStoreUnavailable`.
    """

    def __init__(self, url: str, cache_dir: Path | str, *, endpoint_url: str | None = None,
                 client: Any = None, max_attempts: int = S3_MAX_ATTEMPTS) -> None:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
            raise InvalidArtifactLocation(
                f"artifact store {url!r}: write it as s3://bucket or s3://bucket/prefix")
        self.location = url
        self.bucket = parts.netloc
        prefix = parts.path.strip("/")
        self.prefix = f"{prefix}/" if prefix else ""
        self.endpoint_url = endpoint_url
        self.cache_root = Path(cache_dir) / self.bucket / prefix
        if client is None:
            import boto3
            from botocore.config import Config

            # Clients are thread-safe; the serving threads and the tail share this one.
            client = boto3.session.Session().client(
                "s3", endpoint_url=endpoint_url,
                config=Config(connect_timeout=S3_CONNECT_TIMEOUT_SECONDS,
                              read_timeout=S3_READ_TIMEOUT_SECONDS,
                              retries={"max_attempts": max_attempts, "mode": "standard"}))
        self.client = client

    def __repr__(self) -> str:
        return f"S3ArtifactStore({self.location!r})"

    # -- keys ---------------------------------------------------------------------

    def _manifest_key(self, recipe: str, version: str) -> str:
        return f"{self.prefix}{recipe}/{version}{S3_MANIFEST_SUFFIX}"

    def _files_prefix(self, recipe: str, version: str, upload: str) -> str:
        return f"{self.prefix}{recipe}/{version}/{upload}/"

    @contextmanager
    def _talking(self, what: str) -> Iterator[None]:
        """Turn boto errors into one typed error that says what to check."""
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            yield
        except ClientError as exc:
            code = _error_code(exc)
            if code == "NoSuchBucket":
                hint = f"bucket {self.bucket} does not exist: create it"
            elif code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
                hint = "access refused: check the AWS credentials and the bucket policy"
            else:
                hint = f"{code}: {exc}"
            raise ArtifactStoreUnavailable(f"{self.location}: {what} failed ({hint})") from exc
        except NoCredentialsError as exc:
            raise ArtifactStoreUnavailable(
                f"{self.location}: {what} failed: no AWS credentials (set AWS_ACCESS_KEY_ID "
                "and AWS_SECRET_ACCESS_KEY, a profile, or an instance role)") from exc
        except (BotoCoreError, Boto3Error) as exc:
            endpoint = self.endpoint_url or "AWS S3"
            raise ArtifactStoreUnavailable(
                f"{self.location}: {what} failed at {endpoint}: {exc} (check "
                "HUNCH_S3_ENDPOINT_URL and that the store is up)") from exc

    # -- publishing ---------------------------------------------------------------

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
        """Upload ``model`` as a new immutable version; see :meth:`ArtifactStore.publish`."""
        _check_recipe(recipe)
        if version is None:
            version = _new_version()
            while self._exists(recipe, version):
                version = _new_version()
        else:
            _check_version_name(version)
            if self._exists(recipe, version):
                raise ArtifactExists(
                    f"{recipe} version {version} already exists in {self.location}; published "
                    "versions never change: publish under a new version")
        upload = uuid.uuid4().hex
        base = self._files_prefix(recipe, version, upload)
        uploaded: list[str] = []
        with tempfile.TemporaryDirectory(prefix="hunch-publish-") as tmp:
            staging = Path(tmp)
            manifest = _write_version(staging, recipe, version, model, params,
                                      data_fingerprint, metrics, extra)
            files = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*")
                           if p.is_file() and p.name != MANIFEST_FILE)
            try:
                with self._talking(f"uploading {recipe} version {version}"):
                    for rel in files:
                        uploaded.append(base + rel)
                        self.client.upload_file(str(staging / rel), self.bucket, base + rel)
                manifest["storage"] = {"upload": upload, "files": files}
                self._commit(recipe, version, manifest)
            except BaseException:
                # Files no manifest names are invisible anyway; removing them only saves
                # space. An interrupt (SIGTERM stops a trainer) can land after the manifest
                # was written: then they are the version's files and stay.
                if not self._names_upload(recipe, version, upload):
                    self._delete_quietly(uploaded)
                raise
        return version

    def _names_upload(self, recipe: str, version: str, upload: str) -> bool:
        """Whether the manifest of ``version`` names this publish's files; True when
        the store cannot say (files kept for nothing harm nobody, deleted ones would)."""
        from botocore.exceptions import ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket,
                                          Key=self._manifest_key(recipe, version))["Body"].read()
            return (json.loads(body).get("storage") or {}).get("upload") == upload
        except ClientError as exc:
            return _error_code(exc) not in ("NoSuchKey", "404")
        except Exception:  # noqa: BLE001 - unreachable or unreadable: keep the files
            return True

    def _commit(self, recipe: str, version: str, manifest: dict[str, Any]) -> None:
        """Write the manifest only if none exists: the moment the version appears."""
        from botocore.exceptions import ClientError

        key = self._manifest_key(recipe, version)
        body = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
        exists = ArtifactExists(f"{recipe} version {version} was published meanwhile in "
                                f"{self.location}; publish under a new version")
        with self._talking(f"committing {recipe} version {version}"):
            try:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=body,
                                       ContentType="application/json", IfNoneMatch="*")
                return
            except ClientError as exc:
                code = _error_code(exc)
                if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                    raise exists from exc
                if code not in ("NotImplemented", "501"):
                    raise
            # An endpoint without conditional writes: checked before uploading and now
            # again; two publishers of one explicit version racing here are not caught.
            log.warning("%s does not support conditional writes; publishing %s %s "
                        "with a check instead", self.location, recipe, version)
            if self._exists(recipe, version):
                raise exists
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body,
                                   ContentType="application/json")

    def _exists(self, recipe: str, version: str) -> bool:
        from botocore.exceptions import ClientError

        with self._talking(f"looking for {recipe} version {version}"):
            try:
                self.client.head_object(Bucket=self.bucket,
                                        Key=self._manifest_key(recipe, version))
                return True
            except ClientError as exc:
                if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise

    def _delete_quietly(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes 1,000 keys at most
            try:
                self.client.delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": k} for k in keys[start:start + 1000]], "Quiet": True})
            except Exception as exc:  # noqa: BLE001 - unreferenced files harm nobody
                log.warning("could not remove unpublished files from %s: %s", self.location, exc)

    # -- reading ------------------------------------------------------------------

    def versions(self, recipe: str) -> list[str]:
        """Published (manifest written) versions of ``recipe``, oldest first."""
        _check_recipe(recipe)
        folder = f"{self.prefix}{recipe}/"
        found: list[str] = []
        with self._talking(f"listing {recipe} versions"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=folder, Delimiter="/")
            for page in pages:
                for obj in page.get("Contents", []):
                    name = obj["Key"][len(folder):]
                    if name.endswith(S3_MANIFEST_SUFFIX):
                        version = name[: -len(S3_MANIFEST_SUFFIX)]
                        if _VERSION_PATTERN.match(version):
                            found.append(version)
        return sorted(found)

    def latest(self, recipe: str) -> str | None:
        versions = self.versions(recipe)
        return versions[-1] if versions else None

    def manifest(self, recipe: str, version: str | None = None) -> dict[str, Any]:
        version = self._resolve(recipe, version)
        found = self._read_json(self._manifest_key(recipe, version), recipe, version, "manifest")
        if found is None:
            known = ", ".join(self.versions(recipe)[-5:]) or "none"
            raise ArtifactNotFound(f"{recipe} has no version {version!r} in "
                                   f"{self.location} (newest: {known})")
        return found

    def _read_json(self, key: str, recipe: str, version: str, what: str) -> dict[str, Any] | None:
        """One JSON object of a version (its manifest or metrics); None when absent."""
        from botocore.exceptions import ClientError

        with self._talking(f"reading the {recipe} {version} {what}"):
            try:
                body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            except ClientError as exc:
                if _error_code(exc) in ("NoSuchKey", "404"):
                    return None
                raise
        try:
            return json.loads(body)
        except json.JSONDecodeError as exc:
            raise CorruptArtifact(f"s3://{self.bucket}/{key}: unreadable {what} ({exc}); "
                                  "delete that object and train again") from exc

    def load(self, recipe: str, version: str | None = None) -> Artifact:
        """Download (once per host) and load a version (the newest when None)."""
        version = self._resolve(recipe, version)
        path = self._cached(recipe, version)
        manifest = json.loads((path / MANIFEST_FILE).read_text())
        model = recipe_class(recipe).load(path / MODEL_DIR)
        return Artifact(recipe, version, model, manifest, path)

    def record_metrics(self, recipe: str, version: str, metrics: dict[str, float],
                       note: str | None = None) -> None:
        """See :meth:`ArtifactStore.record_metrics`: one object beside the manifest."""
        version = self._resolve(recipe, version)
        if not self._exists(recipe, version):
            raise ArtifactNotFound(f"{recipe} has no version {version!r} in {self.location}")
        with self._talking(f"recording the {recipe} {version} metrics"):
            self.client.put_object(Bucket=self.bucket, Key=self._metrics_key(recipe, version),
                                   Body=_metrics_record(recipe, version, metrics, note),
                                   ContentType="application/json")

    def metrics(self, recipe: str, version: str | None = None) -> dict[str, Any] | None:
        """See :meth:`ArtifactStore.metrics`."""
        version = self._resolve(recipe, version)
        return self._read_json(self._metrics_key(recipe, version), recipe, version, "metrics")

    def _metrics_key(self, recipe: str, version: str) -> str:
        return f"{self.prefix}{recipe}/{version}{METRICS_SUFFIX}"

    def _resolve(self, recipe: str, version: str | None) -> str:
        _check_recipe(recipe)
        if version is None:
            version = self.latest(recipe)
            if version is None:
                raise ArtifactNotFound(
                    f"no trained {recipe} model in {self.location}; run "
                    f"`hunch train --recipe {recipe}` first")
        elif not _VERSION_PATTERN.match(version):
            raise ArtifactNotFound(f"{recipe} has no version {version!r} in {self.location}")
        return version

    def _cached(self, recipe: str, version: str) -> Path:
        """The local copy of a version, downloaded whole and renamed into place."""
        folder = self.cache_root / recipe
        final = folder / version
        if final.is_dir():
            return final
        manifest = self.manifest(recipe, version)
        storage = manifest.get("storage") or {}
        if "upload" not in storage or "files" not in storage:
            raise CorruptArtifact(f"{self.location}: the {recipe} {version} manifest lists "
                                  "no files; delete that version and train again")
        folder.mkdir(parents=True, exist_ok=True)
        staging = folder / f".download-{uuid.uuid4().hex}"
        staging.mkdir()
        base = self._files_prefix(recipe, version, storage["upload"])
        try:
            with self._talking(f"downloading {recipe} version {version}"):
                for rel in storage["files"]:
                    target = staging / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    self.client.download_file(self.bucket, base + rel, str(target))
            (staging / MANIFEST_FILE).write_text(
                json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            _make_read_only(staging)
            try:
                os.rename(staging, final)
            except OSError:
                if not final.is_dir():
                    raise
                _remove_tree(staging)  # another worker of this host downloaded it first
        except BaseException:
            if staging.exists():
                _remove_tree(staging)
            raise
        self._prune(folder, keep=version)
        return final

    def _prune(self, folder: Path, keep: str) -> None:
        """Drop old downloads: S3 holds every version, the cache only needs recent ones."""
        cached = sorted(e.name for e in os.scandir(folder)
                        if e.is_dir() and not e.name.startswith("."))
        for name in cached[:-CACHED_VERSIONS_KEPT]:
            if name != keep:
                try:
                    _remove_tree(folder / name)
                except OSError as exc:  # another worker pruning the same folder
                    log.debug("could not prune %s: %s", folder / name, exc)


def _error_code(exc: Any) -> str:
    error = getattr(exc, "response", {}).get("Error", {})
    return str(error.get("Code") or getattr(exc, "response", {}).get(
        "ResponseMetadata", {}).get("HTTPStatusCode", ""))
