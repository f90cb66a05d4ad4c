"""User-Personalization: the recipe behind most of the feed (Amazon Personalize's
``aws-user-personalization``, rebuilt on implicit and scikit-learn).

Why it is built this way:

- **Collaborative signal** comes from implicit's ALS over event-weighted votes and
  comments. A user's vector is not looked up but *solved at request time* from their
  latest events (an ALS fold-in, a k×k solve), so an event streamed a second ago changes
  the next feed without retraining, and a held-out or brand-new user is served exactly
  like a known one.
- **Cold polls** have no collaborative vector worth trusting. A ridge regression learned
  on warm polls maps a poll's metadata (CATEGORY, AUTHOR_ID, and its text through a
  pluggable encoder, see recsys/text.py) into the factor space; a poll's vector is the
  ALS one shrunk towards that prediction by how few interactions it has. A content
  affinity (the user's recent polls' embeddings against each poll's) adds what the
  factor space cannot express.
- **Cold users** start from their segment (LOCALE, CLUSTER, COMMUNITY, AGE bucket): the
  mean factor of users in the same segments and how much those segments over-engage
  with each poll.
- **Item-item** (whole catalogs up to ``item_item_max_items``, default 10,000): EASE's closed
  form B (Steck, 2019; built by recsys/evaluation/peers.py), lambda chosen on the blend's
  validation split. Two blend features read it at request time: the sum of B rows of
  every poll the user touched (EASE's own score) and of their latest events with a
  decay, because what a user did last says most about what they do next. On MovieLens
  100k (3 folds) these lifted UP's NDCG@10 from 0.129 to 0.155, past EASE's 0.141.
  B is catalog² floats, so a larger catalog gets B over its active window (the
  ``item_item_active_polls`` most-interacted polls) and every other poll is scored like
  a cold one, from its content neighbours in the window. A cold poll's B column is nearly
  empty, so its item-item score is shrunk (like its factor) towards the mean score of
  the warm polls its content most resembles: a new poll whose text matches what the
  user engages with is scored like the polls it resembles, not like nothing. On the
  demo data (2,000 users, 5,000 polls, ``hunch evaluate --folds 3``: 417 users with a
  cold relevant poll) this took cold-poll recall@25 with text from 0 to 0.014 (without
  text it stays 0; paired difference [0.006, 0.025]) at an unchanged NDCG@10 (0.167);
  ranked among cold polls only, text 0.348 vs no text 0.276.
- **Recency**: polls are engaged mostly soon after creation, so the poll's age at
  ``now`` enters as a learned step function.
- **The blend** of these parts (collaborative, content, popularity, segment lift, age)
  is a logistic regression learned inside ``fit`` on a validation split carved from
  TRAINING users only (Personalize's split shape: the newest 10 % of their events are
  the targets and are withheld from everything the blend sees). Because it is linear,
  serving stays one matrix-vector product over the catalog.
- **Exploration** follows Personalize: polls younger than the cut-off get a bonus that
  shrinks with their impressions and interactions, with a little seeded noise.

Hand-written parts and why: the fold-in solve (implicit's ``recalculate_user`` builds
a sparse matrix per call, too slow for a 5 ms budget); the segment lift (a few
vectorised counts; no library offers it); the metadata ridge solved exactly through
sparse normal equations (``_ridge``: scikit-learn's iterative solvers took longer than
the ALS fit on thousands of AUTHOR_ID columns); and serving in creation order, where
the blend's per-poll weights are folded into one float32 matrix and one bias vector,
the poll-age term is a few slice adds and exploration noise is drawn only for the
young polls that can receive it.
"""

from __future__ import annotations

import json
import math
import zlib
from itertools import repeat
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp

from recsys.errors import HunchError
from recsys.event_values import EventValues
from recsys.events import Impression, Interaction
from recsys.recipes.base import CatalogRows, PollMask, ScoredItem, TrainingData
from recsys.recipes.clock import EventClock
from recsys.text import TextEncoder, TfidfSvdEncoder, load_encoder

__all__ = ["UserPersonalization", "UserPersonalizationError", "NotFitted", "TEXT_FIELDS"]

TEXT_FIELDS: tuple[str, ...] = (
    "QUESTION", "OPTIONS", "DESCRIPTION", "OPTION_DESCRIPTIONS", "COMMENTS",
)
ITEM_CATEGORICAL_FIELDS: tuple[str, ...] = ("CATEGORY", "AUTHOR_ID")
USER_FIELDS: tuple[str, ...] = ("AGE", "LOCALE", "CLUSTER", "COMMUNITY")
DEFAULT_EVENT_WEIGHTS: dict[str, float] = {"HUNCH": 1.0, "COMMENT": 2.0}

SECONDS_PER_DAY = 86_400
# Personalize: the user's latest events drive real-time personalization (Interactions
# filters also look at the last 100 per type); more would slow the request solve.
MAX_RECENT_EVENTS = 100
# Age buckets of Personalize-style demographic segmentation; exact ages over-split users.
AGE_BUCKET_EDGES: tuple[int, ...] = (18, 25, 35, 45, 55, 65)
# Poll-age steps (days) of the recency feature: a feed's engagement falls off within
# hours to days of posting; a final open bucket holds everything older than 60 days.
POLL_AGE_EDGES_DAYS: tuple[float, ...] = (0.0, 0.25, 1.0, 2.0, 4.0, 7.0, 14.0, 30.0, 60.0)
# ALS confidence per unit of event weight (Hu, Koren & Volinsky's alpha); 10 is their
# recommended order of magnitude for counts of a few events per pair.
ALS_ALPHA = 10.0
# A poll's factor is its ALS vector shrunk towards the metadata prediction with the
# strength of this many interactions: with 5 votes both count equally.
COLD_ITEM_PRIOR_STRENGTH = 5.0
# Polls with at least this many interactions teach the metadata→factor ridge.
WARM_ITEM_MIN_INTERACTIONS = 10
# Ridge penalty of the metadata→factor map; strong, since text vectors are noisy.
METADATA_RIDGE_ALPHA = 10.0
# A categorical field with more values than this (AUTHOR_ID) stays out of the dense
# content vector; the metadata ridge still uses it.
CONTENT_MAX_FIELD_VALUES = 256
RIDGE_TOLERANCE = 1e-2
# Additive smoothing of the segment lift (pseudo-interactions per poll).
SEGMENT_SMOOTHING = 1.0
# Validation for the blend: below these sizes the learned weights are noise, so the
# defaults are kept.
MIN_VALIDATION_USERS = 30
MAX_VALIDATION_USERS = 3_000
MIN_EVENTS_FOR_VALIDATION_USER = 5
VALIDATION_TARGET_FRACTION = 0.1  # Personalize's split: newest 10 % are relevant
# Negatives per validation user: hard ones from the default ranking's top and random
# ones from the whole catalog, so the blend learns both to order the head and to
# keep the tail down.
VALIDATION_CANDIDATES = 200
HARD_NEGATIVES = 30
RANDOM_NEGATIVES = 30
# Exploration bonus of an unseen new poll at weight 1: the gap between this request's
# best score and its average poll's, so that weight w lifts an unproven poll by w of the
# way from a typical poll to the head of the feed, whatever scale the learned blend has
# (a fixed logit never reached unproven polls once the blend grew confident: they sat
# ~4.5 logits below the last slot). At least this many logits when the scores are flat.
EXPLORATION_BONUS_SCALE = 1.0
EXPLORATION_NOISE = 0.1  # relative spread of the bonus, "a little random noise"
# Poll ages run from the newest event, robust to a stray future one (recipes/clock.py).
# Ages count in days against a 30-day exploration cut-off, and small or synthetic data
# may leave days between its newest events: an event is believed up to 30 days ahead
# of the 5th newest (trending's day would ignore an honest newest vote after a lull).
AGE_CLOCK_MAX_LEAD_SECONDS = 30 * 24 * 3600

