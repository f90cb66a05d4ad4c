"""Serving trained recipes: the newest version of each, swapped in while running.

:class:`RecipeService` answers ``recommend`` from the newest published version of each
recipe (see :mod:`recsys.artifacts`). Hot swap: at most once per
``check_seconds`` per recipe the artifact store is listed (a directory listing, or one S3
``ListObjectsV2``; no file is opened); when a newer version is there, the thread that
noticed (a request, or the gateway's model tail, which asks every second) loads it
(with ``background_swap``, as servers run, threads of their own list and load, so no
request waits for S3), *and catches it up with the event store* before replacing
the live model by a single reference assignment, so a request already running keeps the
model it started with and no request ever sees a model that has not yet caught up. Other
threads keep serving the old version meanwhile. Every host polls the shared store
itself, so a version published once reaches every gateway within ``check_seconds``
plus its load time. When the store cannot be reached, or a new version cannot be
loaded, the live version keeps serving (logged) and the next poll tries again.

Events recorded after training reach every recipe the same way: each request first
reads ``events_since(last_seq)`` from the event store (one indexed SQLite query, usually
empty) and feeds it to the model's ``observe``, so popularity and trending counters move
at once and user-personalization sees the requesting user's latest events (and everyone
else's, for its popularity and impression counts) before it ranks (in a feed request
and in a refresher round, only when the store's head has moved past the model's number: see
:mod:`recsys.event_head`, one read per request for every recipe). Where the tail starts:
the manifest's ``event_seq`` when the trainer recorded one, else the start of the store,
keeping only events newer than the manifest's ``trained_until`` (the newest timestamp
trained on, ignoring a few stray future ones: see :mod:`recsys.recipes.clock`). Chosen because models trained from a CSV directory cannot know store
sequence numbers, while timestamps say exactly which events the model already learned;
the cost is that an event stored late with a timestamp older than ``trained_until`` waits
for the next training.

Why not hand user-personalization the user's ``latest_events`` per request instead: its
``observe`` counts every event it is given (popularity, impressions), so the same event
arriving through both the tail and the per-user query would count twice, and without the
tail its global counts would only move for users who happen to ask.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from recsys.artifacts import (
    RECIPES,
    Artifact,
    ArtifactNotFound,
    ArtifactStore,
    ArtifactStoreUnavailable,
    CorruptArtifact,
    VersionStore,
)
from recsys.event_head import EventHead
from recsys.events import Impression, Interaction
from recsys.recipes.base import ScoredItem

log = logging.getLogger(__name__)

# A store listing per recipe at most this often: new versions appear within a few
# seconds, and a busy server does not list the store on every request (on S3 a LIST
# request costs money and ~20 ms). The gateway sets it from HUNCH_ARTIFACTS_POLL_SECONDS.
HOT_SWAP_CHECK_SECONDS = 5.0
# Events read from the store per query while catching up.
TAIL_BATCH = 10_000


class EventSource(Protocol):
    """What serving needs from :class:`recsys.events.EventStore`."""

    def events_since(self, seq: int, limit: int = ...) -> list[tuple[int, Interaction | Impression]]: ...


@dataclass(frozen=True)
class Recommendations:
    """One answer: the ranked polls, and which model version produced them and why."""

    recipe: str
    version: str
    items: list[ScoredItem]
    reason: str | None = None  # e.g. "trending" or "popular-fallback"


@dataclass
class _Live:
    """A loaded version and what it has been fed since it was trained."""

    artifact: Artifact
    last_seq: int = 0
    trained_until: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    # The polls added since start that this version was given (see _add_items_since).
    added: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return self.artifact.version


class RecipeService:
    """Serves the newest version of each trained recipe in ``artifacts``: a directory, or
    a store from :func:`recsys.artifacts.open_artifact_store` (S3)."""

    def __init__(
        self,
        artifacts: Path | str | VersionStore,
        event_store: EventSource | None = None,
        *,
        check_seconds: float = HOT_SWAP_CHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        background_swap: bool = False,
        head: EventHead | None = None,
        on_fold_in_failure: Callable[[str, int], None] | None = None,
    ) -> None:
        self.store: VersionStore = (ArtifactStore(artifacts)
                                    if isinstance(artifacts, (Path, str)) else artifacts)
        self.event_store = event_store
        self.head = head  # per request: skip the tail's query when nothing is new
        self.check_seconds = check_seconds
        # A server sets it: a newer version is loaded by a thread of its own while every
        # request, including the one that noticed it, goes on with the live version.
        self.background_swap = background_swap
        self._polling: set[str] = set()  # recipes with a background poll running
        self._polling_guard = threading.Lock()
        self._clock = clock
        self._live: dict[str, _Live] = {}
        # recipe -> (when the store was last listed, the newest version it had then)
        self._listed: dict[str, tuple[float, str | None]] = {}
        self._loading: dict[str, threading.Lock] = {name: threading.Lock() for name in RECIPES}
        self._added_items: dict[str, dict[str, Any]] = {}
        self._store_failing = False  # the last request's tail could not read the store
        # Stored events a live model's observe rejected, per recipe (since this process
        # started): they count only from the next training, so health and metrics show
        # them (``on_fold_in_failure(recipe, events)``, e.g. a Prometheus counter).
        self.fold_in_failures: dict[str, int] = {}
        self.on_fold_in_failure = on_fold_in_failure

    def available(self) -> list[str]:
        """Recipes that have at least one published version (or a live one while the
        store cannot be reached)."""
        out = []
        for name in RECIPES:
            try:
                if self._newest(name) is not None:
                    out.append(name)
                    continue
            except ArtifactStoreUnavailable as exc:
                log.warning("artifact store unavailable: %s", exc)
            if name in self._live:
                out.append(name)
        return out

    def live_versions(self) -> dict[str, str]:
        """The versions serving now, per recipe, without loading or listing anything."""
        return {name: live.version for name, live in list(self._live.items())}

    def version(self, recipe: str) -> str | None:
        """The version now serving ``recipe`` (loading it if needed)."""
        live = self._current(recipe)
        return live.version if live else None

    def recommend(
        self,
        recipe: str,
        user_id: str | None,
        n: int = 25,
        *,
        now: float | None = None,
        exclude: Collection[str] = (),
        allow: Callable[[str], bool] | None = None,
    ) -> Recommendations:
        """Top ``n`` polls from the newest version of ``recipe``, events folded in."""
        live = self._serving(recipe)
        if live is None:
            raise ArtifactNotFound(
                f"no trained {recipe} model in {self.store.location}; run "
                f"`hunch train --recipe {recipe} --data DIR` first"
            )
        model = live.artifact.model
        with live.lock:
            self._tail_if_readable(live)
            rank = getattr(model, "rank", None)
            if callable(rank):  # trending-now says why (trending or popular fallback)
                ranked = rank(n, now=now, exclude=exclude, allow=allow)
                return Recommendations(recipe, live.version, ranked.items, ranked.reason)
            items = model.recommend(user_id, n, now=now, exclude=exclude, allow=allow)
        return Recommendations(recipe, live.version, items)

    # -- hot swap -----------------------------------------------------------------

    def _newest(self, recipe: str) -> str | None:
        """The newest published version, listing the store at most every check_seconds
        (a failed listing counts too: a store that is down is not asked per request)."""
        listed = self._listed.get(recipe)
        now = self._clock()
        if listed is not None and now - listed[0] < self.check_seconds:
            return listed[1]
        if listed is not None:  # concurrent callers keep the old answer meanwhile
            self._listed[recipe] = (now, listed[1])
        newest = self.store.latest(recipe)
        self._listed[recipe] = (self._clock(), newest)
        return newest

    def _serving(self, recipe: str) -> _Live | None:
        """The live version for a request. With ``background_swap`` the store is never
        asked on a request's time after the first look: a due poll runs on a thread of its
        own (an S3 endpoint that is down costs its timeouts there), and the request is
        answered by what is live, or falls back when nothing is yet."""
        listed = self._listed.get(recipe)
        if not self.background_swap or listed is None:
            return self._current(recipe)  # the first look (a server warms up before)
        if self._clock() - listed[0] >= self.check_seconds:
            with self._polling_guard:
                start = recipe not in self._polling
                self._polling.add(recipe)
            if start:
                threading.Thread(target=self._poll_in_background, args=(recipe,),
                                 name=f"poll-{recipe}", daemon=True).start()
        return self._live.get(recipe)

    def _poll_in_background(self, recipe: str) -> None:
        try:
            self._current(recipe)
        except Exception as exc:  # noqa: BLE001 - logged; the next due request polls again
            log.warning("%s: polling the artifact store failed: %s", recipe, exc)
        finally:
            with self._polling_guard:
                self._polling.discard(recipe)

    def _current(self, recipe: str) -> _Live | None:
        loading = self._loading.get(recipe)
        if loading is None:
            self.store.versions(recipe)  # raises UnknownRecipe with the choices
        live = self._live.get(recipe)
        try:
            newest = self._newest(recipe)
        except ArtifactStoreUnavailable as exc:
            if live is None:
                raise
            log.warning("%s: serving version %s, the store is unavailable: %s",
                        recipe, live.version, exc)
            return live
        if newest is None or (live is not None and live.version == newest):
            return live
        # One thread loads; the others keep serving what is live (or wait if nothing is).
        if not loading.acquire(blocking=live is None):
            return live
        if live is not None and self.background_swap:
            # Off the request: downloading a large model from S3 takes seconds.
            threading.Thread(target=self._swap, args=(recipe, newest, loading),
                             name=f"swap-{recipe}", daemon=True).start()
            return live
        return self._swap(recipe, newest, loading)

    def _swap(self, recipe: str, newest: str, loading: threading.Lock) -> _Live | None:
        """Load ``newest`` and make it live (``loading`` is held, and released here)."""
        try:
            live = self._live.get(recipe)
            if live is not None and live.version == newest:
                return live  # another thread just loaded it
            try:
                fresh = self._prepare(self.store.load(recipe, newest))
            except (ArtifactNotFound, CorruptArtifact) as exc:
                if live is None:
                    raise
                # Not again before the next listing: keep serving the live version.
                self._listed[recipe] = (self._clock(), live.version)
                log.warning("%s: could not load version %s, still serving %s: %s",
                            recipe, newest, live.version, exc)
                return live
            except Exception:
                if live is None:
                    raise
                log.exception("%s: loading version %s failed, still serving %s",
                              recipe, newest, live.version)
                self._listed[recipe] = (self._clock(), live.version)
                return live
            self._live[recipe] = fresh  # the swap: one assignment
            # Polls added while it was prepared went to the live versions only.
            self._add_items_since(fresh)
            return fresh
        finally:
            loading.release()

    def _prepare(self, artifact: Artifact) -> _Live:
        manifest = artifact.manifest
        live = _Live(artifact, last_seq=int(manifest.get("event_seq") or 0),
                     trained_until=manifest.get("trained_until"))
        if "event_seq" in manifest:
            live.trained_until = None  # the sequence number already says what is new
        elif live.trained_until is not None and hasattr(self.event_store, "seq_before"):
            # Skip, in one indexed query, the events the model was trained on.
            live.last_seq = self.event_store.seq_before(int(live.trained_until))
        self._add_polls_written_since_training(artifact)
        self._add_items_since(live)
        self._tail(live)
        return live

    def _add_items_since(self, live: _Live) -> None:
        """Give ``live`` the polls :meth:`add_items` took since start that it was not
        given yet: all of them when it is prepared, then those that came while it was
        (a new record object per poll written, so identity tells them apart)."""
        with live.lock:
            late = {k: v for k, v in list(self._added_items.items())
                    if live.added.get(k) is not v}
            if late:
                live.artifact.model.add_items(late)
                live.added.update(late)

    def _add_polls_written_since_training(self, artifact: Artifact) -> None:
        """Polls stored (new or edited) after the model's training read the catalog: a
        worker that starts, or loads this version, after they were written was never
        told of them (a poll without a vote yet left every feed at a restart)."""
        seq = artifact.manifest.get("catalog_seq")
        if seq is None or not hasattr(self.event_store, "items_updated_since"):
            return  # trained from files, or before the manifest said
        seq = int(seq)
        while True:
            seq, records = self.event_store.items_updated_since(seq)
            if not records:
                return
            artifact.model.add_items(records)

    # -- events -------------------------------------------------------------------

    def _is_new(self, live: _Live, event: Interaction | Impression) -> bool:
        return live.trained_until is None or event.timestamp > live.trained_until

    def _tail(self, live: _Live) -> None:
        if self.event_store is None:
            return
        while True:
            batch = self.event_store.events_since(live.last_seq, TAIL_BATCH)
            if not batch:
                return
            # Past the batch before it is folded in: one the model cannot take would
            # otherwise be read again, and fail again, on every request.
            live.last_seq = batch[-1][0]
            fresh = [e for _, e in batch if self._is_new(live, e)]
            try:
                live.artifact.model.observe(fresh)
            except Exception:  # noqa: BLE001 - the model's error, not the store's
                # Said as what it is (the request path would report a store outage), and
                # the tail goes on: these events count from the next training.
                log.exception("%s %s: could not fold in stored events %d-%d; they count "
                              "from the next training", live.artifact.recipe, live.version,
                              batch[0][0], batch[-1][0])
                self._fold_in_failed(live.artifact.recipe, len(fresh))
            if len(batch) < TAIL_BATCH:
                return

    def _fold_in_failed(self, recipe: str, events: int) -> None:
        self.fold_in_failures[recipe] = self.fold_in_failures.get(recipe, 0) + events
        if self.on_fold_in_failure is not None:
            try:
                self.on_fold_in_failure(recipe, events)
            except Exception:  # noqa: BLE001 - reporting must not stop the tail
                log.exception("reporting %s's fold-in failure failed", recipe)

    def _tail_to_head(self, live: _Live) -> None:
        """:meth:`_tail`, skipped when the head of this request (or refresher round) says
        nothing is new; outside one, always."""
        head = self.head.seq() if self.head is not None else None
        if head is None or live.last_seq < head:
            self._tail(live)
            if head is not None:  # the last numbers may be de-duplicated events'
                live.last_seq = max(live.last_seq, head)

    def _tail_if_readable(self, live: _Live) -> None:
        """Fold new events in before a request ranks; when the store cannot be read
        (restarting, a full disk), rank with what is in memory instead of failing the
        feed: the refresher (recsys/refresher.py) reports the outage and catches up."""
        try:
            self._tail_to_head(live)
        except Exception as exc:  # noqa: BLE001 - any store error; warned once per outage
            if not self._store_failing:
                log.warning("cannot read new events (%s: %s); recommending from the "
                            "models in memory", type(exc).__name__, exc)
            self._store_failing = True
        else:
            self._store_failing = False

    def model(self, recipe: str):
        """The live model of ``recipe``, caught up with the event store (for analyses
        and tests that inspect it; requests should use :meth:`recommend`)."""
        live = self._current(recipe)
        if live is None:
            raise ArtifactNotFound(f"no trained {recipe} model in {self.store.location}")
        with live.lock:
            self._tail_to_head(live)
        return live.artifact.model

    def add_items(self, items: dict[str, dict[str, Any]]) -> None:
        """New polls (catalog ingest): recommendable at once by every live model, and by
        versions loaded later (which were trained before these polls existed)."""
        self._added_items.update(items)
        for live in list(self._live.values()):
            with live.lock:
                live.artifact.model.add_items(items)

    def describe(self) -> dict[str, Any]:
        """What is live: recipe -> version (for health and readiness routes)."""
        return {name: live.version for name, live in self._live.items()}
