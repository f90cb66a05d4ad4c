"""What one feed request is filtered by: the user's recent events and record, the
exclusion and named filters as masks over the catalog, and the active promotion with its
filter. Personalize applies filters to every recipe of a request; here they become one
keep-mask that every source honours.

Owned by the serving layer (one per worker); the gateway calls it per request. A request
runs in one thread, so the user's filter context is memoised per thread between
:meth:`FeedFilters.begin_request` calls.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable

import numpy as np

from recsys.events import LatestInteractionsCache
from recsys.filters import (
    Catalog,
    CompiledFilter,
    FilterContext,
    InvalidFilterExpression,
    UnknownFilter,
    compile_filter,
)
from recsys.filters.compiler import FilterNotApplicable, InvalidFilterValues
from recsys.filters.store import FilterStoreProtocol
from recsys.promotions import (
    InvalidPromotion,
    Promotion,
    PromotionStoreProtocol,
    select_active,
)
from recsys.recipes.base import PollMask
from recsys.store_db import StoreUnavailable

log = logging.getLogger(__name__)

# How stale the active promotion may be in a worker after an internal tool changes it.
PROMOTION_REFRESH_SECONDS = 1.0
# How long a named filter's definition is reused without reading the store: filters never
# change, so this only bounds how long another process's delete goes unseen.
FILTER_REFRESH_SECONDS = 1.0
# Why a stored promotion's filter can stop applying although it was checked when written:
# its named filter was deleted by another host meanwhile (the in-use check and the delete
# are not one transaction across hosts), or a catalog change made it inapplicable.
PROMOTION_UNUSABLE = (UnknownFilter, InvalidFilterExpression, InvalidFilterValues,
                      FilterNotApplicable)
# A promotion that cannot apply is logged at ERROR at most this often (every request
# meets it while it is active).
UNUSABLE_PROMOTION_LOG_SECONDS = 60.0


class FeedFilters:
    """Filters and promotions of feed requests over one worker's catalog."""

    def __init__(self, catalog: Catalog, catalog_lock: threading.Lock,
                 latest_interactions: LatestInteractionsCache, filters: FilterStoreProtocol,
                 promotions: PromotionStoreProtocol, exclusion: CompiledFilter | None = None):
        self.catalog = catalog
        self._catalog_lock = catalog_lock  # the catalog is not safe to read while updated
        self.latest_interactions = latest_interactions
        self.filters = filters
        self.promotions = promotions
        self.exclusion = exclusion
        self._request = threading.local()  # per-request memo (one feed runs in one thread)
        self._promotion_cache: tuple[float, object, list[Promotion]] | None = None
        self._compiled_cache: dict[str, CompiledFilter] = {}
        self._unusable_logged: dict[str, float] = {}  # promotion name -> when last logged
        self._unusable_lock = threading.Lock()  # feeds run in many threads: log once

    def begin_request(self) -> None:
        """A new request: read the user's events afresh."""
        self._request.context = None
        self._request.store_down = False
        self._request.promotion_skipped = None

    @property
    def promotion_skipped(self) -> str | None:
        """The active promotion this request was served without (its filter could not
        apply), or None."""
        return getattr(self._request, "promotion_skipped", None)

    @property
    def store_down(self) -> bool:
        """Whether this request's user context came from memory (event store down)."""
        return getattr(self._request, "store_down", False)

    def allow(self, user_id: str, filter_name: str | None = None,
              filter_values: dict[str, str] | None = None) -> PollMask | None:
        """The request's exclusion and named filter as one keep-mask (None: keep all)."""
        context = self.context(user_id)
        named = (self.filters.get(filter_name, max_age_seconds=FILTER_REFRESH_SECONDS).compiled
                 if filter_name else None)
        masks: list[np.ndarray] = []
        with self._catalog_lock:
            if (live := self.catalog.live_mask()) is not None:  # deleted polls: never
                masks.append(live)
            if self.exclusion is not None:
                masks.append(self.exclusion.bind().catalog_mask(context))
            if named is not None:
                masks.append(named.bind(filter_values).catalog_mask(context))
            return self._mask_predicate(masks)

    def context(self, user_id: str) -> FilterContext:
        cached = getattr(self._request, "context", None)
        if cached is not None and cached[0] == user_id:
            return cached[1]
        try:
            recent, record = self.latest_interactions.get(user_id)
        except StoreUnavailable:
            # The feed keeps serving from the models in memory while the store is down,
            # filtered by what this worker read of the user last (nothing if never).
            self._request.store_down = True
            recent, record = self.latest_interactions.last_read(user_id)
        context = FilterContext(self.catalog, record or {}, recent)
        self._request.context = (user_id, context)
        return context

    def _mask_predicate(self, masks: list[np.ndarray]) -> PollMask | None:
        """The request's filters as one keep-mask over the catalog's rows (call with the
        catalog lock held). It is a predicate too; User-Personalization applies it to the
        whole catalog at once instead of asking per candidate (hundreds of calls per page
        for a selective promotion filter). A poll the catalog does not know yet cannot be
        judged by metadata: it is allowed (it has no interactions either)."""
        if not masks:
            return None
        combined = masks[0]
        for m in masks[1:]:
            combined = combined & m
        # Masks may be longer than the catalog (spare capacity): only real rows count.
        return PollMask(combined[: len(self.catalog)], self.catalog.ids, self.catalog.index)

    def promotion_filter(self, promotion: Promotion, *,
                         max_age_seconds: float | None = None) -> CompiledFilter:
        """The promotion's filter: its named filter (from the store, reused for up to
        ``max_age_seconds``) or its own expression, compiled."""
        if promotion.filter_name:
            return self.filters.get(promotion.filter_name,
                                    max_age_seconds=max_age_seconds).compiled
        return self._compiled(promotion.filter_expression)

    def check_promotion(self, promotion: Promotion) -> None:
        """Refuse a promotion whose filter cannot apply as it would be stored (it does
        not compile, names no stored filter, or an INCLUDE expression's $parameter has
        no value), as Personalize does, instead of serving every feed without it."""
        if promotion.filter_expression.strip() and promotion.filter_name:
            raise InvalidPromotion("give a promotion a filterExpression or a filterName, "
                                   "not both")
        self.promotion_filter(promotion).bind(promotion.filter_values)

    def promotion_predicate(self, promotion: Promotion, user_id: str
                            ) -> Callable[[str], bool] | None:
        """Which polls the promotion may place for this user; None when its filter cannot
        apply (see :data:`PROMOTION_UNUSABLE`): the feed is then served without the
        promotion (and says so) rather than failing for every user."""
        try:
            compiled = self.promotion_filter(promotion, max_age_seconds=FILTER_REFRESH_SECONDS)
            context = self.context(user_id)
            with self._catalog_lock:
                mask = compiled.bind(promotion.filter_values).catalog_mask(context)
                live = self.catalog.live_mask()  # a deleted poll is never promoted
                predicate = self._mask_predicate([mask] if live is None else [mask, live])
        except PROMOTION_UNUSABLE as exc:
            self._request.promotion_skipped = promotion.name
            now = time.monotonic()
            with self._unusable_lock:  # the check and the mark as one step
                due = now - self._unusable_logged.get(promotion.name, -math.inf) \
                    >= UNUSABLE_PROMOTION_LOG_SECONDS
                if due:
                    self._unusable_logged[promotion.name] = now
            if due:
                log.error("promotion %r is active but its filter cannot apply (%s): feeds "
                          "are served without it until it is fixed or deleted",
                          promotion.name, exc)
            return None
        assert predicate is not None
        return predicate

    def promotions_changed(self) -> None:
        """This worker changed a promotion: apply it from the next request."""
        self._promotion_cache = None

    def active_promotion(self) -> Promotion | None:
        """The active promotion. The store's version is polled at most every
        PROMOTION_REFRESH_SECONDS and the promotions re-read only when it moved (a change
        by an internal tool on any host reaches every worker within that time); which one
        is active is decided on each request, as windows open and close by the clock."""
        now = time.monotonic()
        cached = self._promotion_cache  # (checked at, version, promotions)
        if cached is None or now - cached[0] >= PROMOTION_REFRESH_SECONDS:
            try:
                version = self.promotions.version()  # read first: a later write moves it
                promotions = (cached[2] if cached is not None and cached[1] == version
                              else self.promotions.list())
                cached = (now, version, promotions)
            except StoreUnavailable as exc:  # the feed keeps serving what it read last
                log.warning("promotions not refreshed: %s", exc)
                cached = (now, None, cached[2] if cached is not None else [])
            self._promotion_cache = cached
        return select_active(cached[2], time.time())

    def _compiled(self, expression: str) -> CompiledFilter:
        """Compile once, reuse: promotions name their filter by expression."""
        compiled = self._compiled_cache.get(expression)
        if compiled is None:
            compiled = self._compiled_cache[expression] = compile_filter(expression)
        return compiled

    def deleted_among(self, poll_ids: Iterable[str]) -> set[str]:
        """The polls among ``poll_ids`` that were deleted (as far as this worker knows:
        its own deletions at once, other hosts' within a refresh)."""
        with self._catalog_lock:
            return self.catalog.deleted.intersection(poll_ids)

    def polls_by_author(self, author_id: str, n: int) -> list[str]:
        """The author's newest ``n`` polls (see :meth:`newest_polls_by`)."""
        return [poll for poll, _ in self.newest_polls_by([author_id], n)]

    def newest_polls_by(self, authors: list[str], limit: int) -> list[tuple[str, float]]:
        """The ``limit`` newest polls written by any of ``authors`` (poll id, creation
        time; none: 0), from the catalog's AUTHOR_ID index, newest first and ties by
        poll id, the whole id matched (user ids may hold ``|``). Every poll the store
        holds counts, those other workers wrote a refresh ago included: "more from this
        author" and the in-network source read the same list."""
        with self._catalog_lock:  # the refresher may be growing the catalog's columns
            found = [self.catalog.rows_with_value("AUTHOR_ID", a)
                     for a in self.catalog.values_held("AUTHOR_ID", authors)]
            rows = np.concatenate(found) if found else np.zeros(0, np.int64)
            created = np.nan_to_num(self.catalog.numeric_values(rows, "CREATION_TIMESTAMP"))
            if len(rows) > limit > 0:
                # Only the newest `limit` (and polls tied with the last of them) can make
                # the cut; the tie rule below needs their ids.
                cut = np.partition(created, len(created) - limit)[len(created) - limit]
                keep = created >= cut
                rows, created = rows[keep], created[keep]
            ids = [self.catalog.ids[r] for r in rows.tolist()]
        return sorted(zip(ids, created.tolist()), key=lambda p: (-p[1], p[0]))[:max(limit, 0)]