# Pseudo-events of the appeal estimate: a poll needs a few events more (or fewer) than
# its age predicts before it counts as more (or less) appealing than the average poll.
APPEAL_PRIOR_EVENTS = 2.0
# Quantiles kept of the delay between a poll's creation and its events (the catalog's
# engagement curve); 64 steps resolve the first hours, where most engagement falls.
ENGAGEMENT_CURVE_STEPS = 64
# Combined segment rows kept per request-time segment set; each is one float32 per poll
# (200 kB at 50k polls), so 64 of them stay small while covering the common segment sets.
SEGMENT_ROW_CACHE_SIZE = 64
# Per-poll arrays grow by at least this share of the catalog when a poll arrives, so
# ingesting polls one by one (every ~2 s per worker) copies the 50k-row arrays only
# once per ~6k polls instead of on every poll, while the model holds the serving lock.
ARRAY_GROWTH_SHARE = 0.125
ARRAY_GROWTH_MIN_ROWS = 256

# Item-item component (EASE's closed form, Steck 2019): B is dense, catalog² float32, so
# it covers the whole catalog only up to this many polls (10,000 polls: 400 MB and an
# eigendecomposition of at most 10,000²).
ITEM_ITEM_MAX_ITEMS = 10_000
# A larger catalog gets B over its active window: the polls with the most training
# events; every other poll is scored by its content neighbours in the window (as a cold
# poll is). Measured on demo data at 50,000 polls (5,000 users, 1.5M events, held-out
# users of one Personalize split, item-item scores alone): window EASE of 2,000 polls
# NDCG@10 0.0230 (fit 8 s), of 4,000 polls 0.0208 (73 s: the Gram matrix outgrows the
# users'); sparse item-kNN cosine (top 100, shrinkage 10) 0.0196 (19 s); popularity
# 0.0021. So the window, at the size whose eigendecomposition stays a few seconds.
# In UP on the same split (bench/bench_user_personalization.py --item-item): NDCG@10
# 0.1036 with the window against 0.0052 without; fit 2.36x implicit ALS; a request
# costs ~1.2 ms more at p50, most of it the spread to the 48,000 polls outside B.
ITEM_ITEM_ACTIVE_POLLS = 2_000
# EASE's lambda is chosen inside fit on the blend's validation split; the grid spans the
# peer's (recsys/evaluation/peers.py): small catalogs want ~100s, sparse ones ~1,000s.
ITEM_ITEM_L2_GRID: tuple[float, ...] = (50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0)
# Used when there is no validation split to choose from (tiny data, learn_blend=False).
ITEM_ITEM_DEFAULT_L2 = 500.0
# Validation users that choose lambda: each costs a catalog-wide score row per lambda.
ITEM_ITEM_TUNING_USERS = 1_000
ITEM_ITEM_TUNING_DEPTH = 10
# The recent item-item feature halves an event's say every this many newer events: what
# a user did last predicts what they do next (MovieLens 100k, 3 folds, NDCG@10 of UP:
# half-life 3 events 0.152, 10 events 0.155, 25 events 0.152).
ITEM_ITEM_RECENT_HALF_LIFE_EVENTS = 10.0
# Above this many polls in a user's history, their item-item row is one dense
# vector-matrix product over B instead of a gather of their rows (same result, no copy).
ITEM_ITEM_GATHER_MAX_POLLS = 256  # lambda is chosen by validation NDCG@10, the headline metric
# EASE gives a poll with a handful of votes an almost empty column, so every cold poll
# scored ~0 on the blend's strongest feature, whatever it said. A poll's item-item score
# is therefore shrunk towards the mean score of the warm polls its content (text and
# CATEGORY) resembles most, with the factor shrink's strength (COLD_ITEM_PRIOR_STRENGTH).
# 20 neighbours average out one poll's appeal yet stay on its topic (a topic of the demo
# has ~300 polls in 5,000).
ITEM_ITEM_CONTENT_NEIGHBOURS = 20
# Rows of the poll x warm-poll similarity computed at once while finding neighbours
# (1,000 x 10,000 float32: 40 MB).
NEIGHBOUR_CHUNK = 1_000

# Blend features, in design-matrix order. The poll-level candidates "appeal" (events
# against what the poll's age predicts), "coldness" (how few events a poll has, as the
# factor shrink uses it) and the affinities scaled by coldness are computed and served
# too, but on the demo data (2,000 users, 5,000 polls) they lowered NDCG@10 from 0.187 to
# 0.153-0.163 without lifting cold-poll recall, so the learned blend leaves them out.
_FEATURES: tuple[str, ...] = ("collaborative", "content", "popularity", "segment",
                              "item_item", "item_item_recent")
# Used when the validation split is too small to learn from (tiny catalogs, tests).
_DEFAULT_BLEND: dict[str, float] = {
    "collaborative": 1.0, "content": 1.0, "popularity": 0.2, "appeal": 0.0,
    "segment": 0.3, "coldness": 0.0, "cold_collaborative": 0.0, "cold_content": 0.0,
    "item_item": 1.0, "item_item_recent": 0.0,
}
_DEFAULT_AGE_WEIGHTS = (0.0, 1.0, 0.9, 0.8, 0.6, 0.4, 0.2, 0.1, 0.0, 0.0)


class UserPersonalizationError(HunchError):
    """The User-Personalization recipe was misused or given unusable data."""


class NotFitted(UserPersonalizationError):
    """A fitted model was needed."""


def _age_bucket(age: Any) -> str | None:
    if age is None:
        return None
    try:
        age = int(age)
    except (TypeError, ValueError):
        return None
    edges = AGE_BUCKET_EDGES
    i = int(np.searchsorted(edges, age, side="right"))
    low = "0" if i == 0 else str(edges[i - 1])
    high = "" if i == len(edges) else str(edges[i] - 1)
    return f"{low}-{high}"


