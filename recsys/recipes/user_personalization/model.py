"""User-Personalization: the recipe behind most of the feed (Amazon Personalize's
``aws-user-personalization``, rebuilt on implicit and scikit-learn), as a blend of
components (components/, one module each; see components/base.py for what one is):

- **collaborative**: ALS over event-weighted votes and comments, the user's vector solved
  at request time from their latest events (a fold-in), cold polls' vectors shrunk
  towards a ridge map of their metadata;
- **content**: the user's recent polls' content (text and topic) against each poll's;
- **popularity**: log(1 + events) of each poll;
- **segments**: how much the user's segments over-engage with each poll, and a cold
  user's start in the factor space;
- **item_item**: EASE's B over the catalog (or its active window), two columns;
- **recency**: the poll's age at ``now`` as a learned step function;
- **exploration**: Personalize's bonus for young, little-seen polls, after the blend;
- **sequence**: what people engaged with right after the polls the user just touched
  (directed transitions, sparse, so on at any catalog size);
- **walk**: RP3beta's poll -> user -> poll walk over the whole catalog (sparse), where
  item-item's dense B covers only an active window;
- **rerank**: not a column but a second stage: a small LambdaMART ranker that re-orders
  the blend's head of 100 polls, learned after the blend on the same validation users
  and kept only where it ranks held-out ones better (components/rerank.py).

**The blend** of the registered components' columns is a logistic regression learned
inside ``fit`` on a validation split carved from TRAINING users only (Personalize's
split shape: the newest 10 % of their events are the targets and are withheld from
everything the blend sees). ``components=`` registers a subset (``hunch evaluate
--ablate NAME`` uses it to measure what each one adds); a dropped component keeps empty
state and its weights are 0.

Because the blend is linear, serving stays one matrix-vector product over the catalog:
in creation order, the collaborative and content columns' per-poll weights are folded
into one float32 matrix and one bias vector, the poll-age term is a few slice adds and
exploration noise is drawn only for the young polls that can receive it. That fused
path lives here, reading the components' state; ``_features`` scores the same blend
component by component (the tests hold both to one formula). With history twins
(``blend.py``) every user has weights of their own (``blend.user_weights``): a block of
the matrix with a twin carries weight 1 and the user's weight scales their query.

What a request computes from the user's own events (the fold-in factor, the content
profile, the item-item scores over B and what content neighbours borrow of them, the
exploration noise, the product with the serving matrix while no row of it moves) is
kept per user (``USER_VECTOR_CACHE_SIZE`` users) until those
events or the poll arrays move: a user's next feed page pays only the passes over the
catalog, however many other users' events arrive in between.
"""

from __future__ import annotations

import json
import math
import operator
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from itertools import chain, count, islice, repeat
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp

from recsys.arrays import sorted_distinct, top_candidates
from recsys.errors import HunchError
from recsys.event_values import EventValues
from recsys.events import Impression, Interaction
from recsys.recipes.base import CatalogRows, PollMask, ScoredItem, TrainingData
from recsys.recipes.clock import EventClock
from recsys.recipes.user_personalization import blend, metadata
from recsys.recipes.user_personalization.components import (
    COMPONENT_NAMES,
    REGISTRY,
    BaseComponent,
    Collaborative,
    Content,
    Exploration,
    FitEvents,
    ItemItem,
    Recency,
    Rerank,
    Segments,
    SequenceAware,
    UserContext,
    Walk,
    rerank,
)
from recsys.recipes.user_personalization.settings import (
    AGE_CLOCK_MAX_LEAD_SECONDS,
    APPEAL_PRIOR_EVENTS,
    ARRAY_GROWTH_MIN_ROWS,
    ARRAY_GROWTH_SHARE,
    COLD_ITEM_PRIOR_STRENGTH,
    DEFAULT_EVENT_WEIGHTS,
    ENGAGEMENT_CURVE_STEPS,
    ITEM_CATEGORICAL_FIELDS,
    ITEM_ITEM_ACTIVE_POLLS,
    ITEM_ITEM_DEFAULT_L2,
    ITEM_ITEM_MAX_ITEMS,
    MAX_RECENT_EVENTS,
    MAX_SHOWN_PAIRS,
    MAX_VALIDATION_USERS,
    MIN_EVENTS_FOR_VALIDATION_USER,
    MIN_VALIDATION_USERS,
    POLL_AGE_EDGES_DAYS,
    RERANK_HEAD,
    SECONDS_PER_DAY,
    TEXT_FIELDS,
    USER_FIELDS,
    USER_VECTOR_CACHE_SIZE,
    VALIDATION_TARGET_FRACTION,
    VALIDATION_USER_SHARE,
)
from recsys.text import TextEncoder, load_encoder

__all__ = ["UserPersonalization", "UserPersonalizationError", "NotFitted", "TEXT_FIELDS"]

# Blend features of the full model, in design-matrix order (see blend.py).
_FEATURES: tuple[str, ...] = tuple(f for c in REGISTRY.values() for f in c.features)
# Column readers for fit's passes over millions of events (map() keeps them in C).
_TIMESTAMP = operator.attrgetter("timestamp")
_USER_ID = operator.attrgetter("user_id")
_ITEM_ID = operator.attrgetter("item_id")
_EVENT_TYPE = operator.attrgetter("event_type")
_IMPRESSION = operator.attrgetter("impression")
_ITEM_IDS = operator.attrgetter("item_ids")


class UserPersonalizationError(HunchError):
    """The User-Personalization recipe was misused or given unusable data."""


class NotFitted(UserPersonalizationError):
    """A fitted model was needed."""


class _UserVectors:
    """One user's request-time vectors (see ``UserPersonalization._user_vectors``),
    each computed when a request first needs it."""

    __slots__ = ("refs", "values", "parts", "query", "blocks", "affinity", "affinity_of",
                 "own", "borrowed", "has_own", "noise")

    def __init__(self, refs: tuple[Any, ...], values: tuple[Any, ...]) -> None:
        self.refs = refs  # what they were computed from, compared by identity
        self.values = values  # ... and by value
        # Unweighted parts read both by the serving row and by the re-ranker's head
        # columns (components' score_at), computed once a request (see ``once``).
        self.parts: dict[Any, Any] = {}
        self.query: np.ndarray | None = None  # fold-in factor + content profile
        self.blocks = (True, True)  # which of the two the query holds (others: zeros)
        self.affinity: np.ndarray | None = None  # the serving matrix @ query ...
        self.affinity_of: tuple[Any, int] = (None, -1)  # ... of this matrix and version
        self.own: np.ndarray | None = None  # item-item scores over B's polls
        self.borrowed: np.ndarray | None = None  # what content neighbours take of them
        self.has_own = False
        self.noise: tuple[tuple[Any, ...], np.ndarray] | None = None  # exploration's draw

    def once(self, key: Any, compute: Callable[[], Any]) -> Any:
        """The part ``key`` (e.g. the fold-in, item-item's columns, the sequence's
        successors), computed by ``compute()`` the first time it is asked for."""
        if key not in self.parts:
            self.parts[key] = compute()
        return self.parts[key]


_NO_POLLS = np.zeros(0, np.int32)


def _users_per_poll(users: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    """How many distinct users engaged with each poll (float32). A poll's popularity,
    exposure and coldness count users, as Popularity-Count does, not events: counted per
    event, one account's 3,000 votes on a poll (five minutes of the API's mutation
    limit) lifted it from rank ~400 into the top 25 of 70 % of other users' feeds."""
    if not len(items):
        return np.zeros(n_items, np.float32)
    pairs = sorted_distinct(users.astype(np.int64) * n_items + items)
    return np.bincount(pairs % n_items, minlength=n_items).astype(np.float32)


class UserPersonalization:
    """Personalized ranking of polls from history, metadata, text, recency."""

    name: ClassVar[str] = "user-personalization"

    def __init__(
        self,
        *,
        factors: int = 64,
        regularization: float = 0.05,
        iterations: int = 15,
        event_weights: Mapping[str, float] | None = None,
        default_event_weight: float = 1.0,
        exploration_weight: float = 0.3,
        exploration_item_age_cutoff_days: float = 30.0,
        use_text: bool = True,
        text_fields: Sequence[str] = TEXT_FIELDS,
        text_encoder: TextEncoder | None = None,
        item_categorical_fields: Sequence[str] = ITEM_CATEGORICAL_FIELDS,
        user_fields: Sequence[str] = USER_FIELDS,
        use_recency: bool = True,
        learn_blend: bool = True,
        exclude_interacted: bool = True,
        max_recent_events: int = MAX_RECENT_EVENTS,
        item_item_max_items: int = ITEM_ITEM_MAX_ITEMS,
        item_item_active_polls: int = ITEM_ITEM_ACTIVE_POLLS,
        num_threads: int = 1,
        random_state: int = 0,
        event_values: EventValues | Mapping[str, Any] | None = None,
        components: Sequence[str] = COMPONENT_NAMES,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.iterations = iterations
        self.event_weights = dict(DEFAULT_EVENT_WEIGHTS if event_weights is None else event_weights)
        self.default_event_weight = default_event_weight
        self.exploration_weight = exploration_weight
        self.exploration_item_age_cutoff_days = exploration_item_age_cutoff_days
        self.use_text = use_text
        self.text_fields = tuple(text_fields)
        self.text_encoder = text_encoder
        self.item_categorical_fields = tuple(item_categorical_fields)
        self.user_fields = tuple(user_fields)
        self.use_recency = use_recency
        self.learn_blend = learn_blend
        # A user votes once per poll, so showing voted polls again wastes the slot;
        # Personalize needs a filter for this, here it is the default.
        self.exclude_interacted = exclude_interacted
        self.max_recent_events = max_recent_events
        # Above this catalog size the dense item-item matrix covers only the
        # item_item_active_polls most-interacted polls (0: the component is off there).
        self.item_item_max_items = item_item_max_items
        self.item_item_active_polls = item_item_active_polls
        self.num_threads = num_threads
        self.random_state = random_state
        # EVENT_VALUE thresholds per type and value-as-confidence (recsys/event_values.py).
        self.event_values = EventValues.coerce(event_values)
        # The registered components (all by default); the rest keep empty state.
        self.components = tuple(components)
        self._check_params()
        self._components: dict[str, BaseComponent] = {
            name: REGISTRY[name]() for name in COMPONENT_NAMES}

    def _check_params(self) -> None:
        if not 0.0 <= self.exploration_weight <= 1.0:
            raise UserPersonalizationError(
                f"exploration_weight must be in [0, 1], got {self.exploration_weight}"
            )
        if self.exploration_item_age_cutoff_days <= 0:
            raise UserPersonalizationError(
                "exploration_item_age_cutoff_days must be positive (days), got "
                f"{self.exploration_item_age_cutoff_days}"
            )
        if self.item_item_max_items < 0 or self.item_item_active_polls < 0:
            raise UserPersonalizationError(
                "item_item_max_items and item_item_active_polls must be >= 0 (polls), got "
                f"{self.item_item_max_items} and {self.item_item_active_polls}")
        if any(w <= 0 for w in self.event_weights.values()) or self.default_event_weight <= 0:
            raise UserPersonalizationError(
                f"event weights must be positive, got {self.event_weights}"
            )
        if self.max_recent_events < 1:
            # Requests fold in the latest events: with none kept, history means nothing.
            raise UserPersonalizationError(
                f"max_recent_events must be >= 1 (events), got {self.max_recent_events}")
        unknown = [c for c in self.components if c not in REGISTRY]
        if unknown:
            raise UserPersonalizationError(
                f"unknown component(s) {', '.join(map(str, unknown))}; registered: "
                f"{', '.join(COMPONENT_NAMES)}")
        unknown = set(self.text_fields) - set(TEXT_FIELDS)
        if unknown:
            raise UserPersonalizationError(
                f"unknown text_fields {sorted(unknown)}; choose from {list(TEXT_FIELDS)}"
            )

    # ------------------------------------------------------------------ components
    def _has(self, name: str) -> bool:
        return name in self.components

    def _registered(self) -> list[BaseComponent]:
        return [c for name, c in self._components.items() if name in self.components]

    def _blend_features(self) -> tuple[str, ...]:
        """The blend's columns: the registered components' features, in order."""
        return tuple(f for c in self._registered() for f in c.features)

    @property
    def _recency_on(self) -> bool:
        return self.use_recency and self._has("recency")

    @property
    def _exploring(self) -> bool:
        # Read live: analyses set exploration_weight on a fitted model.
        return self.exploration_weight > 0 and self._has("exploration")

    # ------------------------------------------------------------------ weights
    def _event_weight(self, event_type: str) -> float:
        return float(self.event_weights.get(event_type.upper(),
                     self.event_weights.get(event_type, self.default_event_weight)))

    # ------------------------------------------------------------------ fit
    def fit(self, data: TrainingData) -> Self:
        """Learn factors, metadata maps, segment lifts and the blend from ``data``."""
        self._check_params()
        self._changed()
        # Time order by a stable argsort (the same order as sorted(key=timestamp)); every
        # column below is read with map/attrgetter, in C: at 1.5M events, per-event
        # Python loops took seconds of the fit.
        interactions = list(data.interactions)
        if self.event_values is not None:
            interactions = self.event_values.training_events(interactions)
        if not interactions:
            raise UserPersonalizationError(
                "User-Personalization needs interactions to train; the dataset has none"
            )
        n = len(interactions)
        stamps = np.fromiter(map(_TIMESTAMP, interactions), np.int64, n)
        order = np.argsort(stamps, kind="stable")
        stamps = stamps[order]
        interactions = list(map(interactions.__getitem__, order.tolist()))
        user_column = list(map(_USER_ID, interactions))
        item_column = list(map(_ITEM_ID, interactions))
        self._index_items(data.items, item_column)
        # Users in order of first event, then those with metadata only.
        self.user_ids_: list[str] = list(dict.fromkeys([*user_column, *data.users]))
        self.user_index_: dict[str, int] = {u: k for k, u in enumerate(self.user_ids_)}

        users = np.fromiter(map(self.user_index_.__getitem__, user_column), np.int64, n)
        items = np.fromiter(map(self.item_index_.__getitem__, item_column), np.int64, n)
        del user_column, item_column
        type_column = list(map(_EVENT_TYPE, interactions))
        by_type = {t: self._event_weight(t) for t in set(type_column)}
        weights = np.fromiter(map(by_type.__getitem__, type_column), np.float32, n)
        if self.event_values is not None and self.event_values.confidence != "none":
            weights *= np.fromiter(map(self.event_values.weight, interactions), np.float32, n)
        # "Now" for poll ages: robust to a stray future timestamp (recipes/clock.py).
        self._clock = EventClock.of(stamps, max_lead_seconds=AGE_CLOCK_MAX_LEAD_SECONDS)
        self.newest_timestamp_ = int(self._clock.now)
        is_target = self._validation_targets(users, stamps)
        keep = ~is_target
        # Until the blend is learned a poll without CREATION_TIMESTAMP is as old as its
        # first *visible* event. Dated by the validation targets themselves, a poll only
        # targets name sat in an age step of its own ("created after the request"),
        # exactly where the blend learns: a leak that serving never sees.
        self._fill_creation(items[keep], stamps[keep])

        events = FitEvents(users, items, weights, stamps, keep, is_target, data.items,
                           data.users)
        self._fit_engagement_curve(items[keep], stamps[keep])
        # What the components learn from before the blend: the events it may see.
        self._train_counts = _users_per_poll(users[keep], items[keep], len(self.item_ids_))
        self.counts_ = self._train_counts.copy()
        self._metadata_features_ = metadata.fit(self, data.items)
        for name, component in self._components.items():
            if name in self.components:
                component.fit(self, events)
            else:
                component.empty(self, events)
        del self._metadata_features_  # only the ridge needed every poll's side features

        self.impressions_ = np.zeros(len(self.item_ids_), np.float32)
        self.__dict__.pop("_explore_base", None)  # a refit starts without serving rows
        self._fit_impressions(data.impressions, interactions)

        self.blend_ = blend.default_weights(self._registered())
        self.history_z_range_: tuple[float, float] | None = None  # no history twins
        self.age_weights_ = np.array(blend.DEFAULT_AGE_WEIGHTS, np.float32)
        self._set_history(users, items, weights, stamps, keep, events.by_user(keep))
        if self.learn_blend and is_target.any():
            blend.learn(self, users, items, stamps, is_target)
        # The blend is learned; from here on every event counts.
        self._fill_creation(items, stamps)
        self.counts_ = _users_per_poll(users, items, len(self.item_ids_))
        for component in self._registered():
            component.finish(self, events)
        self._set_history(users, items, weights, stamps, np.ones(len(users), bool),
                          events.by_user())
        self._refresh_static()
        return self

    def fit_summary(self) -> dict[str, Any]:
        """What fit chose on its validation split, JSON-ready (a published version's
        manifest carries it): how many validation users the blend learned from (none:
        the default blend), whether history twins are on and what the held-out ranking
        measured, the blend's weights, item-item's lambda, the walk's beta and whether the
        re-ranker is on (with the held-out NDCG@10 of the blend's and its order)."""
        self._require_fitted()
        validation = getattr(self, "validation_size_", None) or {}
        return {
            "validation_users": validation.get("users", 0),
            "history_twins": bool(validation.get("history_twins", False)),
            "history_twins_ndcg": validation.get("history_twins_ndcg"),
            "blend": {k: round(float(v), 6) for k, v in self.blend_.items() if v},
            "item_item_l2": float(getattr(self, "item_item_l2_", ITEM_ITEM_DEFAULT_L2)),
            "walk_beta": float(getattr(self, "walk_beta_", 0.0)),
            # The second stage: on or off, and the held-out judgement that decided it.
            "rerank": validation.get("rerank", {"on": getattr(self, "rerank_", None)
                                                is not None}),
        }

    def _index_items(self, items: Mapping[str, Mapping[str, Any]],
                     item_column: Sequence[str]) -> None:
        # Polls with metadata first, then those only events name (order of first event).
        self.item_ids_: list[str] = list(dict.fromkeys([*items, *item_column]))
        self.item_index_: dict[str, int] = {i: n for n, i in enumerate(self.item_ids_)}
        self.creation_ = np.full(len(self.item_ids_), np.nan)
        for item_id, meta in items.items():
            ts = meta.get("CREATION_TIMESTAMP")
            if ts is not None:
                self.creation_[self.item_index_[item_id]] = float(ts)
        self._stated_creation = ~np.isnan(self.creation_)

    def _fill_creation(self, items: np.ndarray, stamps: np.ndarray) -> None:
        # Personalize: without CREATION_TIMESTAMP the first interaction stands in; an item
        # with neither is treated as new.
        first = np.full(len(self.item_ids_), np.inf)
        np.minimum.at(first, items, stamps.astype(float))
        missing = ~self._stated_creation
        self.creation_[missing] = np.where(np.isfinite(first[missing]), first[missing],
                                           float(self.newest_timestamp_))

    def _fit_engagement_curve(self, items: np.ndarray, stamps: np.ndarray) -> None:
        """Quantiles (days) of how long after its creation a poll gets its events."""
        delay = np.maximum(0.0, stamps - self.creation_[items]) / SECONDS_PER_DAY
        levels = np.linspace(0.0, 1.0, ENGAGEMENT_CURVE_STEPS)
        curve = np.quantile(delay, levels) if len(delay) else levels
        # np.interp needs increasing x: ties (many events at one delay) are nudged apart.
        self.engagement_curve_ = np.maximum.accumulate(curve + levels * 1e-9)

    def _validation_targets(self, users: np.ndarray, stamps: np.ndarray) -> np.ndarray:
        """Personalize's split inside the training users: the newest 10 % of events of
        a random tenth of users become blend-learning targets."""
        is_target = np.zeros(len(users), bool)
        if not self.learn_blend:
            return is_target
        counts = np.bincount(users, minlength=len(self.user_ids_))
        eligible = np.flatnonzero(counts >= MIN_EVENTS_FOR_VALIDATION_USER)
        n_val = min(MAX_VALIDATION_USERS, int(len(self.user_ids_) * VALIDATION_USER_SHARE))
        if len(eligible) < MIN_VALIDATION_USERS or n_val < MIN_VALIDATION_USERS:
            return is_target
        rng = np.random.default_rng(self.random_state)
        chosen = rng.choice(eligible, size=min(n_val, len(eligible)), replace=False)
        is_val = np.zeros(len(self.user_ids_), bool)
        is_val[chosen] = True
        # events are in time order, so a user's rank among their events is their age
        order = np.flatnonzero(is_val[users])
        val_users = users[order]
        rank = np.zeros(len(order), np.int64)
        seen: dict[int, int] = {}
        for j, u in enumerate(val_users.tolist()):
            rank[j] = seen.get(u, 0)
            seen[u] = rank[j] + 1
        total = counts[val_users]
        n_targets = np.maximum(1, np.ceil(total * VALIDATION_TARGET_FRACTION)).astype(np.int64)
        is_target[order[rank >= total - n_targets]] = True
        return is_target

    def _predict_factors(self, features: sp.csr_matrix) -> np.ndarray:
        return np.asarray(features @ self.ridge_coef_.T, np.float32) + self.ridge_intercept_

    def _fit_impressions(self, impressions: Sequence[Impression],
                         interactions: Sequence[Interaction]) -> None:
        """Each poll's exposure: how many distinct users were shown it (impression events
        and the lists interactions carry). Counted per impression, one account reporting
        a new poll seen 3,000 times (five minutes of the mutation limit) took it from the
        top 25 of 29 % of other users' feeds to none: its exploration was gone."""
        self._shown_since_fit: set[int] = set()
        lists = [*map(_ITEM_IDS, impressions), *map(_IMPRESSION, interactions)]
        if not lists:
            return
        viewers: dict[str, int] = {}
        viewer = np.fromiter(map(viewers.setdefault,
                                 chain(map(_USER_ID, impressions), map(_USER_ID, interactions)),
                                 count()), np.int64, len(lists))
        # map() keeps the per-id lookup in C: fits count millions of impressions.
        idx = np.fromiter(map(self.item_index_.get, chain.from_iterable(lists), repeat(-1)),
                          np.int64)
        viewer = np.repeat(viewer, np.fromiter(map(len, lists), np.int64, len(lists)))
        known = idx >= 0
        n = len(self.item_ids_)
        pairs = sorted_distinct(viewer[known] * n + idx[known])
        self.impressions_ += np.bincount(pairs % n, minlength=n).astype(np.float32)

    def _count_impression(self, user_id: str, item_ids: Iterable[str]) -> None:
        """Streamed: a user counts once per poll shown (see _fit_impressions) until the
        next fit. Only pairs streamed since the fit are remembered (one shown before it
        counts once more), and past MAX_SHOWN_PAIRS the memory starts again."""
        shown = self.__dict__.setdefault("_shown_since_fit", set())
        fresh = []
        for item_id in item_ids:
            i = self.item_index_.get(item_id)
            # The pair's hash, not the pair: one int per entry (~80 bytes, not a tuple's ~130);
            # two pairs sharing a 64-bit hash are as likely as never.
            if i is not None and (key := hash((user_id, i))) not in shown:
                shown.add(key)
                fresh.append(i)
        if len(shown) > MAX_SHOWN_PAIRS:
            shown.clear()  # bounded memory: at worst a user counts once more per poll
        if fresh:
            idx = np.array(fresh, np.int64)
            self.impressions_ += np.bincount(idx, minlength=len(self.impressions_))
            if hasattr(self, "_explore_base"):  # serving rows exist once fitted
                self._refresh_polls(np.unique(idx))

    def _set_history(self, users: np.ndarray, items: np.ndarray, weights: np.ndarray,
                     stamps: np.ndarray, keep: np.ndarray, by_user: np.ndarray | None = None
                     ) -> None:
        """Per user: all polls interacted with, and the latest events (time order).
        ``by_user``: the kept events' positions grouped by user in time order, when the
        caller has them (:meth:`FitEvents.by_user`)."""
        self.interacted_: dict[str, np.ndarray] = {}
        self.recent_: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        idx = np.flatnonzero(keep)
        if not len(idx):
            return
        # Sorted once for all users (a per-user np.unique took a second at 5k users):
        # events by user in time order, and the distinct (user, poll) pairs.
        order = idx[np.argsort(users[idx], kind="stable")] if by_user is None else by_user
        by_user = users[order]
        starts = np.flatnonzero(np.r_[True, by_user[1:] != by_user[:-1]])
        ends = np.r_[starts[1:], len(order)]
        n_items = len(self.item_ids_)
        pairs = sorted_distinct(users[idx] * n_items + items[idx])
        pair_users, pair_items = pairs // n_items, (pairs % n_items).astype(np.int32)
        pair_ends = np.searchsorted(pair_users, by_user[starts], side="right")
        recent_items, recent_weights = items[order].astype(np.int32), weights[order].astype(
            np.float32)
        recent_stamps = stamps[order].astype(np.int64)
        pair_start = 0
        for start, end, pair_end in zip(starts.tolist(), ends.tolist(), pair_ends.tolist()):
            user_id = self.user_ids_[int(by_user[start])]
            self.interacted_[user_id] = pair_items[pair_start:pair_end].copy()
            pair_start = pair_end
            tail = slice(max(start, end - self.max_recent_events), end)
            self.recent_[user_id] = (recent_items[tail].copy(), recent_weights[tail].copy(),
                                     recent_stamps[tail].copy())

    # ------------------------------------------------------------------ serving
    def _refresh_static(self) -> None:
        """Cache the per-poll arrays every request reads.

        Serving works in creation order: the poll-age term is then a few constant runs
        (one slice add per age step instead of a search per poll), and the polls young
        enough for exploration are one contiguous tail. Only the top-n positions are
        mapped back to poll ids.
        """
        self._vectors_changed()
        self._age_edges = np.array(POLL_AGE_EDGES_DAYS) * SECONDS_PER_DAY
        self._yty = (self.item_factors_.T @ self.item_factors_).astype(np.float64)
        self._order = np.argsort(self.creation_, kind="stable")
        self._position = np.empty_like(self._order)
        self._position[self._order] = np.arange(len(self._order))
        self._sorted_creation = self.creation_[self._order]
        self._poll_statics()
        self._segment_rows: OrderedDict[tuple[float, ...], np.ndarray] = OrderedDict()
        if not hasattr(self, "_catalog_rows"):
            self._catalog_rows = CatalogRows()  # grows with the index; survives rebuilds
        k = self.factors
        # Features x polls: the request's product reads it as columns, about twice as
        # fast as the same numbers as rows (0.5 against 1.0 ms at 50k polls, one core).
        self._matrix_t = np.empty((k + self.content_.shape[1], len(self.item_ids_)),
                                  np.float32)
        self._bias = np.empty(len(self.item_ids_), np.float32)
        self._explore_base = np.empty(len(self.item_ids_), np.float32)
        self._refresh_polls(np.arange(len(self.item_ids_)), fresh=True)

    def _poll_statics(self) -> None:
        """Per-poll blend inputs that do not depend on the user (poll-id order)."""
        self._popularity = np.log1p(self.counts_).astype(np.float32)
        self._coldness = (COLD_ITEM_PRIOR_STRENGTH / (
            COLD_ITEM_PRIOR_STRENGTH + self.counts_)).astype(np.float32)
        reached = self._engagement_reached(np.arange(len(self.item_ids_)))
        # Events per unit of engagement curve: what an average poll gets over its life.
        self._engagement_scale = float(self.counts_.sum() / max(reached.sum(), 1e-9))
        self._appeal = self._appeal_of(np.arange(len(self.item_ids_)), reached)

    def _engagement_reached(self, idx: np.ndarray) -> np.ndarray:
        """Share of a poll's lifetime engagement its age at the model's clock predicts."""
        age_days = (self.newest_timestamp_ - self.creation_[idx]) / SECONDS_PER_DAY
        curve = self.engagement_curve_
        return np.interp(age_days, curve, np.linspace(0.0, 1.0, len(curve)),
                         left=0.0, right=1.0)

    def _appeal_of(self, idx: np.ndarray, reached: np.ndarray) -> np.ndarray:
        expected = self._engagement_scale * reached
        return np.log((self.counts_[idx] + APPEAL_PRIOR_EVENTS)
                      / (expected + APPEAL_PRIOR_EVENTS)).astype(np.float32)

    def _refresh_polls(self, idx: np.ndarray, fresh: bool = False) -> None:
        """Rewrite the serving rows of polls ``idx`` (poll-id order) from the blend;
        ``fresh``: the matrix was just allocated, so there is nothing to compare with."""
        b = self.blend_
        k = self.factors
        cold = self._coldness[idx]
        pos = self._position[idx]
        collaborative, content = self._block_weights()
        # Both affinities are scaled per poll by its coldness, so the blend's
        # cold-interaction terms stay inside the one matrix-vector product.
        rows = np.empty((len(pos), self._matrix_t.shape[0]), np.float32)
        rows[:, :k] = self.item_factors_[idx] * (
            collaborative + b["cold_collaborative"] * cold)[:, None]
        rows[:, k:] = self.content_[idx] * (content + b["cold_content"] * cold)[:, None]
        # Users keep their product with the matrix (see _serving_scores) until a row
        # really moves: an event rewrites its poll's row, which stays the same unless
        # the blend weighs coldness (the learned demo blends do not).
        # (On a rebuild the comparison would copy the whole matrix under the serving
        # lock: ~120 ms and 70 MB at 50k polls, for an answer known in advance.)
        if fresh or not np.array_equal(self._matrix_t[:, pos], rows.T):
            self._matrix_t[:, pos] = rows.T
            self._matrix_version = getattr(self, "_matrix_version", 0) + 1
        self._bias[pos] = (b["popularity"] * self._popularity[idx]
                           + b["appeal"] * self._appeal[idx] + b["coldness"] * cold)
        exposure = self.impressions_[idx] + self.counts_[idx]
        self._explore_base[pos] = 1.0 / np.sqrt(1.0 + exposure)

    def _block_weights(self) -> tuple[float, float]:
        """The weights the serving matrix's collaborative and content blocks carry: the
        blend's own, or 1 for a block with a history twin (each user's weight then
        scales the query, see _serving_scores; the learned blends have no cold_*
        weights, so a block's weight is one number per user)."""
        b = self.blend_
        return tuple(1.0 if b.get(blend.twin_name(name)) else b[name]
                     for name in ("collaborative", "content"))

    def _poll_changed(self, i: int) -> None:
        """Counts of poll ``i`` moved: update its statics and serving row in place."""
        idx = np.array([i])
        self._popularity[i] = math.log1p(self.counts_[i])
        self._coldness[i] = COLD_ITEM_PRIOR_STRENGTH / (COLD_ITEM_PRIOR_STRENGTH + self.counts_[i])
        self._appeal[i] = self._appeal_of(idx, self._engagement_reached(idx))[0]
        self._refresh_polls(idx)

    def _reference_time(self, user_id: str | None, now: float | None) -> float:
        if now is not None:
            return float(now)
        recent = self.recent_.get(user_id) if user_id is not None else None
        # Without `now`, a user's feed is the one they saw at their latest event; this
        # keeps recency honest for users whose activity ended before the data did.
        if recent is not None and len(recent[2]):
            return float(recent[2][-1])
        return float(self.newest_timestamp_)

    def _features(self, user_id: str | None, t_ref: float) -> tuple[np.ndarray, np.ndarray]:
        """The registered components' columns (see ``_blend_features``) × polls in poll-id
        order, and the poll-age step of each poll; used to learn the blend."""
        user = UserContext(user_id, t_ref)
        rows = [c.score(self, user) for c in self._registered()]
        features = (np.vstack(rows) if rows
                    else np.zeros((0, len(self.item_ids_)), np.float32))
        return features, Recency.steps(self, t_ref)

    def _combine(self, features: np.ndarray, ages: np.ndarray, user_id: str | None
                 ) -> np.ndarray:
        """The blend of ``_features(user_id, ...)``: the user's weights (history twins
        included) times the columns, plus the age term."""
        b = blend.user_weights(self, user_id)
        weights = np.array([b[f] for f in self._blend_features()], np.float32)
        return weights @ features + self.age_weights_[ages]

    def _user_vectors(self, user_id: str | None,
                      b: Mapping[str, float] | None = None) -> "_UserVectors":
        """The memo of the user's request-time vectors, valid while everything they are
        computed from is: the user's events (``observe`` replaces, never mutates, the
        arrays it keeps per user), their segments, B and its neighbours, the item-item
        weights, and the poll arrays (``_vectors_epoch`` moves with them). ``b``: the
        user's blend weights (:func:`blend.user_weights`)."""
        b = blend.user_weights(self, user_id) if b is None else b
        # Arrays are compared by identity (they are replaced when they change), the rest
        # by value.
        refs = (self.recent_.get(user_id), self.interacted_.get(user_id),
                getattr(self, "item_item_", None),
                getattr(self, "item_item_neighbours_", None),
                getattr(self, "sequence_", None), getattr(self, "walk_", None))
        values = (tuple(self.user_segments_.get(user_id, ())),
                  getattr(self, "_vectors_epoch", 0), b["item_item"], b["item_item_recent"])
        memo: OrderedDict[str | None, _UserVectors] = self.__dict__.setdefault(
            "_user_vector_memo", OrderedDict())
        entry = memo.get(user_id)
        if (entry is not None and entry.values == values
                and all(map(operator.is_, entry.refs, refs))):
            memo.move_to_end(user_id)
            return entry
        entry = memo[user_id] = _UserVectors(refs, values)
        memo.move_to_end(user_id)
        if len(memo) > USER_VECTOR_CACHE_SIZE:
            memo.popitem(last=False)
        return entry

    def _serving_scores(self, user_id: str | None, t_ref: float,
                        b: Mapping[str, float]) -> np.ndarray:
        """Blend scores without exploration, in serving (creation) order: the fused form
        of ``_combine(*_features(...))``; ``b``: the user's weights
        (:func:`blend.user_weights`, the blend's own without history twins)."""
        segs = self.user_segments_.get(user_id, []) if user_id is not None else []
        vectors = self._user_vectors(user_id, b)
        blocks = self._block_weights()
        collaborative = bool(blocks[0] or self.blend_["cold_collaborative"])
        content = bool(blocks[1] or self.blend_["cold_content"])
        # The matrix holds the blocks' weights; a user's history twins scale the query.
        scaled = (_ratio(b["collaborative"], blocks[0]), _ratio(b["content"], blocks[1]))
        if collaborative or content:
            if vectors.query is None or vectors.blocks != (collaborative, content, scaled):
                # A block whose blend weights are both 0 holds only zeros in the matrix
                # (the demo's learned blend leaves collaborative out): the fold-in solve
                # behind it would only be multiplied by them. (The product stays whole:
                # over a slice of the features, BLAS sums in another order, and the
                # scores would move in their last bits.)
                k = self.factors
                vectors.query = np.concatenate([
                    Collaborative.request_vector(self, user_id, vectors) * scaled[0]
                    if collaborative else np.zeros(k, np.float32),
                    Content.request_profile(self, user_id, vectors) * scaled[1] if content
                    else np.zeros(self._matrix_t.shape[0] - k, np.float32)]).astype(np.float32)
                vectors.blocks = (collaborative, content, scaled)
                vectors.affinity = None
            version = (self._matrix_t, getattr(self, "_matrix_version", 0))
            if vectors.affinity is None or not (vectors.affinity_of[0] is version[0]
                                                and vectors.affinity_of[1] == version[1]):
                vectors.affinity = vectors.query @ self._matrix_t
                vectors.affinity_of = version
            score = vectors.affinity + self._bias
        else:
            # A blend that learned no weight for either affinity has an all-zero matrix:
            # the fold-in and the catalog-wide product (most of a request's cost) would
            # only add zeros.
            score = self._bias.copy()
        if segs and b["segment"]:
            score += Segments.serving_row(self, segs, b["segment"])
        if b["item_item"] or b["item_item_recent"]:
            if not vectors.has_own:
                vectors.own = ItemItem.user_own(self, user_id, b, vectors)
                vectors.borrowed = (None if vectors.own is None
                                    else ItemItem.borrowed(self, vectors.own))
                vectors.has_own = True
            if vectors.own is not None:
                row = ItemItem.spread(self, vectors.own, vectors.borrowed)
                score += row[self._order]
        if b["sequence"]:
            # A few hundred successors: added where they sit, not as a catalog-wide row.
            found = SequenceAware.successors(self, user_id, vectors)
            if found is not None:
                np.add.at(score, self._position[found[0]], b["sequence"] * found[1])
        if b["walk"]:
            # 20 latest events x 200 arrivals: added where they sit, as sequence's.
            found = Walk.arrivals(self, user_id, vectors)
            if found is not None:
                np.add.at(score, self._position[found[0]], b["walk"] * found[1])
        if self._recency_on:
            Recency.add_age_term(self, score, t_ref)
        return score

    @staticmethod
    def _exploration_scale(score: np.ndarray) -> float:
        """The bonus of an unseen new poll at weight 1 for a request with these scores."""
        return Exploration.scale(score)

    def exploration_bonus(self, user_id: str | None = None, now: float | None = None
                          ) -> np.ndarray:
        """The per-poll exploration bonus the next request would add (0 when weight 0),
        in ``item_ids_`` order."""
        self._require_fitted()
        if not self._exploring:  # no bonus to read: not worth a request's scores
            return np.zeros(len(self.item_ids_), np.float32)
        return self._bonus_at(user_id, now, np.arange(len(self.item_ids_))).astype(
            np.float32)

    def _bonus_at(self, user_id: str | None, now: float | None, polls: np.ndarray
                  ) -> np.ndarray:
        """The exploration bonus in the request's scores of ``polls`` (poll indices;
        0 where none): read from the request's own (cached) scores."""
        _, start, tail = self._scores_and_bonus(user_id, now, copy=False)
        bonus = np.zeros(len(polls))
        if tail is not None:
            at = self._position[polls] - start  # the bonus tail starts at serving `start`
            inside = at >= 0
            bonus[inside] = tail[at[inside]]
        return bonus

    def _final_scores(self, user_id: str | None, now: float | None) -> np.ndarray:
        return self._scores_and_bonus(user_id, now)[0]

    def _scores_and_bonus(self, user_id: str | None, now: float | None, copy: bool = True
                          ) -> tuple[np.ndarray, int, np.ndarray | None]:
        """The request's scores (a copy, serving order) and the exploration bonus in
        them: (scores, first serving position with a bonus, the bonus from there on;
        None when not exploring). ``copy=False``: a cached answer's scores as kept, for a
        caller that only reads the bonus (they must not be written to)."""
        # One feed page asks for the same user's scores more than once (regular and
        # promoted slots): the last answer is kept until the model changes.
        key = (user_id, now, getattr(self, "_version", 0), self.exploration_weight,
               self.exploration_item_age_cutoff_days, self.use_recency,
               tuple(self.blend_.values()))  # weights read live at serving may be rescaled
        cached = getattr(self, "_last_scores", None)
        if cached is not None and cached[0] == key:
            return (cached[1].copy() if copy else cached[1]), cached[2], cached[3]
        # The user's weights once per request: the scores and the exploration tail
        # both read them.
        b = blend.user_weights(self, user_id)
        score = self._serving_scores(user_id, self._reference_time(user_id, now), b)
        start, tail = len(score), None
        if self._exploring:
            start, tail = Exploration.tail(self, user_id, now, Exploration.scale(score),
                                           self._user_vectors(user_id, b))
            score[start:] += tail
        self._last_scores = (key, score.copy(), start, tail)
        return score, start, tail

    def _changed(self) -> None:
        """Something the scores depend on moved: forget the cached scores."""
        self._version = getattr(self, "_version", 0) + 1

    def _vectors_changed(self) -> None:
        """Poll arrays users' request-time vectors are computed from moved (new or
        edited polls, a refit): forget every user's (streamed events do not: a user's
        vectors depend on their own events, checked per user)."""
        self._vectors_epoch = getattr(self, "_vectors_epoch", 0) + 1
        # Dropped, not only outdated: a stale entry holds the arrays it was computed from
        # (B's neighbours, the serving matrix: up to ~90 MB each at 50k polls) until its
        # user asks again, which a user who left never does.
        self.__dict__.pop("_user_vector_memo", None)

    def score_all(self, user_id: str | None, *, now: float | None = None) -> np.ndarray:
        """Every poll's score for the user (exploration included), in ``item_ids_`` order."""
        self._require_fitted()
        return self._final_scores(user_id, now)[self._position]

    def feed_scores(self, user_id: str | None, *, now: float | None = None) -> np.ndarray:
        """The blend's candidate scores: ``score_all`` with -inf at the polls the user
        already touched (when ``exclude_interacted``), which no feed holds. The feed is
        their top, its head re-ordered by the re-ranker when fit learned one."""
        self._require_fitted()
        return self._candidate_scores(user_id, now)[self._position]

    def _candidate_scores(self, user_id: str | None, now: float | None) -> np.ndarray:
        """The request's scores (a copy, serving order) with the user's touched polls
        at -inf when the feed leaves them out."""
        return self._leave_out_touched(self._scores_and_bonus(user_id, now)[0], user_id)

    def _leave_out_touched(self, score: np.ndarray, user_id: str | None) -> np.ndarray:
        """``score`` (serving order) with -inf, in place, at the polls the user touched
        when the feed leaves them out (``exclude_interacted``): what a feed never holds,
        for requests and for the re-ranker's heads in fit alike."""
        if self.exclude_interacted and user_id in self.interacted_:
            score[self._position[self.interacted_[user_id]]] = -np.inf
        return score

    def recommend(
        self,
        user_id: str | None,
        n: int = 25,
        *,
        now: float | None = None,
        exclude: Collection[str] = (),
        allow: Callable[[str], bool] | None = None,
    ) -> list[ScoredItem]:
        """Top ``n`` polls for the user, best first (see the Recipe protocol): the
        blend's, its head re-ordered by the re-ranker when fit learned one
        (components/rerank.py; ``score_all`` stays the blend's)."""
        self._require_fitted()
        n = max(0, int(n))
        if (getattr(self, "rerank_", None) is None or not self._has(Rerank.name)
                or user_id not in self.recent_ or n == 0):
            polls, scores = self._blend_top(user_id, n, now, exclude, allow)
        else:
            polls, scores = self._blend_top(user_id, max(n, RERANK_HEAD), now, exclude,
                                            allow)
            if len(polls) >= 2:
                head = polls[:RERANK_HEAD]
                order, dealt = rerank.reorder(
                    self, user_id, self._reference_time(user_id, now), head,
                    scores[:RERANK_HEAD], self._bonus_at(user_id, now, head))
                polls = np.concatenate([head[order], polls[RERANK_HEAD:]])
                scores = np.concatenate([dealt, scores[RERANK_HEAD:]])
        ids = self.item_ids_
        return [ScoredItem(ids[i], s) for i, s in zip(polls[:n].tolist(),
                                                      scores[:n].tolist())]

    def _blend_top(self, user_id: str | None, n: int, now: float | None,
                   exclude: Collection[str], allow: Callable[[str], bool] | None
                   ) -> tuple[np.ndarray, np.ndarray]:
        """The blend's top ``n`` as (poll indices, float64 scores), best first:
        ``recommend`` without the re-ranker. Poll indices until the very end: the
        re-ranker reads its head by index, and ids are looked up once."""
        n = max(0, int(n))
        if n == 0:  # nothing to rank: the request's scores are not computed
            return np.zeros(0, np.int64), np.zeros(0)
        score = self._candidate_scores(user_id, now)
        if exclude:
            idx = np.fromiter(map(self.item_index_.get, exclude, repeat(-1)), np.int64,
                              len(exclude))  # map(): the lookups stay in C
            score[self._position[idx[idx >= 0]]] = -np.inf
        positions = None  # the serving positions `score` holds (None: every one)
        if isinstance(allow, PollMask):
            # One vector operation instead of one call per candidate, and no rescans
            # from the top when a selective filter rejects most of the head.
            keep = self._catalog_rows.keep(allow, self.item_ids_, self.item_index_)[
                self._order]
            if np.count_nonzero(keep) * 2 < len(keep):
                # Selective (a promotion's filter keeps ~3 %): rank only what it keeps.
                positions = np.flatnonzero(keep)
                score = score[positions]
            else:
                np.putmask(score, ~keep, -np.inf)
            allow = None
        # Look a little deeper than n so `allow` rejections rarely force a full sort.
        depth = min(len(score), max(2 * n, n + 50))
        while True:
            head = self._head(score, depth, positions)
            where = head if positions is None else positions[head]
            # Ties break by poll id order, as a sort over the catalog would.
            rank = np.lexsort((self._order[where], -score[head]))
            polls = self._order[where[rank]]  # poll indices, best first
            ranked = score[head[rank]].astype(np.float64)
            finite = np.isfinite(ranked)
            # Scores are best first: past the first -inf there is nothing to rank,
            # however deep one looks.
            count = len(ranked) if finite.all() else int(np.argmin(finite))
            if allow is None:  # the usual case (a mask was applied above): no loop
                if count >= n or count < len(ranked) or depth >= len(score):
                    return polls[:min(n, count)], ranked[:min(n, count)]
                depth = min(len(score), depth * 4)
                continue
            ids = self.item_ids_
            # Asked lazily, best first: ``allow`` is not called past the n-th kept poll.
            kept = list(islice((j for j, i in enumerate(polls[:count].tolist())
                                if allow(ids[i])), n))
            if len(kept) == n or count < len(ranked) or depth >= len(score):
                return polls[kept], ranked[kept]
            depth = min(len(score), depth * 4)

    def _head(self, score: np.ndarray, depth: int, positions: np.ndarray | None
              ) -> np.ndarray:
        """Indices into ``score`` of its ``depth`` best, scores tied at the cut going to
        the lowest poll ids, as a sort over the catalog would rank them; ``positions``:
        the serving positions ``score`` holds (None: every one)."""
        head = top_candidates(score, depth)  # the depth best and all tied with the last
        if len(head) <= depth:
            return head
        values = score[head]
        cut = np.partition(values, len(values) - depth)[len(values) - depth]
        above, tied = head[values > cut], head[values == cut]
        need = depth - len(above)
        if need < len(tied):  # poll ids are distinct: this choice is exact
            ids = self._order[tied if positions is None else positions[tied]]
            tied = tied[np.argpartition(ids, need - 1)[:need]]
        return np.concatenate([above, tied])

    # ------------------------------------------------------------------ streaming
    def observe(self, events: Iterable[Interaction | Impression]) -> None:
        """Fold streamed interactions and impressions in at once, without retraining."""
        self._require_fitted()
        self._changed()
        for event in events:
            if isinstance(event, Impression):
                self._count_impression(event.user_id, event.item_ids)
                continue
            if self.event_values is not None and not self.event_values.keeps(event):
                continue  # below its type's value threshold: not trained on, as in fit
            if event.item_id not in self.item_index_:
                # An unknown poll is new: it becomes recommendable from this moment.
                self.add_items({event.item_id: {"CREATION_TIMESTAMP": event.timestamp}})
            i = self.item_index_[event.item_id]
            seen = self.interacted_.get(event.user_id, _NO_POLLS)
            at_seen = int(np.searchsorted(seen, i))
            first_time = at_seen == len(seen) or seen[at_seen] != i
            if first_time:  # a poll counts users, not events (see _users_per_poll)
                self.counts_[i] += 1
            if event.impression:
                self._count_impression(event.user_id, event.impression)
            if self._clock.observe(int(event.timestamp)):
                self.newest_timestamp_ = int(self._clock.now)
            self._poll_changed(i)
            weight = self._event_weight(event.event_type)
            if self.event_values is not None:
                weight *= self.event_values.weight(event)
            items, weights, stamps = self.recent_.get(
                event.user_id, (np.zeros(0, np.int32), np.zeros(0, np.float32),
                                np.zeros(0, np.int64)))
            at = int(np.searchsorted(stamps, event.timestamp, side="right"))
            items = np.insert(items, at, i)[-self.max_recent_events:]
            weights = np.insert(weights, at, weight)[-self.max_recent_events:]
            stamps = np.insert(stamps, at, event.timestamp)[-self.max_recent_events:]
            self.recent_[event.user_id] = (items, weights, stamps)
            if first_time:
                self.interacted_[event.user_id] = np.insert(seen, at_seen, i).astype(np.int32)

    def add_items(self, items: Mapping[str, Mapping[str, Any]]) -> None:
        """Make new polls recommendable at once, scored from their metadata and text.

        Incremental: only the new polls are encoded and given serving rows (appended to
        arrays with spare capacity), so ingesting one poll at 50k polls costs a few ms
        under the serving lock, not a pass over the catalog (100-150 ms). A poll older
        than the newest one, or a known poll whose creation time changed, rebuilds the
        creation order instead."""
        self._require_fitted()
        self._changed()
        self._vectors_changed()  # factors, content and the fold-in's Gram matrix move
        new = [i for i in items if i not in self.item_index_]
        known = [i for i in items if i in self.item_index_]
        ids = new + known
        if not ids:
            return
        text = metadata.encode(self, items, ids)
        categorical = metadata.categorical_matrix(self, items, ids)
        predicted = self._predict_factors(metadata.side_features(text, categorical))
        content = metadata.content(self, text, categorical)
        stamps = np.array([float(items[i].get("CREATION_TIMESTAMP") or self.newest_timestamp_)
                           for i in ids])
        first = len(self.item_ids_)
        for item_id in new:
            self.item_index_[item_id] = len(self.item_ids_)
            self.item_ids_.append(item_id)
        n_new = len(new)
        if n_new:
            self._append("item_factors_", predicted[:n_new])
            self._append("content_", content[:n_new])
            self._append("creation_", stamps[:n_new])
            zeros = np.zeros(n_new, np.float32)
            self._append("counts_", zeros)
            self._append("impressions_", zeros)
            self._append("segment_lift_",
                         np.zeros((len(self.segment_lift_), n_new), np.float32), axis=1)
            self._components[ItemItem.name].add_polls(self, n_new)
        # Known polls get fresh metadata: content and creation time, factor kept if warm.
        moved = False
        for j, item_id in enumerate(known, start=n_new):
            i = self.item_index_[item_id]
            self.content_[i] = content[j]
            if items[item_id].get("CREATION_TIMESTAMP") is not None:
                moved |= bool(self.creation_[i] != stamps[j])
                self.creation_[i] = stamps[j]
        if moved or not self._extend_serving(first, n_new):
            self._refresh_static()  # the creation order changed: rebuild it
            return
        if known:
            self._refresh_polls(np.array([self.item_index_[i] for i in known], np.int64))

    def _append(self, name: str, rows: np.ndarray, axis: int = 0) -> None:
        """Append ``rows`` to the per-poll array attribute ``name`` along ``axis``. The
        attribute is a view of a larger buffer, so most appends copy only the new rows
        (amortised growth, see :data:`ARRAY_GROWTH_SHARE`)."""
        current = getattr(self, name)
        buffers: dict[str, np.ndarray] = self.__dict__.setdefault("_buffers", {})
        buffer = buffers.get(name)
        n, m = current.shape[axis], rows.shape[axis]
        if buffer is None or current.base is not buffer or buffer.shape[axis] < n + m:
            shape = list(current.shape)
            shape[axis] = n + m + max(m, ARRAY_GROWTH_MIN_ROWS, int(n * ARRAY_GROWTH_SHARE))
            buffer = np.empty(shape, current.dtype)
            buffer[(slice(None),) * axis + (slice(0, n),)] = current
            buffers[name] = buffer
        buffer[(slice(None),) * axis + (slice(n, n + m),)] = rows
        setattr(self, name, buffer[(slice(None),) * axis + (slice(0, n + m),)])

    def _extend_serving(self, first: int, n_new: int) -> bool:
        """Add serving rows for the polls ``first:first + n_new`` just appended, without
        going over the catalog. Possible when they are at least as new as every poll
        (the usual case: a poll is ingested when it is created), so they go to the end of
        the creation order; False otherwise (the caller rebuilds).

        The user-independent engagement scale (events per unit of engagement curve) is
        kept as it is, as streamed events already do (``_poll_changed``): a poll created
        at the model's clock has reached none of its curve, so it would not move it."""
        if not n_new:
            return True
        idx = np.arange(first, first + n_new)
        stamps = self.creation_[idx]
        if len(self._sorted_creation) and stamps.min() < self._sorted_creation[-1]:
            return False
        # A stable sort puts ties after the older ids, as the full argsort would.
        order = idx[np.argsort(stamps, kind="stable")]
        position = np.empty(n_new, self._position.dtype)
        position[order - first] = np.arange(first, first + n_new)
        factors = self.item_factors_[idx].astype(np.float64)
        self._yty += factors.T @ factors
        self._append("_order", order.astype(self._order.dtype))
        self._append("_position", position)
        self._append("_sorted_creation", self.creation_[order])
        counts = self.counts_[idx]
        self._append("_popularity", np.log1p(counts).astype(np.float32))
        self._append("_coldness", (COLD_ITEM_PRIOR_STRENGTH / (
            COLD_ITEM_PRIOR_STRENGTH + counts)).astype(np.float32))
        self._append("_appeal", self._appeal_of(idx, self._engagement_reached(idx)))
        self._append("_matrix_t", np.zeros((self._matrix_t.shape[0], n_new), np.float32),
                     axis=1)
        self._append("_bias", np.zeros(n_new, np.float32))
        self._append("_explore_base", np.zeros(n_new, np.float32))
        self._refresh_polls(idx)
        return True

    # ------------------------------------------------------------------ persistence
    def _require_fitted(self) -> None:
        if not hasattr(self, "item_factors_"):
            raise NotFitted("UserPersonalization: call fit(training_data) or load(dir) first")

    def _params(self) -> dict[str, Any]:
        return {
            "factors": self.factors, "regularization": self.regularization,
            "iterations": self.iterations, "event_weights": self.event_weights,
            "default_event_weight": self.default_event_weight,
            "exploration_weight": self.exploration_weight,
            "exploration_item_age_cutoff_days": self.exploration_item_age_cutoff_days,
            "use_text": self.use_text, "text_fields": list(self.text_fields),
            "item_categorical_fields": list(self.item_categorical_fields),
            "user_fields": list(self.user_fields), "use_recency": self.use_recency,
            "learn_blend": self.learn_blend, "exclude_interacted": self.exclude_interacted,
            "max_recent_events": self.max_recent_events,
            "item_item_max_items": self.item_item_max_items,
            "item_item_active_polls": self.item_item_active_polls, "num_threads": self.num_threads,
            "random_state": self.random_state, "components": list(self.components),
            "event_values": None if self.event_values is None else self.event_values.to_json(),
        }

    def save(self, directory: Path) -> None:
        """Write the model to ``directory`` as model.json + model.npz (+ the encoder)."""
        self._require_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        users = sorted(set(self.recent_) | set(self.interacted_))
        recent = [self.recent_.get(u, (np.zeros(0, np.int32),) * 3) for u in users]
        interacted = [self.interacted_.get(u, np.zeros(0, np.int32)) for u in users]
        state = {
            "recipe": self.name, "format": 1, "params": self._params(),
            "item_ids": self.item_ids_, "user_ids": self.user_ids_,
            "segment_ids": self.segment_ids_, "user_segments": self.user_segments_,
            "categorical_index": self.categorical_index_, "blend": self.blend_,
            "newest_timestamp": self.newest_timestamp_, "history_users": users,
            "has_encoder": self.encoder_ is not None, "item_item_l2": self.item_item_l2_,
            "history_z_range": self.history_z_range_,
        }
        (directory / "model.json").write_text(json.dumps(state))
        np.savez(
            directory / "model.npz",
            content=self.content_, creation=self.creation_,
            counts=self.counts_, impressions=self.impressions_,
            age_weights=self.age_weights_, engagement_curve=self.engagement_curve_,
            # Every component's state, registered or empty: one file format.
            **{k: v for c in self._components.values() for k, v in c.save(self).items()},
            recent_lengths=np.array([len(r[0]) for r in recent], np.int64),
            recent_items=np.concatenate([r[0] for r in recent] or [np.zeros(0)]).astype(np.int32),
            recent_weights=np.concatenate([r[1] for r in recent] or [np.zeros(0)]).astype(
                np.float32),
            recent_stamps=np.concatenate([r[2] for r in recent] or [np.zeros(0)]).astype(
                np.int64),
            interacted_lengths=np.array([len(a) for a in interacted], np.int64),
            interacted_items=np.concatenate(interacted or [np.zeros(0)]).astype(np.int32),
        )
        if self.encoder_ is not None:
            self.encoder_.save(directory / "text_encoder")

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Read a model written by :meth:`save`."""
        directory = Path(directory)
        path = directory / "model.json"
        if not path.exists():
            raise UserPersonalizationError(
                f"{path} is missing: {directory} holds no saved User-Personalization model"
            )
        state = json.loads(path.read_text())
        if state.get("recipe") != cls.name:
            raise UserPersonalizationError(
                f"{directory} holds a {state.get('recipe')!r} model, not {cls.name!r}")
        model = cls(**state["params"])
        model.item_ids_ = state["item_ids"]
        model.item_index_ = {i: n for n, i in enumerate(model.item_ids_)}
        model.user_ids_ = state["user_ids"]
        model.user_index_ = {u: n for n, u in enumerate(model.user_ids_)}
        model.segment_ids_ = state["segment_ids"]
        model.segment_index_ = {s: n for n, s in enumerate(model.segment_ids_)}
        model.user_segments_ = state["user_segments"]
        model.categorical_index_ = state["categorical_index"]
        model.blend_ = {**{f: 0.0 for f in _FEATURES}, **state["blend"]}
        z_range = state.get("history_z_range")  # None: no twins, or saved before them
        model.history_z_range_ = None if z_range is None else (z_range[0], z_range[1])
        model.newest_timestamp_ = state["newest_timestamp"]
        model._clock = EventClock([model.newest_timestamp_],
                                  max_lead_seconds=AGE_CLOCK_MAX_LEAD_SECONDS)
        model.item_item_l2_ = state.get("item_item_l2", ITEM_ITEM_DEFAULT_L2)
        model.encoder_ = load_encoder(directory / "text_encoder") if state["has_encoder"] \
            else None
        with np.load(directory / "model.npz") as a:
            for name in ("content", "creation", "counts", "impressions", "age_weights",
                         "engagement_curve"):
                setattr(model, name + "_", a[name])
            for component in model._components.values():
                component.load(model, a)
            users = state["history_users"]
            cut = np.cumsum(a["recent_lengths"])[:-1]
            parts = [np.split(a[k], cut) for k in
                     ("recent_items", "recent_weights", "recent_stamps")]
            model.recent_ = {u: (parts[0][j], parts[1][j], parts[2][j])
                             for j, u in enumerate(users) if len(parts[0][j])}
            cut = np.cumsum(a["interacted_lengths"])[:-1]
            model.interacted_ = dict(zip(users, np.split(a["interacted_items"], cut)))
        model._refresh_static()
        model._reserve_growth()
        return model

    def _reserve_growth(self) -> None:
        """Give the per-poll arrays their spare rows now: a served model is loaded once
        and then ingests polls, and the first ingest would otherwise copy every array
        (~30 ms at 50k polls) while holding the serving lock."""
        none = np.zeros(0, np.float32)
        for name in ("item_factors_", "content_"):
            self._append(name, np.zeros((0, getattr(self, name).shape[1]), np.float32))
        self._append("_matrix_t", np.zeros((len(self._matrix_t), 0), np.float32), axis=1)
        self._append("segment_lift_", np.zeros((len(self.segment_lift_), 0), np.float32),
                     axis=1)
        for name in ("creation_", "counts_", "impressions_", "_order", "_position",
                     "_sorted_creation", "_popularity", "_coldness", "_appeal", "_bias",
                     "_explore_base"):
            self._append(name, none)


def _ratio(moved: float, base: float) -> np.float32:
    """How much a user's history twin scales a matrix block of weight ``base``."""
    return np.float32(moved / base) if base else np.float32(1.0)