def _categorical_values(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    return [part for part in str(value).split("|") if part]


def _ridge(features: sp.csr_matrix, targets: np.ndarray, alpha: float
           ) -> tuple[np.ndarray, np.ndarray]:
    """Exact ridge regression (centred, unpenalised intercept) of ``targets`` on sparse
    ``features``, as (coef k×d, intercept k).

    Solved through the sparse normal equations: with a few dense text columns and
    thousands of one-hot AUTHOR_ID columns, X^T X is an "arrow" matrix whose sparse LU is
    cheap, where scikit-learn's iterative solvers needed seconds per factor column.
    """
    from scipy.sparse.linalg import splu

    x_mean = np.asarray(features.mean(0)).ravel()
    y_mean = targets.mean(0)
    n = features.shape[0]
    gram = (features.T @ features).tocsc().astype(np.float64)
    # Centring X^T X densely would fill the author block; the rank-one correction is
    # applied through the Sherman-Morrison formula instead.
    system = (gram + alpha * sp.identity(gram.shape[0], format="csc")).tocsc()
    lu = splu(system)
    rhs = np.asarray(features.T @ (targets - y_mean), np.float64)  # X^T Yc = Xc^T Yc
    solved = lu.solve(rhs)
    u = lu.solve(x_mean * n)
    # (G - n m m^T + aI)^-1 b = A^-1 b + A^-1 m (n m^T A^-1 b) / (1 - n m^T A^-1 m)
    denom = 1.0 - x_mean @ u
    coef = solved + np.outer(u, x_mean @ solved) / denom
    intercept = y_mean - x_mean @ coef
    return coef.T.astype(np.float32), intercept.astype(np.float32)


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
        self._check_params()

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
        unknown = set(self.text_fields) - set(TEXT_FIELDS)
        if unknown:
            raise UserPersonalizationError(
                f"unknown text_fields {sorted(unknown)}; choose from {list(TEXT_FIELDS)}"
            )

    # ------------------------------------------------------------------ weights
    def _event_weight(self, event_type: str) -> float:
        return float(self.event_weights.get(event_type.upper(),
                     self.event_weights.get(event_type, self.default_event_weight)))

    # ------------------------------------------------------------------ fit
    def fit(self, data: TrainingData) -> Self:
        """Learn factors, metadata maps, segment lifts and the blend from ``data``."""
        self._check_params()
        self._changed()
        interactions = sorted(data.interactions, key=lambda e: e.timestamp)
        if self.event_values is not None:
            interactions = self.event_values.training_events(interactions)
        if not interactions:
            raise UserPersonalizationError(
                "User-Personalization needs interactions to train; the dataset has none"
            )
        self._index_items(data.items, interactions)
        self.user_ids_: list[str] = []
        self.user_index_: dict[str, int] = {}
        for e in interactions:
            if e.user_id not in self.user_index_:
                self.user_index_[e.user_id] = len(self.user_ids_)
                self.user_ids_.append(e.user_id)
        for user_id in data.users:
            if user_id not in self.user_index_:
                self.user_index_[user_id] = len(self.user_ids_)
                self.user_ids_.append(user_id)
        n_users = len(self.user_ids_)

        users = np.fromiter((self.user_index_[e.user_id] for e in interactions), np.int64,
                            len(interactions))
        items = np.fromiter((self.item_index_[e.item_id] for e in interactions), np.int64,
                            len(interactions))
        by_type = {t: self._event_weight(t) for t in {e.event_type for e in interactions}}
        weights = np.fromiter((by_type[e.event_type] for e in interactions),
                              np.float32, len(interactions))
        if self.event_values is not None and self.event_values.confidence != "none":
            weights *= np.fromiter((self.event_values.weight(e) for e in interactions),
                                   np.float32, len(interactions))
        stamps = np.fromiter((e.timestamp for e in interactions), np.int64, len(interactions))
        # "Now" for poll ages: robust to a stray future timestamp (recipes/clock.py).
        self._clock = EventClock.of(stamps, max_lead_seconds=AGE_CLOCK_MAX_LEAD_SECONDS)
        self.newest_timestamp_ = int(self._clock.now)
        self._fill_creation(items, stamps)

        self._index_segments(data.users)
        is_target = self._validation_targets(users, stamps)

        keep = ~is_target
        self._fit_engagement_curve(items[keep], stamps[keep])
        self._fit_factors(users[keep], items[keep], weights[keep], n_users)
        self._fit_metadata(data.items)
        self._set_counts(users[keep], items[keep])
        self._fit_item_item(users, items, keep, is_target)
        self._fit_item_item_neighbours()

        self.impressions_ = np.zeros(len(self.item_ids_), np.float32)
        self.__dict__.pop("_explore_base", None)  # a refit starts without serving rows
        seen = [i for imp in data.impressions for i in imp.item_ids]
        seen += [i for e in interactions for i in e.impression]
        self._count_impression(seen)

        self.blend_ = dict(_DEFAULT_BLEND)
        self.age_weights_ = np.array(_DEFAULT_AGE_WEIGHTS, np.float32)
        self._set_history(users, items, weights, stamps, keep)
        if self.learn_blend and is_target.any():
            self._learn_blend(users, items, stamps, is_target)
        # The blend is learned; from here on every event counts.
        self._set_counts(users, items)
        if self.item_item_ is not None and is_target.any():
            self.item_item_ = self._item_item_weights(users, items, self.item_item_l2_)
        self._set_history(users, items, weights, stamps, np.ones(len(users), bool))
        self._refresh_static()
        return self

    def _index_items(self, items: Mapping[str, Mapping[str, Any]],
                     interactions: Sequence[Interaction]) -> None:
        self.item_ids_: list[str] = list(items)
        self.item_index_: dict[str, int] = {i: n for n, i in enumerate(self.item_ids_)}
        for e in interactions:
            if e.item_id not in self.item_index_:
                self.item_index_[e.item_id] = len(self.item_ids_)
                self.item_ids_.append(e.item_id)
        self.creation_ = np.full(len(self.item_ids_), np.nan)
        for item_id, meta in items.items():
            ts = meta.get("CREATION_TIMESTAMP")
            if ts is not None:
                self.creation_[self.item_index_[item_id]] = float(ts)

    def _fill_creation(self, items: np.ndarray, stamps: np.ndarray) -> None:
        # Personalize: without CREATION_TIMESTAMP the first interaction stands in; an item
        # with neither is treated as new.
        first = np.full(len(self.item_ids_), np.inf)
        np.minimum.at(first, items, stamps.astype(float))
        missing = np.isnan(self.creation_)
        self.creation_[missing] = np.where(np.isfinite(first[missing]), first[missing],
                                           float(self.newest_timestamp_))

    def _fit_engagement_curve(self, items: np.ndarray, stamps: np.ndarray) -> None:
        """Quantiles (days) of how long after its creation a poll gets its events."""
        delay = np.maximum(0.0, stamps - self.creation_[items]) / SECONDS_PER_DAY
        levels = np.linspace(0.0, 1.0, ENGAGEMENT_CURVE_STEPS)
        curve = np.quantile(delay, levels) if len(delay) else levels
        # np.interp needs increasing x: ties (many events at one delay) are nudged apart.
        self.engagement_curve_ = np.maximum.accumulate(curve + levels * 1e-9)

    def _index_segments(self, users: Mapping[str, Mapping[str, Any]]) -> None:
        self.segment_ids_: list[str] = []
        index: dict[str, int] = {}
        self.user_segments_: dict[str, list[int]] = {}
        for user_id, meta in users.items():
            segs = []
            for key in self._segment_keys(meta):
                if key not in index:
                    index[key] = len(self.segment_ids_)
                    self.segment_ids_.append(key)
                segs.append(index[key])
            if segs:
                self.user_segments_[user_id] = segs
        self.segment_index_ = index

    def _segment_keys(self, meta: Mapping[str, Any]) -> list[str]:
        keys = []
        for field in self.user_fields:
            if field == "AGE":
                bucket = _age_bucket(meta.get("AGE"))
                if bucket:
                    keys.append(f"AGE={bucket}")
            else:
                keys.extend(f"{field}={v}" for v in _categorical_values(meta.get(field)))
        return keys

    def _validation_targets(self, users: np.ndarray, stamps: np.ndarray) -> np.ndarray:
        """Personalize's split inside the training users: the newest 10 % of events of
        a random tenth of users become blend-learning targets."""
        is_target = np.zeros(len(users), bool)
        if not self.learn_blend:
            return is_target
        counts = np.bincount(users, minlength=len(self.user_ids_))
        eligible = np.flatnonzero(counts >= MIN_EVENTS_FOR_VALIDATION_USER)
        n_val = min(MAX_VALIDATION_USERS, int(len(self.user_ids_) * 0.1))
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

    def _fit_factors(self, users: np.ndarray, items: np.ndarray, weights: np.ndarray,
                     n_users: int) -> None:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        matrix = sp.csr_matrix((weights, (users, items)),
                               shape=(n_users, len(self.item_ids_)), dtype=np.float32)
        matrix.sum_duplicates()
        # implicit's own loops are parallel; BLAS threads on top only oversubscribe.
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=self.factors, regularization=self.regularization, alpha=ALS_ALPHA,
                iterations=self.iterations, num_threads=self.num_threads,
                random_state=self.random_state,
            )
            model.fit(matrix, show_progress=False)
        self._als_items = np.asarray(model.item_factors, np.float32)
        self._als_users = np.asarray(model.user_factors, np.float32)
        self._train_counts = np.bincount(items, minlength=len(self.item_ids_)).astype(np.float32)

    # ------------------------------------------------------------------ item-item
    def _fit_item_item(self, users: np.ndarray, items: np.ndarray, keep: np.ndarray,
                       is_target: np.ndarray) -> None:
        """EASE's item-item weights from the events the blend may see, lambda chosen on
        the blend's validation users (never on anyone held out of ``fit``)."""
        self.item_item_: np.ndarray | None = None
        self.item_item_l2_ = ITEM_ITEM_DEFAULT_L2
        n_items = len(self.item_ids_)
        # B's polls (catalog indices, ascending): all of them, or the active window.
        self.item_item_polls_ = np.arange(n_items)
        if n_items > self.item_item_max_items:
            if not self.item_item_active_polls:
                return
            counts = np.bincount(items[keep], minlength=n_items)
            window = np.argsort(-counts, kind="stable")[:self.item_item_active_polls]
            self.item_item_polls_ = np.sort(window[counts[window] > 0])
            if not len(self.item_item_polls_):
                return
        if is_target.any():
            self.item_item_l2_ = self._choose_item_item_l2(users, items, keep, is_target)
        self.item_item_ = self._item_item_weights(users[keep], items[keep],
                                                  self.item_item_l2_)

    def _fit_item_item_neighbours(self) -> None:
        """Each poll's nearest warm polls by content, the donors of its item-item score."""
        self.item_item_pool_ = np.zeros(0, np.int64)
        self.item_item_neighbours_: sp.csr_matrix | None = None
        if self.item_item_ is None or not self.content_.shape[1]:
            return
        # Positions in B of its warm polls.
        self.item_item_pool_ = np.flatnonzero(
            self._train_counts[self.item_item_polls_] >= WARM_ITEM_MIN_INTERACTIONS)
        if len(self.item_item_pool_) < 2:
            return
        self.item_item_neighbours_ = self._content_neighbours(np.arange(len(self.item_ids_)))

    def _content_neighbours(self, idx: np.ndarray) -> sp.csr_matrix:
        """Rows ``idx`` of the neighbour matrix (polls x B's polls): weights of the
        :data:`ITEM_ITEM_CONTENT_NEIGHBOURS` warm polls most similar by content, summing
        to 1 (0 for a poll that resembles none); a poll is never its own neighbour."""
        polls = self.item_item_polls_
        pool = self.item_item_pool_
        n_b = len(self.item_item_)
        k = min(ITEM_ITEM_CONTENT_NEIGHBOURS, len(pool) - 1)
        pool_content = self.content_[polls[pool]]
        rows, cols, vals = [], [], []
        for start in range(0, len(idx), NEIGHBOUR_CHUNK):
            chunk = idx[start:start + NEIGHBOUR_CHUNK]
            sim = self.content_[chunk] @ pool_content.T
            sim[chunk[:, None] == polls[pool][None, :]] = -np.inf
            top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
            weight = np.maximum(np.take_along_axis(sim, top, axis=1), 0.0)
            total = weight.sum(1, keepdims=True)
            np.divide(weight, total, out=weight, where=total > 0)
            rows.append(np.repeat(np.arange(start, start + len(chunk)), k))
            cols.append(pool[top].ravel())  # positions in B
            vals.append(weight.ravel())
        return sp.csr_matrix(
            (np.concatenate(vals).astype(np.float32),
             (np.concatenate(rows), np.concatenate(cols))),
            shape=(len(idx), n_b))

    def _user_poll_matrix(self, users: np.ndarray, items: np.ndarray) -> sp.csr_matrix:
        """Users x B's polls. Binary, as EASE's strongest weighting on vote data: a poll
        is touched or not."""
        x = sp.csr_matrix((np.ones(len(users)), (users, items)),
                          shape=(len(self.user_ids_), len(self.item_ids_)))
        x.sum_duplicates()
        x.data[:] = 1.0
        polls = getattr(self, "item_item_polls_", None)
        if polls is not None and len(polls) < x.shape[1]:
            x = x[:, polls]
        return x

    def _item_item_weights(self, users: np.ndarray, items: np.ndarray, l2: float
                           ) -> np.ndarray:
        from recsys.ease import ease_weights

        return ease_weights(self._user_poll_matrix(users, items), l2).astype(np.float32)

    def _choose_item_item_l2(self, users: np.ndarray, items: np.ndarray, keep: np.ndarray,
                             is_target: np.ndarray) -> float:
        """The lambda of :data:`ITEM_ITEM_L2_GRID` with the best validation NDCG@10."""
        from sklearn.metrics import ndcg_score

        from recsys.ease import ease_regularization_path

        x = self._user_poll_matrix(users[keep], items[keep])
        rows = np.unique(users[is_target])[:ITEM_ITEM_TUNING_USERS]
        truth = self._user_poll_matrix(users[is_target], items[is_target])[rows]
        seen = x[rows]
        truth = truth - truth.multiply(seen)  # a poll already voted on is not a target
        truth.eliminate_zeros()
        has_target = np.diff(truth.indptr) > 0
        if not has_target.any():
            return ITEM_ITEM_DEFAULT_L2
        truth = truth[has_target].toarray()
        best, best_score = ITEM_ITEM_DEFAULT_L2, -1.0
        for l2, scores in ease_regularization_path(x, ITEM_ITEM_L2_GRID, rows[has_target]):
            scores = np.asarray(scores)
            # Seen polls go to the bottom, as a feed leaves them out.
            scores[seen[has_target].nonzero()] = scores.min() - 1.0
            score = ndcg_score(truth, scores, k=ITEM_ITEM_TUNING_DEPTH)
            if score > best_score:
                best, best_score = l2, score
        return best

    def _item_item_scores(self, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """``weights @ B[items]`` over every poll (poll-id order)."""
        return self._item_item_spread(self._item_item_own(items, weights))

    def _item_item_own(self, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """``weights @ B[items]`` over B's polls."""
        b = self.item_item_
        polls = self.item_item_polls_
        # Polls outside B (past the active window, or added after fit) have no row of
        # B: their events say nothing here.
        at = np.minimum(np.searchsorted(polls, items), len(polls) - 1)
        inside = polls[at] == items
        at, weights = at[inside], weights[inside].astype(np.float32)
        if len(at) <= ITEM_ITEM_GATHER_MAX_POLLS:
            own = weights @ b[at]
        else:
            dense = np.zeros(len(b), np.float32)
            np.add.at(dense, at, weights)
            own = dense @ b
        return own

    def _item_item_spread(self, own: np.ndarray) -> np.ndarray:
        """Scores over B's polls to scores over every poll (poll-id order); linear."""
        polls = self.item_item_polls_
        neighbours = getattr(self, "item_item_neighbours_", None)
        row = np.zeros(len(self.item_ids_), np.float32)
        if neighbours is not None:
            # A poll without a column of B takes its content neighbours' scores.
            row[:neighbours.shape[0]] = neighbours @ own
            # B's polls are shrunk towards them by how cold each is. A convex mix, not
            # an addition: a warm poll's own column already says it all (adding the
            # borrowed score lowered cold-poll recall on the demo data).
            own = own + self._coldness[polls] * (row[polls] - own)
        row[polls] = own
        return row

    def _item_item_serving_row(self, user_id: str | None) -> np.ndarray | None:
        """Both item-item features, blend-weighted, in one pass (poll-id order).

        Spreading scores to the polls outside B (a sparse product over the catalog) is
        linear, so the two features are summed over B's polls and spread once: at
        50,000 polls that product is most of the component's cost per request."""
        if getattr(self, "item_item_", None) is None or user_id is None:
            return None
        own = np.zeros(len(self.item_item_), np.float32)
        items = self.interacted_.get(user_id)
        recent = self._item_item_recent_events(user_id)
        if (items is None or not len(items)) and recent is None:
            return None
        if self.blend_["item_item"] and items is not None and len(items):
            own += self.blend_["item_item"] * self._item_item_own(
                items, np.ones(len(items), np.float32))
        if self.blend_["item_item_recent"] and recent is not None:
            own += self.blend_["item_item_recent"] * self._item_item_own(*recent)
        return self._item_item_spread(own)

    def _item_item_recent_events(self, user_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        """The user's latest events and their weights in the recent item-item feature."""
        recent = self.recent_.get(user_id)
        if recent is None or not len(recent[0]):
            return None
        items, weights, _ = recent
        newer = np.arange(len(items))[::-1]  # events are kept in time order
        return items, weights * 0.5 ** (newer / ITEM_ITEM_RECENT_HALF_LIFE_EVENTS)

    def _item_item_row(self, user_id: str | None) -> np.ndarray | None:
        """EASE's scores for the user (poll-id order): the sum of the B rows of every poll
        they touched, as EASE was trained (binary); None without B or history."""
        if getattr(self, "item_item_", None) is None or user_id is None:
            return None
        items = self.interacted_.get(user_id)
        if items is None or not len(items):
            return None
        return self._item_item_scores(items, np.ones(len(items), np.float32))

    def _item_item_recent_row(self, user_id: str | None) -> np.ndarray | None:
        """Item-item scores from the user's latest events only, each weighted by its event
        type and halved every :data:`ITEM_ITEM_RECENT_HALF_LIFE_EVENTS` newer events."""
        if getattr(self, "item_item_", None) is None or user_id is None:
            return None
        recent = self._item_item_recent_events(user_id)
        return None if recent is None else self._item_item_scores(*recent)

    # ------------------------------------------------------------------ metadata
    def _item_texts(self, items: Mapping[str, Mapping[str, Any]], ids: Sequence[str]) -> list[str]:
        texts = []
        for item_id in ids:
            meta = items.get(item_id, {})
            parts = [str(meta[f]) for f in self.text_fields if meta.get(f)]
            texts.append(" \n ".join(parts))
        return texts

    def _fit_metadata(self, items: Mapping[str, Mapping[str, Any]]) -> None:
        self.categorical_index_: dict[str, int] = {}
        for meta in items.values():
            for key in self._item_keys(meta):
                self.categorical_index_.setdefault(key, len(self.categorical_index_))
        texts = self._item_texts(items, self.item_ids_)
        if self.use_text and self.text_fields:
            self.encoder_: TextEncoder | None = self.text_encoder or TfidfSvdEncoder(
                random_state=self.random_state)
            # Polls known only from events have no text; they must not shape the encoder.
            described = np.fromiter((i in items for i in self.item_ids_), bool,
                                    len(self.item_ids_))
            text = np.zeros((len(texts), 0), np.float32)
            if isinstance(self.encoder_, TfidfSvdEncoder) and described.all():
                text = self.encoder_.fit_transform(texts)  # one pass over the texts
            else:
                self.encoder_.fit([t for t, d in zip(texts, described) if d])
                text = self.encoder_.transform(texts)
        else:
            self.encoder_ = None
            text = np.zeros((len(texts), 0), np.float32)
        categorical = self._categorical_matrix(items, self.item_ids_)
        features = self._side_features(text, categorical)

        warm = self._train_counts >= WARM_ITEM_MIN_INTERACTIONS
        self.ridge_coef_ = np.zeros((self.factors, features.shape[1]), np.float32)
        self.ridge_intercept_ = self._als_items[warm].mean(0) if warm.any() else np.zeros(
            self.factors, np.float32)
        if warm.sum() >= 2:
            self.ridge_coef_, self.ridge_intercept_ = _ridge(
                features[warm], self._als_items[warm], METADATA_RIDGE_ALPHA)
        predicted = self._predict_factors(features)
        shrink = (self._train_counts / (self._train_counts + COLD_ITEM_PRIOR_STRENGTH))[:, None]
        self.item_factors_ = (shrink * self._als_items + (1 - shrink) * predicted).astype(
            np.float32)
        self.content_ = self._content(text, categorical)
        self._segment_factors()

    def _item_keys(self, meta: Mapping[str, Any]) -> list[str]:
        return [f"{field}={v}" for field in self.item_categorical_fields
                for v in _categorical_values(meta.get(field))]

    def _encode(self, items: Mapping[str, Mapping[str, Any]], ids: Sequence[str]) -> np.ndarray:
        if self.encoder_ is None:
            return np.zeros((len(ids), 0), np.float32)
        return self.encoder_.transform(self._item_texts(items, ids))

    def _categorical_matrix(self, items: Mapping[str, Mapping[str, Any]],
                            ids: Sequence[str]) -> sp.csr_matrix:
        rows, cols = [], []
        for r, item_id in enumerate(ids):
            for key in self._item_keys(items.get(item_id, {})):
                c = self.categorical_index_.get(key)
                if c is not None:
                    rows.append(r)
                    cols.append(c)
        data = np.ones(len(rows), np.float32)
        matrix = sp.csr_matrix((data, (rows, cols)),
                               shape=(len(ids), len(self.categorical_index_)))
        # Each field's values share one unit of weight so multi-valued polls don't dominate.
        norms = np.sqrt(np.asarray(matrix.sum(1)).ravel())
        norms[norms == 0] = 1
        return sp.csr_matrix(sp.diags(1 / norms) @ matrix)

    @staticmethod
    def _side_features(text: np.ndarray, categorical: sp.csr_matrix) -> sp.csr_matrix:
        return sp.hstack([sp.csr_matrix(text), categorical], format="csr", dtype=np.float32)

    def _predict_factors(self, features: sp.csr_matrix) -> np.ndarray:
        return np.asarray(features @ self.ridge_coef_.T, np.float32) + self.ridge_intercept_

    def _content_columns(self) -> np.ndarray:
        # Only fields with few values (CATEGORY, not AUTHOR_ID) describe a poll's topic;
        # many-valued ones would make the dense content matrix wide and say little.
        per_field: dict[str, list[int]] = {}
        for key, col in self.categorical_index_.items():
            per_field.setdefault(key.split("=", 1)[0], []).append(col)
        cols = [c for cs in per_field.values() if len(cs) <= CONTENT_MAX_FIELD_VALUES
                for c in cs]
        return np.array(sorted(cols), np.int64)

    def _content(self, text: np.ndarray, categorical: sp.csr_matrix) -> np.ndarray:
        # Text and topic categories together describe what a user's interests look like.
        # The columns are fixed once fitted (ingest adds no category values); worked out
        # again per call they were half the cost of ingesting one poll at 50k polls.
        cached = getattr(self, "_content_cols", None)
        if cached is None or cached[0] is not self.categorical_index_ or cached[1] != len(
                self.categorical_index_):
            cached = (self.categorical_index_, len(self.categorical_index_),
                      self._content_columns())
            self._content_cols = cached
        dense = np.hstack([text, categorical[:, cached[2]].toarray()]).astype(np.float32)
        norms = np.linalg.norm(dense, axis=1, keepdims=True)
        np.divide(dense, norms, out=dense, where=norms > 0)
        return dense

    def _segment_factors(self) -> None:
        n_seg = len(self.segment_ids_)
        self.segment_factors_ = np.zeros((n_seg, self.factors), np.float32)
        members = np.zeros(n_seg)
        for user_id, segs in self.user_segments_.items():
            u = self.user_index_.get(user_id)
            if u is None or u >= len(self._als_users):
                continue
            for s in segs:
                self.segment_factors_[s] += self._als_users[u]
                members[s] += 1
        self.segment_factors_ /= np.maximum(members, 1)[:, None]
        self.global_user_factor_ = self._als_users.mean(0).astype(np.float32)

    def _set_counts(self, users: np.ndarray, items: np.ndarray) -> None:
        n_items = len(self.item_ids_)
        self.counts_ = np.bincount(items, minlength=n_items).astype(np.float32)
        n_seg = len(self.segment_ids_)
        seg_counts = np.zeros((max(n_seg, 1), n_items), np.float32)
        seg_totals = np.zeros(max(n_seg, 1), np.float32)
        seg_of_user = [self.user_segments_.get(uid, []) for uid in self.user_ids_]
        if n_seg:
            rows, cols = [], []
            for u, segs in enumerate(seg_of_user):
                for s in segs:
                    rows.append(s)
                    cols.append(u)
            membership = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                                       shape=(n_seg, len(self.user_ids_)))
            ui = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)),
                               shape=(len(self.user_ids_), n_items))
            seg_counts = np.asarray((membership @ ui).todense(), np.float32)
            seg_totals = seg_counts.sum(1)
        # lift = P(item | segment) / P(item), smoothed, in log space
        total = self.counts_.sum()
        p_item = (self.counts_ + SEGMENT_SMOOTHING) / (total + SEGMENT_SMOOTHING * n_items)
        p_seg = (seg_counts + SEGMENT_SMOOTHING) / (
            seg_totals[:, None] + SEGMENT_SMOOTHING * n_items)
        self.segment_lift_ = np.log(p_seg / p_item[None, :]).astype(np.float32)
        if not n_seg:
            self.segment_lift_ = np.zeros((0, n_items), np.float32)

    def _count_impression(self, item_ids: Iterable[str]) -> None:
        # map() keeps the per-id lookup in C: fits count millions of impressions.
        idx = np.fromiter(map(self.item_index_.get, item_ids, repeat(-1)), np.int64)
        idx = idx[idx >= 0]
        if len(idx):
            self.impressions_ += np.bincount(idx, minlength=len(self.impressions_))
            if hasattr(self, "_explore_base"):  # serving rows exist once fitted
                self._refresh_polls(np.unique(idx))

    def _set_history(self, users: np.ndarray, items: np.ndarray, weights: np.ndarray,
                     stamps: np.ndarray, keep: np.ndarray) -> None:
        """Per user: all polls interacted with, and the latest events (time order)."""
        self.interacted_: dict[str, np.ndarray] = {}
        self.recent_: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        idx = np.flatnonzero(keep)
        order = idx[np.argsort(users[idx], kind="stable")]
        bounds = np.flatnonzero(np.diff(users[order])) + 1
        for group in np.split(order, bounds):
            if not len(group):
                continue
            user_id = self.user_ids_[int(users[group[0]])]
            self.interacted_[user_id] = np.unique(items[group]).astype(np.int32)
            tail = group[-self.max_recent_events:]
            self.recent_[user_id] = (items[tail].astype(np.int32),
                                     weights[tail].astype(np.float32),
                                     stamps[tail].astype(np.int64))

    # ------------------------------------------------------------------ blend
    def _learn_blend(self, users: np.ndarray, items: np.ndarray, stamps: np.ndarray,
                     is_target: np.ndarray) -> None:
        """Fit the blend weights as a logistic regression on validation users' targets."""
        from sklearn.linear_model import LogisticRegression

        self._refresh_static()
        rng = np.random.default_rng(self.random_state + 1)
        n_items = len(self.item_ids_)
        targets: dict[int, set[int]] = {}
        for u, i in zip(users[is_target].tolist(), items[is_target].tolist()):
            targets.setdefault(u, set()).add(i)
        rows: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        for u, relevant in targets.items():
            user_id = self.user_ids_[u]
            recent = self.recent_.get(user_id)
            if recent is None:
                continue
            t_ref = float(recent[2][-1])
            features, ages = self._features(user_id, t_ref)
            relevant_arr = np.fromiter(relevant, np.int64)
            relevant_arr = relevant_arr[~np.isin(relevant_arr, self.interacted_[user_id])]
            if not len(relevant_arr):
                continue
            score = self._combine(features, ages)
            score[self.interacted_[user_id]] = -np.inf
            top = np.argpartition(-score, min(VALIDATION_CANDIDATES, n_items - 1))[
                :VALIDATION_CANDIDATES]
            hard = np.setdiff1d(top, relevant_arr)
            hard = rng.choice(hard, size=min(HARD_NEGATIVES, len(hard)), replace=False)
            rand = rng.integers(0, n_items, RANDOM_NEGATIVES)
            rand = np.setdiff1d(rand, np.concatenate([relevant_arr, self.interacted_[user_id]]))
            chosen = np.concatenate([relevant_arr, hard, rand])
            rows.append(self._design(features[:, chosen], ages[chosen]))
            labels.append(np.r_[np.ones(len(relevant_arr)), np.zeros(len(hard) + len(rand))])
        if len(rows) < MIN_VALIDATION_USERS:
            return
        X = np.vstack(rows)
        y = np.concatenate(labels)
        model = LogisticRegression(C=1.0, fit_intercept=True, max_iter=500)
        model.fit(X, y)
        coef = model.coef_.ravel().copy()
        # Every row has exactly one age step, so the unpenalised intercept belongs to each
        # step's weight; without it L2 pulled a rarely seen step towards 0, i.e. above the
        # well-seen (negative) steps, and old polls outranked new ones on small data.
        coef[len(_FEATURES):] += model.intercept_[0]
        # A negative weight on an affinity would say "show what the user dislikes": that
        # is validation noise, never a preference, so it is floored at zero.
        for j, name in enumerate(_FEATURES):
            self.blend_[name] = max(0.0, float(coef[j])) if name in (
                "collaborative", "content", "item_item", "item_item_recent") else float(coef[j])
        # An age step no validation poll fell in (e.g. older than the whole dataset) has
        # an untrained weight of 0; it takes the weight of the nearest step that was seen.
        seen = np.flatnonzero(X[:, len(_FEATURES):].sum(0) > 0)
        steps = np.arange(len(POLL_AGE_EDGES_DAYS) + 1)
        self.age_weights_ = np.interp(steps, seen, coef[len(_FEATURES):][seen]).astype(
            np.float32)
        if not self.use_recency:
            self.age_weights_[:] = 0
        self.validation_size_ = {"users": len(rows), "rows": int(len(y))}

    def _design(self, features: np.ndarray, ages: np.ndarray) -> np.ndarray:
        one_hot = np.zeros((len(ages), len(POLL_AGE_EDGES_DAYS) + 1))
        one_hot[np.arange(len(ages)), ages] = 1
        if not self.use_recency:
            one_hot[:] = 1  # a bare intercept
        return np.hstack([features.T, one_hot])

    # ------------------------------------------------------------------ serving
    def _refresh_static(self) -> None:
        """Cache the per-poll arrays every request reads.

        Serving works in creation order: the poll-age term is then a few constant runs
        (one slice add per age step instead of a search per poll), and the polls young
        enough for exploration are one contiguous tail. Only the top-n positions are
        mapped back to poll ids.
        """
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
        self._matrix = np.empty((len(self.item_ids_), k + self.content_.shape[1]), np.float32)
        self._bias = np.empty(len(self.item_ids_), np.float32)
        self._explore_base = np.empty(len(self.item_ids_), np.float32)
        self._refresh_polls(np.arange(len(self.item_ids_)))

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

    def _refresh_polls(self, idx: np.ndarray) -> None:
        """Rewrite the serving rows of polls ``idx`` (poll-id order) from the blend."""
        b = self.blend_
        k = self.factors
        cold = self._coldness[idx]
        pos = self._position[idx]
        # Both affinities are scaled per poll by its coldness, so the blend's
        # cold-interaction terms stay inside the one matrix-vector product.
        self._matrix[pos, :k] = self.item_factors_[idx] * (
            b["collaborative"] + b["cold_collaborative"] * cold)[:, None]
        self._matrix[pos, k:] = self.content_[idx] * (
            b["content"] + b["cold_content"] * cold)[:, None]
        self._bias[pos] = (b["popularity"] * self._popularity[idx]
                           + b["appeal"] * self._appeal[idx] + b["coldness"] * cold)
        exposure = self.impressions_[idx] + self.counts_[idx]
        self._explore_base[pos] = 1.0 / np.sqrt(1.0 + exposure)

    def _poll_changed(self, i: int) -> None:
        """Counts of poll ``i`` moved: update its statics and serving row in place."""
        idx = np.array([i])
        self._popularity[i] = math.log1p(self.counts_[i])
        self._coldness[i] = COLD_ITEM_PRIOR_STRENGTH / (COLD_ITEM_PRIOR_STRENGTH + self.counts_[i])
        self._appeal[i] = self._appeal_of(idx, self._engagement_reached(idx))[0]
        self._refresh_polls(idx)

    def _user_state(self, user_id: str | None) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """(collaborative vector, content profile, segments) for the user, solved from
        their latest events (a fold-in) or from their segments when they have none."""
        segs = self.user_segments_.get(user_id, []) if user_id is not None else []
        recent = self.recent_.get(user_id) if user_id is not None else None
        if recent is None or not len(recent[0]):
            if segs:
                vector = self.segment_factors_[segs].mean(0)
            else:
                vector = self.global_user_factor_
            return vector, np.zeros(self.content_.shape[1], np.float32), segs
        items, weights, _ = recent
        # Sum the weights of repeated events on one poll, as training did.
        uniq, inverse = np.unique(items, return_inverse=True)
        w = np.zeros(len(uniq), np.float64)
        np.add.at(w, inverse, weights)
        y = self.item_factors_[uniq].astype(np.float64)
        confidence = ALS_ALPHA * w
        a = self._yty + (y.T * (confidence - 1)) @ y
        a[np.diag_indices_from(a)] += self.regularization
        vector = np.linalg.solve(a, y.T @ confidence).astype(np.float32)
        profile = (w[:, None] * self.content_[uniq]).sum(0)
        norm = np.linalg.norm(profile)
        if norm > 0:
            profile = profile / norm
        return vector, profile.astype(np.float32), segs

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
        """Feature rows (see ``_FEATURES``) × polls in poll-id order, and the poll-age
        bucket of each poll; used to learn the blend."""
        vector, profile, segs = self._user_state(user_id)
        collaborative = self.item_factors_ @ vector
        content = self.content_ @ profile
        segment = (self.segment_lift_[segs].mean(0) if segs
                   else np.zeros(len(self.item_ids_), np.float32))
        ages = np.searchsorted(self._age_edges, t_ref - self.creation_, side="right")
        cold = self._coldness
        item_item = self._item_item_row(user_id)
        if item_item is None:
            item_item = np.zeros(len(self.item_ids_), np.float32)
        recent_ii = self._item_item_recent_row(user_id)
        if recent_ii is None:
            recent_ii = np.zeros(len(self.item_ids_), np.float32)
        rows = {"collaborative": collaborative, "content": content, "item_item": item_item,
                "item_item_recent": recent_ii,
                "popularity": self._popularity, "appeal": self._appeal, "segment": segment,
                "coldness": cold, "cold_collaborative": collaborative * cold,
                "cold_content": content * cold}
        return np.vstack([rows[f] for f in _FEATURES]), ages

    def _combine(self, features: np.ndarray, ages: np.ndarray) -> np.ndarray:
        weights = np.array([self.blend_[f] for f in _FEATURES], np.float32)
        return weights @ features + self.age_weights_[ages]

    def _segment_row(self, segs: Sequence[int]) -> np.ndarray:
        """The blend-weighted mean segment lift of a segment set, in serving order."""
        segs = tuple(sorted(segs))
        # The weight is part of the key: the follow-impact curve rescales it in place.
        key = (float(self.blend_["segment"]), *segs)
        row = self._segment_rows.get(key)
        if row is not None and len(row) < len(self._order):
            # Polls appended since (_extend_serving) have no segment lift yet.
            row = np.concatenate([row, np.zeros(len(self._order) - len(row), np.float32)])
            self._segment_rows[key] = row
        if row is None:
            row = (key[0] * self.segment_lift_[list(segs)].mean(0))[
                self._order].astype(np.float32)
            self._segment_rows[key] = row
            if len(self._segment_rows) > SEGMENT_ROW_CACHE_SIZE:
                self._segment_rows.popitem(last=False)
        else:
            self._segment_rows.move_to_end(key)
        return row

    def _add_age_term(self, score: np.ndarray, t_ref: float) -> None:
        """Add each poll's age-step weight to ``score`` (serving order) in place."""
        # A poll is in step j when its age passed j edges, i.e. it was created at or
        # before t_ref - edge for j edges; in creation order each step is one run.
        cuts = np.searchsorted(self._sorted_creation, t_ref - self._age_edges, side="right")
        bounds = np.r_[0, cuts[::-1], len(score)]
        for step, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            if hi > lo:
                score[lo:hi] += self.age_weights_[len(self._age_edges) - step]

    def _serving_scores(self, user_id: str | None, t_ref: float) -> np.ndarray:
        """Blend scores without exploration, in serving (creation) order."""
        b = self.blend_
        if any(b[f] for f in ("collaborative", "cold_collaborative", "content", "cold_content")):
            vector, profile, segs = self._user_state(user_id)
            q = np.concatenate([vector, profile]).astype(np.float32)
            score = self._matrix @ q
            score += self._bias
        else:
            # A blend that learned no weight for either affinity has an all-zero matrix:
            # the fold-in and the catalog-wide product (most of a request's cost) would
            # only add zeros.
            segs = self.user_segments_.get(user_id, []) if user_id is not None else []
            score = self._bias.copy()
        if segs and self.blend_["segment"]:
            score += self._segment_row(segs)
        if self.blend_["item_item"] or self.blend_["item_item_recent"]:
            row = self._item_item_serving_row(user_id)
            if row is not None:
                score += row[self._order]
        if self.use_recency:
            self._add_age_term(score, t_ref)
        return score

    @staticmethod
    def _exploration_scale(score: np.ndarray) -> float:
        """The bonus of an unseen new poll at weight 1 for a request with these scores."""
        finite = score[np.isfinite(score)]
        if not len(finite):
            return EXPLORATION_BONUS_SCALE
        return max(EXPLORATION_BONUS_SCALE, float(finite.max() - finite.mean()))

    def _exploration_tail(self, user_id: str | None, now: float | None, scale: float
                          ) -> tuple[int, np.ndarray]:
        """(first serving position eligible for exploration, bonus of each eligible)."""
        horizon = float(now) if now is not None else float(self.newest_timestamp_)
        cutoff = horizon - self.exploration_item_age_cutoff_days * SECONDS_PER_DAY
        start = int(np.searchsorted(self._sorted_creation, cutoff, side="left"))
        # Seeded per (model seed, user, moment): repeatable, yet varies between users.
        seed = [self.random_state, zlib.crc32((user_id or "").encode()), int(horizon)]
        rng = np.random.default_rng(seed)
        noise = rng.random(len(self._order) - start, dtype=np.float32)
        noise *= 2 * EXPLORATION_NOISE
        noise += 1 - EXPLORATION_NOISE
        noise *= self._explore_base[start:]
        noise *= self.exploration_weight * scale
        return start, noise

    def exploration_bonus(self, user_id: str | None = None, now: float | None = None
                          ) -> np.ndarray:
        """The per-poll exploration bonus the next request would add (0 when weight 0),
        in ``item_ids_`` order."""
        self._require_fitted()
        bonus = np.zeros(len(self.item_ids_), np.float32)
        if self.exploration_weight <= 0:
            return bonus
        score = self._serving_scores(user_id, self._reference_time(user_id, now))
        start, tail = self._exploration_tail(user_id, now, self._exploration_scale(score))
        bonus[self._order[start:]] = tail
        return bonus

    def _final_scores(self, user_id: str | None, now: float | None) -> np.ndarray:
        # One feed page asks for the same user's scores more than once (regular and
        # promoted slots): the last answer is kept until the model changes.
        key = (user_id, now, getattr(self, "_version", 0), self.exploration_weight,
               self.exploration_item_age_cutoff_days, self.use_recency,
               tuple(self.blend_.values()))  # weights read live at serving may be rescaled
        cached = getattr(self, "_last_scores", None)
        if cached is not None and cached[0] == key:
            return cached[1].copy()
        score = self._serving_scores(user_id, self._reference_time(user_id, now))
        if self.exploration_weight > 0:
            start, tail = self._exploration_tail(user_id, now, self._exploration_scale(score))
            score[start:] += tail
        self._last_scores = (key, score.copy())
        return score

    def _changed(self) -> None:
        """Something the scores depend on moved: forget the cached scores."""
        self._version = getattr(self, "_version", 0) + 1

    def score_all(self, user_id: str | None, *, now: float | None = None) -> np.ndarray:
        """Every poll's score for the user (exploration included), in ``item_ids_`` order."""
        self._require_fitted()
        return self._final_scores(user_id, now)[self._position]

    def recommend(
        self,
        user_id: str | None,
        n: int = 25,
        *,
        now: float | None = None,
        exclude: Collection[str] = (),
        allow: Callable[[str], bool] | None = None,
    ) -> list[ScoredItem]:
        """Top ``n`` polls for the user, best first (see the Recipe protocol)."""
        self._require_fitted()
        score = self._final_scores(user_id, now)
        if self.exclude_interacted and user_id in self.interacted_:
            score[self._position[self.interacted_[user_id]]] = -np.inf
        if exclude:
            idx = [self.item_index_[i] for i in exclude if i in self.item_index_]
            score[self._position[idx]] = -np.inf
        n = max(0, int(n))
        out: list[ScoredItem] = []
        if n == 0:
            return out
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
            head = np.argpartition(-score, depth - 1)[:depth] if depth < len(score) else \
                np.arange(len(score))
            where = head if positions is None else positions[head]
            # Ties break by poll id order, as a sort over the catalog would.
            rank = np.lexsort((self._order[where], -score[head]))
            out = []
            for s, p in zip(score[head[rank]].tolist(), where[rank].tolist()):
                if not math.isfinite(s):
                    break
                item_id = self.item_ids_[self._order[p]]
                if allow is not None and not allow(item_id):
                    continue
                out.append(ScoredItem(item_id, s))
                if len(out) == n:
                    return out
            if depth >= len(score):
                return out
            depth = min(len(score), depth * 4)

    # ------------------------------------------------------------------ streaming
    def observe(self, events: Iterable[Interaction | Impression]) -> None:
        """Fold streamed interactions and impressions in at once, without retraining."""
        self._require_fitted()
        self._changed()
        for event in events:
            if isinstance(event, Impression):
                self._count_impression(event.item_ids)
                continue
            if self.event_values is not None and not self.event_values.keeps(event):
                continue  # below its type's value threshold: not trained on, as in fit
            if event.item_id not in self.item_index_:
                # An unknown poll is new: it becomes recommendable from this moment.
                self.add_items({event.item_id: {"CREATION_TIMESTAMP": event.timestamp}})
            i = self.item_index_[event.item_id]
            self.counts_[i] += 1
            if event.impression:
                self._count_impression(event.impression)
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
            seen = self.interacted_.get(event.user_id, np.zeros(0, np.int32))
            self.interacted_[event.user_id] = np.union1d(seen, [i]).astype(np.int32)

    def add_items(self, items: Mapping[str, Mapping[str, Any]]) -> None:
        """Make new polls recommendable at once, scored from their metadata and text.

        Incremental: only the new polls are encoded and given serving rows (appended to
        arrays with spare capacity), so ingesting one poll at 50k polls costs a few ms
        under the serving lock, not a pass over the catalog (100-150 ms). A poll older
        than the newest one, or a known poll whose creation time changed, rebuilds the
        creation order instead."""
        self._require_fitted()
        self._changed()
        new = [i for i in items if i not in self.item_index_]
        known = [i for i in items if i in self.item_index_]
        ids = new + known
        if not ids:
            return
        text = self._encode(items, ids)
        categorical = self._categorical_matrix(items, ids)
        predicted = self._predict_factors(self._side_features(text, categorical))
        content = self._content(text, categorical)
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
            if getattr(self, "item_item_neighbours_", None) is not None:
                # A new poll has no EASE column: its item-item score is all borrowed.
                self.item_item_neighbours_ = sp.vstack([
                    self.item_item_neighbours_,
                    self._content_neighbours(np.arange(len(self.item_ids_) - n_new,
                                                       len(self.item_ids_)))], format="csr")
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
        self._append("_matrix", np.zeros((n_new, self._matrix.shape[1]), np.float32))
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
            "random_state": self.random_state,
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
        }
        (directory / "model.json").write_text(json.dumps(state))
        np.savez(
            directory / "model.npz",
            item_factors=self.item_factors_, content=self.content_, creation=self.creation_,
            counts=self.counts_, impressions=self.impressions_,
            segment_lift=self.segment_lift_, segment_factors=self.segment_factors_,
            global_user_factor=self.global_user_factor_, age_weights=self.age_weights_,
            engagement_curve=self.engagement_curve_,
            ridge_coef=self.ridge_coef_, ridge_intercept=self.ridge_intercept_,
            item_item=self.item_item_ if self.item_item_ is not None
            else np.zeros((0, 0), np.float32),
            item_item_pool=self.item_item_pool_,
            item_item_polls=getattr(self, "item_item_polls_", np.zeros(0, np.int64)),
            **self._neighbour_arrays(),
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

    def _neighbour_arrays(self) -> dict[str, np.ndarray]:
        n = getattr(self, "item_item_neighbours_", None)
        if n is None:
            return {"neighbours_indptr": np.zeros(0, np.int64)}
        return {"neighbours_data": n.data, "neighbours_indices": n.indices,
                "neighbours_indptr": n.indptr, "neighbours_shape": np.array(n.shape)}

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
        model.newest_timestamp_ = state["newest_timestamp"]
        model._clock = EventClock([model.newest_timestamp_],
                                  max_lead_seconds=AGE_CLOCK_MAX_LEAD_SECONDS)
        model.item_item_l2_ = state.get("item_item_l2", ITEM_ITEM_DEFAULT_L2)
        model.encoder_ = load_encoder(directory / "text_encoder") if state["has_encoder"] \
            else None
        with np.load(directory / "model.npz") as a:
            for name in ("item_factors", "content", "creation", "counts", "impressions",
                         "segment_lift", "segment_factors", "global_user_factor",
                         "age_weights", "ridge_coef", "ridge_intercept", "engagement_curve"):
                setattr(model, name + "_", a[name])
            b = a["item_item"] if "item_item" in a.files else np.zeros((0, 0), np.float32)
            model.item_item_ = b if b.size else None
            # Models saved before the active window covered the whole catalog.
            model.item_item_polls_ = a["item_item_polls"] if "item_item_polls" in a.files \
                else np.arange(len(b))
            model.item_item_pool_ = a["item_item_pool"] if "item_item_pool" in a.files \
                else np.zeros(0, np.int64)
            model.item_item_neighbours_ = None
            if "neighbours_indptr" in a.files and len(a["neighbours_indptr"]):
                model.item_item_neighbours_ = sp.csr_matrix(
                    (a["neighbours_data"], a["neighbours_indices"], a["neighbours_indptr"]),
                    shape=tuple(a["neighbours_shape"]))
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
        for name in ("item_factors_", "content_", "_matrix"):
            self._append(name, np.zeros((0, getattr(self, name).shape[1]), np.float32))
        self._append("segment_lift_", np.zeros((len(self.segment_lift_), 0), np.float32),
                     axis=1)
        for name in ("creation_", "counts_", "impressions_", "_order", "_position",
                     "_sorted_creation", "_popularity", "_coldness", "_appeal", "_bias",
                     "_explore_base"):
            self._append(name, none)
