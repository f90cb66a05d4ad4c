"""Every default of User-Personalization, and what chose it (issue 14's discipline).

Each of UP's constructor parameters and named settings (settings.py, blend.py, the text
encoder's and the event clock's constants it uses) has one entry here: its value, whether
it is **chosen in fit** (on the training users' validation split, never on anyone held out
of ``fit``) or **frozen**, and for a frozen one the data that chose it:

- a development dataset of docs/public-data.md (``movielens-100k``, ``demo``);
- ``prior-art``: a paper's, Amazon Personalize's or a library's documented default;
- ``unrecorded``: no code comment, doc or commit names the data. Every such value was set
  before the confirmation datasets were pinned (a692f3c, 2026-12-03 15:00), when only the
  demo and MovieLens 100k were in use, so it can only have seen development data;
- ``none``: not a modelling choice (a unit, a schema field list, a seed, a memory or
  speed bound that leaves the scores unchanged).

A confirmation dataset (MovieLens 1M, Amazon Beauty, Yelp) never appears:
tests/recsys/test_up_defaults.py fails when a parameter or setting has no entry, when an
entry's value differs from the code's, and when an entry names a dataset
docs/public-data.md lists as confirmation. docs/up-defaults.md is generated from this
table: ``python -m recsys.recipes.user_personalization.defaults > docs/up-defaults.md``.
"""

from __future__ import annotations

import importlib
import inspect
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

IN_FIT = "chosen in fit"
FROZEN = "frozen"
Chosen = Literal["chosen in fit", "frozen"]

# Sources that are not datasets (see the module docstring).
PRIOR_ART = "prior-art"
UNRECORDED = "unrecorded"
NONE = "none"
NOT_DATA: frozenset[str] = frozenset({PRIOR_ART, UNRECORDED, NONE})

# Where a name lives: "UserPersonalization" for a constructor parameter, else a module.
CONSTRUCTOR = "UserPersonalization"
SETTINGS = "recsys.recipes.user_personalization.settings"
BLEND = "recsys.recipes.user_personalization.blend"
COMPONENTS = "recsys.recipes.user_personalization.components"
TEXT = "recsys.text"
CLOCK = "recsys.recipes.clock"


@dataclass(frozen=True)
class Default:
    name: str
    where: str
    value: Any
    chosen: Chosen
    data: tuple[str, ...]
    reason: str

    def live_value(self) -> Any:
        """The value the code has now."""
        if self.where == CONSTRUCTOR:
            from recsys.recipes.user_personalization.model import UserPersonalization

            return inspect.signature(UserPersonalization.__init__).parameters[
                self.name].default
        return getattr(importlib.import_module(self.where), self.name)


def _d(name: str, where: str, value: Any, chosen: Chosen, data: tuple[str, ...] | str,
       reason: str) -> Default:
    return Default(name, where, value, chosen, (data,) if isinstance(data, str) else data,
                   reason)


ML100K = "movielens-100k"
DEMO = "demo"
TOYS = "amazon-toys"
SPORTS = "amazon-sports"
LASTFM = "hetrec-lastfm-2k"
YELP = "yelp-sequences"

_COMPONENTS = ("collaborative", "content", "popularity", "segments", "item_item", "recency",
               "exploration", "sequence", "walk", "rerank")
_TEXT_FIELDS = ("QUESTION", "OPTIONS", "DESCRIPTION", "OPTION_DESCRIPTIONS", "COMMENTS")
_FALLBACK = ("the fallback when the validation split has fewer than "
             "MIN_VALIDATION_USERS users or learn_blend=False; the fallback value is "
             "hand-set (dd3cc95), no data recorded. Measured 2026-12-06: wherever 10 or "
             "more validation users can be drawn, a learned blend beats it by 0.06-0.28 "
             "NDCG@10 (see MIN_VALIDATION_USERS)")

# How the values hand-set in dd3cc95 were measured in session 23.
_MEASURED = ("measured 2026-12-06 (docs/public-data.md, 'The unrecorded defaults'; 5 folds, "
             "UP with the value minus UP at the default, NDCG@10): ")

DEFAULTS: tuple[Default, ...] = (
    # ---------------------------------------------------------------- constructor
    _d("factors", CONSTRUCTOR, 64, FROZEN, (ML100K, TOYS, SPORTS, LASTFM, YELP, DEMO),
       "ALS rank, set in dd3cc95 and measured 2026-12-05 (5 folds, UP with 128 minus UP, "
       "NDCG@10): MovieLens 100k -0.0050 [-0.0081, -0.0019], Toys -0.0002, Sports "
       "-0.0006 [-0.0013, -0.0000], Last.fm +0.0004, Yelp +0.0006 [+0.0000, +0.0013], "
       "demo +0.0024 [+0.0003, +0.0044]; 256 on MovieLens 100k -0.0028. UP's ALS is one column of the blend: "
       "the ALS peer's best rank (up to 1,024 on Sports) is not UP's"),
    _d("regularization", CONSTRUCTOR, 0.05, FROZEN, (ML100K, TOYS, SPORTS, LASTFM, YELP, DEMO),
       "ALS and fold-in ridge, set in dd3cc95 and measured 2026-12-05 (5 folds, UP with "
       "10 minus UP): MovieLens 100k +0.0009 [-0.0010, +0.0030], Toys -0.0004, Sports "
       "-0.0000, Last.fm -0.0002, Yelp -0.0002, demo +0.0018 [+0.0003, +0.0033]; 1 on MovieLens 100k -0.0012: "
       "flat on the public sets, up on the generated demo alone: kept"),
    _d("iterations", CONSTRUCTOR, 15, FROZEN, (PRIOR_ART, ML100K, TOYS, SPORTS, LASTFM, YELP, DEMO),
       "implicit's AlternatingLeastSquares default; measured 2026-12-06 (5 folds, UP with "
       "fewer minus UP, before history twins), as a way to cut the fit (ALS is 7 of UP's "
       "32 s at 50k polls): 5 iterations ML-100k -0.0005, Toys -0.0006 [-0.0013, +0.0000], "
       "Sports +0.0003, Last.fm +0.0003, Yelp -0.0006 [-0.0012, -0.0001], demo +0.0037 "
       "[+0.0020, +0.0055]; 8 iterations +0.0016 / -0.0010 [-0.0015, -0.0005] / +0.0000 / "
       "+0.0008 / -0.0003 / +0.0024: loses a little on Toys and Yelp, kept"),
    _d("event_weights", CONSTRUCTOR, None, FROZEN, NONE,
       "None means DEFAULT_EVENT_WEIGHTS (see there)"),
    _d("default_event_weight", CONSTRUCTOR, 1.0, FROZEN, NONE,
       "an event type without a weight counts as one vote: the unit"),
    _d("exploration_weight", CONSTRUCTOR, 0.3, FROZEN, PRIOR_ART,
       "Personalize's campaign default explorationWeight; hunch evaluate sets 0 "
       "(offline metrics score the solution version, before exploration)"),
    _d("exploration_item_age_cutoff_days", CONSTRUCTOR, 30.0, FROZEN, PRIOR_ART,
       "Personalize's default explorationItemAgeCutOff"),
    _d("use_text", CONSTRUCTOR, True, FROZEN, DEMO,
       "text is what a cold poll can be matched on: cold-poll recall@25 0 -> 0.014 on the "
       "demo (hunch evaluate --folds 3, d14ac40); on MovieLens 100k it changed nothing "
       "(issue 14: 0.0853 without vs 0.0848 with)"),
    _d("text_fields", CONSTRUCTOR, _TEXT_FIELDS, FROZEN, NONE,
       "TEXT_FIELDS: every text field of the items schema"),
    _d("text_encoder", CONSTRUCTOR, None, FROZEN, NONE,
       "None means TF-IDF + SVD (recsys/text.py): runs offline with no model download; "
       "the sentence encoder is opt-in"),
    _d("item_categorical_fields", CONSTRUCTOR, ("CATEGORY", "AUTHOR_ID"), FROZEN, NONE,
       "ITEM_CATEGORICAL_FIELDS: the items schema's categorical fields"),
    _d("user_fields", CONSTRUCTOR, ("AGE", "LOCALE", "CLUSTER", "COMMUNITY"), FROZEN, NONE,
       "USER_FIELDS: the users schema's fields"),
    _d("use_recency", CONSTRUCTOR, True, FROZEN, NONE,
       "a switch: the age steps' weights are chosen in fit (DEFAULT_AGE_WEIGHTS), so on "
       "data without a recency effect they learn to be flat"),
    _d("learn_blend", CONSTRUCTOR, True, FROZEN, NONE,
       "a switch: True is what makes the blend weights and lambda chosen in fit"),
    _d("exclude_interacted", CONSTRUCTOR, True, FROZEN, NONE,
       "product rule: a user votes once per poll, so a voted poll wastes the slot"),
    _d("max_recent_events", CONSTRUCTOR, 100, FROZEN, PRIOR_ART,
       "MAX_RECENT_EVENTS (see there)"),
    _d("item_item_max_items", CONSTRUCTOR, 10_000, FROZEN, NONE,
       "ITEM_ITEM_MAX_ITEMS (see there)"),
    _d("item_item_active_polls", CONSTRUCTOR, 2_000, FROZEN, DEMO,
       "ITEM_ITEM_ACTIVE_POLLS (see there)"),
    _d("num_threads", CONSTRUCTOR, 1, FROZEN, NONE, "ALS threads: speed only"),
    _d("random_state", CONSTRUCTOR, 0, FROZEN, NONE, "seed"),
    _d("event_values", CONSTRUCTOR, None, FROZEN, (PRIOR_ART, ML100K, LASTFM),
       "off, as Personalize trains on every event unless an eventValueThreshold is set. "
       "Measured (5 folds, seed 0, UP minus UP without, NDCG@10): MovieLens 100k ratings "
       "RATING>=4 -0.0246 [-0.0352, -0.0147], rating as confidence +0.0023 [-0.0010, "
       "+0.0055]; HetRec Last.fm play counts, 1 + log(count) -0.0017 [-0.0049, +0.0014], "
       "the count -0.0059 [-0.0098, -0.0020] (docs/public-data.md, event values)"),
    _d("components", CONSTRUCTOR, _COMPONENTS, FROZEN,
       (PRIOR_ART, ML100K, TOYS, SPORTS, DEMO),
       "Personalize's parts (collaborative, metadata and text, segments, recency, "
       "exploration) plus item_item, kept because on MovieLens 100k (3 folds) it lifted "
       "UP's NDCG@10 from 0.129 to 0.155 (8c26fa9), and sequence, kept because on "
       "MovieLens 100k (10 folds) it lifted it from 0.1555 to 0.1757 (paired "
       "+0.0201 [0.014, 0.026]), and walk, kept because it lifted UP on every development "
       "dataset (paired, ac70308): Amazon Toys 0.0746 -> 0.0798, Sports 0.0388 -> 0.0417, "
       "MovieLens 100k 0.1754 -> 0.1815, demo 0.2012 -> 0.2051, Last.fm +0.0006 (within "
       "noise), and rerank (a second stage, switched on in fit; see RERANK_JUDGE_PARTS)"),
    # ---------------------------------------------------------------- settings.py
    _d("TEXT_FIELDS", SETTINGS, _TEXT_FIELDS, FROZEN, NONE, "the items schema's text fields"),
    _d("ITEM_CATEGORICAL_FIELDS", SETTINGS, ("CATEGORY", "AUTHOR_ID"), FROZEN, NONE,
       "the items schema's categorical fields"),
    _d("USER_FIELDS", SETTINGS, ("AGE", "LOCALE", "CLUSTER", "COMMUNITY"), FROZEN, NONE,
       "the users schema's fields"),
    _d("DEFAULT_EVENT_WEIGHTS", SETTINGS, {"HUNCH": 1.0, "COMMENT": 2.0}, FROZEN, DEMO,
       "a comment weighs two votes (hand-set in dd3cc95); " + _MEASURED + "a comment as 1 vote "
       "+0.0006 [-0.0019, +0.0032], as 4 votes -0.0004 [-0.0024, +0.0016] on the demo, the "
       "only dataset with comments: flat, kept"),
    _d("SECONDS_PER_DAY", SETTINGS, 86_400, FROZEN, NONE, "a unit"),
    _d("MAX_RECENT_EVENTS", SETTINGS, 100, FROZEN, PRIOR_ART,
       "Personalize's real-time personalization and filters read the latest events (100 "
       "per type); more slows the request's fold-in solve"),
    _d("AGE_BUCKET_EDGES", SETTINGS, (18, 25, 35, 45, 55, 65), FROZEN, PRIOR_ART,
       "the usual demographic age buckets; exact ages over-split users"),
    _d("POLL_AGE_EDGES_DAYS", SETTINGS, (0.0, 0.25, 1.0, 2.0, 4.0, 7.0, 14.0, 30.0, 60.0),
       FROZEN, (DEMO, ML100K, LASTFM, TOYS),
       "step edges of the recency feature, hand-set in dd3cc95 (a feed's engagement "
       "falls off within hours to days); each step's weight is chosen in fit. " + _MEASURED +
       "coarser (0, 1, 7, 30 days) demo -0.0301 [-0.0344, -0.0263]; finer (3 h to 120 "
       "days, 12 edges) demo +0.0022 [+0.0011, +0.0034], MovieLens 100k with items "
       "+0.0008, Last.fm and Toys identical: kept; the finer edges are a candidate that "
       "needs the app's own events"),
    _d("ALS_ALPHA", SETTINGS, 10.0, FROZEN, (PRIOR_ART, ML100K),
       "Hu, Koren & Volinsky's recommended order of magnitude of the confidence scale; "
       "on MovieLens 100k (5 folds, 2026-12-05) alpha 3 -0.0032 [-0.0061, -0.0004] and 30 "
       "-0.0008 NDCG@10 against 10"),
    _d("COLD_ITEM_PRIOR_STRENGTH", SETTINGS, 5.0, FROZEN, (ML100K, LASTFM, DEMO, TOYS, SPORTS),
       "a poll's factor is shrunk towards its metadata prediction with the strength of 5 "
       "events (dd3cc95); " + _MEASURED + "2: MovieLens 100k with items -0.0002, Last.fm +0.0013 "
       "[-0.0005, +0.0031], demo +0.0004, Toys -0.0006 [-0.0009, -0.0002], Sports +0.0001; "
       "20: +0.0025 [-0.0021, +0.0067], -0.0048 [-0.0068, -0.0028], -0.0005, -0.0008 "
       "[-0.0013, -0.0003], +0.0001: kept"),
    _d("WARM_ITEM_MIN_INTERACTIONS", SETTINGS, 10, FROZEN, (ML100K, LASTFM, DEMO, TOYS, SPORTS),
       "polls that teach the metadata ridge and donate item-item scores (dd3cc95); " + _MEASURED +
       "5: MovieLens 100k with items -0.0003, Last.fm -0.0001, demo -0.0002, Toys -0.0003 [-0.0006, -0.0001], "
       "Sports -0.0001; 20: +0.0009, -0.0021 [-0.0036, -0.0005], -0.0001, Toys -0.0003 [-0.0007, +0.0001], "
       "Sports +0.0001: kept"),
    _d("METADATA_RIDGE_ALPHA", SETTINGS, 10.0, FROZEN, (ML100K, LASTFM, DEMO),
       "ridge of the metadata -> factor map, strong since text vectors are noisy (dd3cc95); "
       + _MEASURED + "1: MovieLens 100k with items +0.0022 [-0.0007, +0.0050], Last.fm -0.0012 "
       "[-0.0028, +0.0005], demo -0.0014 [-0.0032, +0.0003]; 100: +0.0013, -0.0006, "
       "-0.0001: no value wins on all three, kept"),
    _d("MAX_SHOWN_PAIRS", SETTINGS, 2_000_000, FROZEN, NONE,
       "memory bound of the streamed (user, poll) impressions remembered so that a user "
       "counts once per poll shown; past it the memory starts again (a user may count "
       "once more): a safety limit, not a quality choice"),
    _d("CONTENT_MAX_FIELD_VALUES", SETTINGS, 256, FROZEN, (DEMO, LASTFM),
       "keeps many-valued fields (AUTHOR_ID) out of the dense content vector (dd3cc95); "
       + _MEASURED + "64 and 1024 rank exactly as 256 on the demo (AUTHOR_ID ~2,000 values, "
       "CATEGORY 16) and Last.fm: a size bound until a dataset has a field in between"),
    _d("SEGMENT_PRIOR_EVENTS", SETTINGS, 2.0, FROZEN, DEMO,
       "segment lift's prior at the catalog's rate, pooled over the poll's author "
       "(29e9467): at the default demo size a community sees ~1 event per poll, and the "
       "old uniform prior made the lift a popularity score"),
    _d("MIN_VALIDATION_USERS", SETTINGS, 10, FROZEN, (DEMO, ML100K, LASTFM, TOYS, YELP),
       "below this many validation users the hand-set fallback blend is kept; 30 until "
       "2026-12-06 (dd3cc95, unmeasured). Measured then on small data (5 folds, UP with the "
       "threshold lowered minus UP at 30, where 30 left the fallback in place): demo with "
       "150 / 250 users +0.2296 / +0.2760 NDCG@10 at 10, random 250-user samples of "
       "movielens-100k (with its items) and hetrec-lastfm +0.0611 / +0.0829; at 20, "
       "250-user samples +0.0495 / +0.0415 (folds that drew fewer than 20 kept the "
       "fallback); at 5 the same as 10 within noise (300-user samples of amazon-toys +0.0026, "
       "yelp -0.0006, where 10 draws too few users to learn); the other way, a 400-user demo "
       "pushed to the fallback (60) -0.2558. 10 taken"),
    _d("MAX_VALIDATION_USERS", SETTINGS, 3_000, FROZEN, NONE,
       "caps the blend's fit time on large data; dd3cc95"),
    _d("MIN_EVENTS_FOR_VALIDATION_USER", SETTINGS, 5, FROZEN, (DEMO, TOYS),
       "a validation user keeps history besides the targets (dd3cc95); " + _MEASURED + "3: demo "
       "-0.0010 [-0.0038, +0.0021]; 10: demo +0.0016 [-0.0012, +0.0041], Toys -0.0007 [-0.0015, +0.0001] "
       "(MovieLens and Last.fm users all have more than 10 events): kept"),
    _d("VALIDATION_USER_SHARE", SETTINGS, 0.1, FROZEN, PRIOR_ART,
       "Personalize's split holds out 10 % of users; 20 % and 30 % (cap 3,000 and 6,000) "
       "checked on amazon-toys (5 folds: +0.0003 [-0.0002, +0.0008], -0.0004 [-0.0010, "
       "+0.0002] NDCG@10) and movielens-100k (5 folds: -0.0032 [-0.0066, +0.0001], "
       "-0.0031 [-0.0066, +0.0002]): more blend rows gain nothing, 10 % kept (2026-12-04)"),
    _d("VALIDATION_TARGET_FRACTION", SETTINGS, 0.1, FROZEN, PRIOR_ART,
       "Personalize's split: each held-out user's newest 10 % of events are relevant"),
    _d("POOL_HEAD_PER_COLUMN", SETTINGS, 50, FROZEN, (TOYS, ML100K, DEMO),
       "each column's top unseen polls in a validation user's candidate pool "
       "(blend.candidate_pool); the pool replaced negatives from the default ranking's "
       "head, which inverted the affinities on Toys. NDCG@10, head -> pool: Toys (5 "
       "folds) 0.0550 -> 0.0683, demo (3) 0.2054 -> 0.2109, ML-100k (5) 0.1729 -> 0.1712; "
       "random negatives only: 0.0651, 0.1801, 0.1678; 50 / 100 / 200 per column (with "
       "poll ages as serving sees them): Toys 0.0751 / 0.0749 / 0.0752, demo 0.2090 / "
       "0.2046 / 0.2005, ML-100k 0.1700 / 0.1721 / 0.1704"),
    _d("POOL_RANDOM_POLLS", SETTINGS, 30, FROZEN, (TOYS, ML100K, DEMO),
       "random polls in the candidate pool, so the tail is seen too (the number of "
       "random negatives before the pool, dd3cc95)"),
    _d("POOL_NEGATIVES", SETTINGS, 60, FROZEN, (TOYS, ML100K, DEMO),
       "non-targets of the pool kept per validation user (the 30 + 30 negatives before "
       "the pool, dd3cc95)"),
    _d("BLEND_INVERSE_L2", SETTINGS, 1.0, FROZEN, (PRIOR_ART, ML100K, TOYS, LASTFM),
       "scikit-learn's LogisticRegression default C, on columns scaled to unit spread "
       "(since 2026-12-04; unscaled, the penalty floored small-scale affinities): Toys "
       "0.0751 -> 0.0745, ML-100k 0.1700 -> 0.1768, demo 0.2090 -> 0.2024. Against C 0.1 "
       "and 10 (2026-12-05, 5 folds): ML-100k -0.0005 / +0.0004, Toys +0.0002 / -0.0001, "
       "Last.fm -0.0004 / -0.0000: flat, kept"),
    _d("BLEND_MAX_ITERATIONS", SETTINGS, 500, FROZEN, NONE,
       "lbfgs iterations, enough to converge"),
    _d("HISTORY_PIVOT_POLLS", SETTINGS, 10, FROZEN, NONE,
       "where a history twin is 0 (z = log1p(polls) - log1p(10)), hand-set in the study "
       "that found the twins (session 21); the blend learns w and t around it, so it moves "
       "only the L2 penalty's pull and where each user's floor at 0 bites. Whether twins "
       "are used at all is chosen in fit (blend.learn: the held-out half's whole-catalog "
       "NDCG@10, with against without)"),
    _d("HISTORY_TWINS_MIN_USERS", SETTINGS, 60, FROZEN, DEMO,
       "the twins are judged on two halves of the drawn validation users and were measured "
       "with at least 30 a half (2 x MIN_VALIDATION_USERS until 2026-12-06). When "
       "MIN_VALIDATION_USERS went from 30 to 10, the gate at 2 x 10 let a 400-user demo "
       "(~36 drawn) judge twins on halves of 18: -0.0045 [-0.0076, -0.0015] NDCG@10 (5 "
       "folds); so the gate keeps its own value"),
    _d("EXPLORATION_BONUS_SCALE", SETTINGS, 1.0, FROZEN, DEMO,
       "floor of the exploration bonus in logits; since 1a18566 the bonus scales with the "
       "request's score spread (unproven polls sat ~4.5 logits below the last slot, on "
       "data the commit does not name). A held-out ranking cannot judge it (evaluation "
       "runs with exploration off); measured 2026-12-06 on the demo, the spread it floors "
       "(best score minus mean) is 5.0 / 7.6 / 11.5 logits at the 1st / 50th / 95th "
       "percentile of 1,000 users: the floor never binds, it guards near-constant scores"),
    _d("EXPLORATION_NOISE", SETTINGS, 0.1, FROZEN, PRIOR_ART,
       "Personalize's 'a little random noise' on the exploration bonus"),
    _d("AGE_CLOCK_MAX_LEAD_SECONDS", SETTINGS, 30 * 24 * 3600, FROZEN, NONE,
       "robustness: a stray future timestamp cannot age every poll (9ac7ee3); on data "
       "without one the clock is the newest event"),
    _d("APPEAL_PRIOR_EVENTS", SETTINGS, 2.0, FROZEN, NONE,
       "feeds 'appeal', which the learned blend leaves out (see DEFAULT_BLEND): no effect "
       "on scores"),
    _d("ENGAGEMENT_CURVE_STEPS", SETTINGS, 64, FROZEN, NONE,
       "resolution of the engagement curve behind 'appeal': no effect on scores"),
    _d("SEGMENT_ROW_CACHE_SIZE", SETTINGS, 64, FROZEN, NONE, "cache size: same scores"),
    _d("USER_VECTOR_CACHE_SIZE", SETTINGS, 64, FROZEN, NONE, "cache size: same scores"),
    _d("BLEND_KEPT_FEATURES_BYTES", SETTINGS, 256 * 2**20, FROZEN, NONE,
       "memory bound of the features the blend's draw keeps for the twins judgement: same "
       "judgement, recomputed past it (0.5 s of 2.0 s saved at 50k polls, peak RSS +108 MB)"),
    _d("ARRAY_GROWTH_SHARE", SETTINGS, 0.125, FROZEN, NONE, "array growth: same scores"),
    _d("ARRAY_GROWTH_MIN_ROWS", SETTINGS, 256, FROZEN, NONE, "array growth: same scores"),
    _d("ITEM_ITEM_MAX_ITEMS", SETTINGS, 10_000, FROZEN, NONE,
       "memory bound: dense B over the whole catalog costs catalog^2 float32 (400 MB at "
       "10,000 polls); above it the active window"),
    _d("ITEM_ITEM_ACTIVE_POLLS", SETTINGS, 2_000, FROZEN, (DEMO, LASTFM),
       "demo at 50,000 polls (5,000 users, 1.5M events): window of 2,000 polls NDCG@10 "
       "0.0230 (fit 8 s) vs 4,000 polls 0.0208 (73 s) vs sparse item-kNN 0.0196 (d450636). "
       "On HetRec Last.fm (17,632 artists; 5 folds, 2026-12-05) a 6,000-poll window "
       "+0.0018 [+0.0003, +0.0033] and B over every artist +0.0009 [-0.0006, +0.0024], "
       "for up to twice UP's fit there: kept"),
    _d("ITEM_ITEM_L2_GRID", SETTINGS, (50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0),
       FROZEN, DEMO,
       "the grid lambda is chosen from in fit; spans the EASE peer's grid, whose top was "
       "extended because 1,000 won every fold on the demo (recsys/evaluation/peers.py)"),
    _d("ITEM_ITEM_DEFAULT_L2", SETTINGS, 500.0, IN_FIT, UNRECORDED,
       "lambda is chosen in fit: ItemItem.choose_l2, best validation NDCG@10 of "
       "ITEM_ITEM_L2_GRID on the blend's validation users; 500 is " + _FALLBACK),
    _d("ITEM_ITEM_TUNING_USERS", SETTINGS, 1_000, FROZEN, NONE,
       "cost bound on the validation users that score each lambda"),
    _d("ITEM_ITEM_TUNING_DEPTH", SETTINGS, 10, FROZEN, NONE,
       "lambda is chosen by NDCG@10, the headline metric"),
    _d("ITEM_ITEM_RECENT_HALF_LIFE_EVENTS", SETTINGS, 10.0, FROZEN, ML100K,
       "MovieLens 100k, 3 folds, UP's NDCG@10: half-life 3 events 0.152, 10 events 0.155, "
       "25 events 0.152 (8c26fa9)"),
    _d("ITEM_ITEM_GATHER_MAX_SHARE", SETTINGS, 0.2, FROZEN, NONE,
       "gather or dense product: same result up to float rounding, speed only (gather / "
       "dense at a fifth of B's rows: 0.50-0.94 for B of 2,000-10,000 polls)"),
    _d("ITEM_ITEM_CONTENT_NEIGHBOURS", SETTINGS, 20, FROZEN, DEMO,
       "a cold poll's item-item score borrows from 20 content neighbours: a demo topic has "
       "~300 polls in 5,000 (d14ac40)"),
    _d("ITEM_ITEM_NEIGHBOUR_PRIOR", SETTINGS, 1.0, FROZEN, PRIOR_ART,
       "content neighbours weigh similarity / (sum + 1): one pseudo-neighbour, a Bayesian "
       "average's prior, set before its first run; no other value tried. Checked (5 folds, "
       "UP minus UP with weights summing to 1, NDCG@10): HetRec Last.fm +0.0034 [+0.0019, "
       "+0.0050] (the data "
       "that showed the fault, development since), MovieLens 100k with items +0.0009 "
       "[-0.0012, +0.0030], demo -0.0003 [-0.0023, +0.0017]; similarity / k instead "
       "(no prior) did +0.0047, -0.0005, +0.0000 and took more from cold polls"),
    _d("NEIGHBOUR_CHUNK", SETTINGS, 1_000, FROZEN, NONE, "memory per chunk: same result"),
    _d("SEQUENCE_WINDOW_EVENTS", SETTINGS, 20, FROZEN, ML100K,
       "MovieLens 100k, 10 folds, UP with minus without the sequence component, NDCG@10: "
       "window 1 +0.0008, 3 +0.0033 (last 5, half-life 1); 10 +0.0163, 20 +0.0201, 40 "
       "+0.0226 (last 20, half-life 5); 20 bounds fit's pairs to 20x the events"),
    _d("SEQUENCE_SUCCESSORS", SETTINGS, 100, FROZEN, ML100K,
       "MovieLens 100k, 10 folds: 200 successors instead of 100 gave the same NDCG@10 "
       "(window 20, last 20, half-life 5)"),
    _d("SEQUENCE_LAST_EVENTS", SETTINGS, 20, FROZEN, ML100K,
       "MovieLens 100k, 10 folds, window 10: last 20 events, half-life 5: +0.0163; last "
       "30, half-life 10: +0.0126; window 3: last 5 +0.0033, last 10 (half-life 3) +0.0102"),
    _d("SEQUENCE_HALF_LIFE_EVENTS", SETTINGS, 5.0, FROZEN, ML100K,
       "chosen with SEQUENCE_LAST_EVENTS (see there); 2 was re-measured on six "
       "development datasets (docs/public-data.md, recency half-lives): +0.0038 on "
       "MovieLens 100k, -0.0004 on Yelp, flat on four, so 5 stays"),
    _d("WALK_ALPHA", SETTINGS, 0.5, FROZEN, SPORTS,
       "what the tuned RP3beta peer chose in 10/10 folds of Amazon Sports' confirmation "
       "run (development since)"),
    _d("WALK_NEIGHBOURS", SETTINGS, 200, FROZEN, (SPORTS, ML100K, TOYS, LASTFM, YELP, DEMO),
       "what the tuned RP3beta peer chose in 7/10 folds of Amazon Sports (400 and 800 in "
       "the others). 500 against 200 (2026-12-05, 5 folds, NDCG@10): Toys +0.0006 "
       "[+0.0003, +0.0009], Sports +0.0003 [+0.0000, +0.0005], MovieLens 100k -0.0000, "
       "Last.fm +0.0003, Yelp -0.0001, demo +0.0001, for 2.5x the arrivals a request adds: "
       "not taken"),
    _d("WALK_BETA_GRID", SETTINGS, (0.1, 0.2, 0.3, 0.5), FROZEN, SPORTS,
       "the grid beta is chosen from in fit; spans the tuned RP3beta peer's choices on "
       "Amazon Sports (0.11-0.3)"),
    _d("WALK_DEFAULT_BETA", SETTINGS, 0.2, IN_FIT, SPORTS,
       "beta is chosen in fit: Walk.choose, best validation NDCG@10 of the walk alone over "
       "WALK_BETA_GRID; 0.2, the grid's nearest to the peer's most frequent choice on "
       "Sports (0.18), is the fallback when fit has no validation targets"),
    _d("WALK_HALF_LIFE_EVENTS", SETTINGS, 1.0, FROZEN, (SPORTS, TOYS),
       "Amazon Sports, 5 folds, UP's NDCG@10: half-life 0.5 event 0.0418, 1 event 0.0418, "
       "3 events 0.0398, 10 events 0.0388, every touched poll alike 0.0393 (without the "
       "walk 0.0388)"),
    _d("WALK_LAST_EVENTS", SETTINGS, 20, FROZEN, NONE,
       "cost bound: at half-life 1 the 21st newest event weighs 1e-6 of the newest"),
    _d("WALK_MAX_PAIRS", SETTINGS, 10_000_000, FROZEN, NONE,
       "cost bound: leaves Amazon Toys, Sports and HetRec Last.fm whole; cuts the 50k-poll "
       "demo's users to their latest ~47 polls"),
    _d("WALK_ROW_CHUNK", SETTINGS, 2_000, FROZEN, NONE, "memory per chunk: same result"),
    # ---------------------------------------------------------------- blend.py
    _d("DEFAULT_BLEND", BLEND, {
        "collaborative": 1.0, "content": 1.0, "popularity": 0.2, "appeal": 0.0,
        "segment": 0.3, "coldness": 0.0, "cold_collaborative": 0.0, "cold_content": 0.0,
        "item_item": 1.0, "item_item_recent": 0.0, "sequence": 0.0, "walk": 0.0}, IN_FIT,
       (UNRECORDED, DEMO),
       "the blend weights are chosen in fit: blend.learn, a logistic regression on the "
       "validation users' newest 10 % of events; this table is " + _FALLBACK + ". "
       "Which columns the learned blend has is frozen on the demo: appeal, coldness and "
       "the cold_* interactions lowered NDCG@10 from 0.187 to 0.153-0.163 there"),
    _d("DEFAULT_AGE_WEIGHTS", BLEND, (0.0, 1.0, 0.9, 0.8, 0.6, 0.4, 0.2, 0.1, 0.0, 0.0),
       IN_FIT, UNRECORDED,
       "the age steps' weights are chosen in fit by blend.learn (with the intercept folded "
       "in, 1a18566); this is " + _FALLBACK),
    # ---------------------------------------------------------------- components
    # ---------------------------------------------------------------- the re-ranker
    _d("RERANK_HEAD", SETTINGS, 100, FROZEN, TOYS,
       "the blend's head the ranker re-orders (docs/public-data.md, 'A second stage'): "
       "50 or 200 polls scored as 100 on Amazon Toys (-0.0004, -0.0003 NDCG@10, 5 folds, "
       "intervals across 0); deeper costs serving time"),
    _d("RERANK_TREES", SETTINGS, 100, FROZEN, (ML100K, TOYS, SPORTS),
       "with RERANK_LEAVES and RERANK_MIN_LEAF_ROWS: 300 trees of 15 leaves at >= 50 rows "
       "a leaf overfit a few hundred queries (5 folds, UP with minus without it: "
       "MovieLens 100k -0.0384, Toys -0.0003, Sports -0.0011); 100 trees of 7 leaves at "
       ">= 200 rows lifted Toys +0.0064 and Sports +0.0029"),
    _d("RERANK_LEAVES", SETTINGS, 7, FROZEN, (ML100K, TOYS, SPORTS), "see RERANK_TREES"),
    _d("RERANK_MIN_LEAF_ROWS", SETTINGS, 200, FROZEN, (ML100K, TOYS, SPORTS),
       "see RERANK_TREES"),
    _d("RERANK_LEARNING_RATE", SETTINGS, 0.05, FROZEN, PRIOR_ART,
       "a common LambdaMART shrinkage (LightGBM's own default is 0.1); not varied"),
    _d("RERANK_JUDGE_PARTS", SETTINGS, 5, IN_FIT, (TOYS, SPORTS, YELP, ML100K, LASTFM, DEMO),
       "whether the ranker is used at all is chosen in fit (held-out validation queries, "
       "ranker against the blend's order); the number of parts was chosen on development "
       "data: judged on halves the switch was off in 3 of 5 Amazon Toys folds (kept "
       "+0.0028 of the +0.0064 an always-on ranker gave), on 5 parts it was on in every "
       "Toys and Sports fold and off in every Yelp fold (where always-on lost 0.0020). The "
       "fallback, with fewer than RERANK_MIN_QUERIES queries or no validation split: no "
       "ranker, the blend's order"),
    _d("RERANK_MIN_GAIN_ERRORS", SETTINGS, 1.0, FROZEN, (ML100K, YELP, TOYS, SPORTS),
       "the switch's margin (5 folds, UP with minus without the ranker, session 25): at 0 "
       "the ranker went on in 3 of 5 MovieLens 100k folds and 1 of 5 Yelp folds, each won "
       "by 0.3-0.9 standard errors, and lost there (-0.0059 [-0.0125, +0.0003], -0.0004 "
       "[-0.0010, +0.0001]); at 1 they stay off, Toys keeps +0.0052 of +0.0064 (off in one "
       "fold won by 0.9) and Sports all of its +0.0021; at 1.5 Toys +0.0039, Sports +0.0011"),
    _d("RERANK_MIN_QUERIES", SETTINGS, 20, FROZEN, NONE,
       "below it each of the 5 parts would be judged on ~4 users; no ranker"),
    _d("COMPONENT_NAMES", COMPONENTS, _COMPONENTS, FROZEN,
       (PRIOR_ART, ML100K, TOYS, SPORTS, DEMO),
       "the default of components= (see there)"),
    # ---------------------------------------------------------------- text encoder
    _d("DEFAULT_TEXT_DIMENSIONS", TEXT, 32, FROZEN, DEMO,
       "holds the demo's 16 topics; each dimension costs latency at 50k polls"),
    _d("DEFAULT_MAX_VOCABULARY", TEXT, 50_000, FROZEN, NONE,
       "memory and saved-model size bound"),
    _d("DEFAULT_MIN_DOCUMENT_FREQUENCY", TEXT, 2, FROZEN, (ML100K, LASTFM, DEMO),
       "a term in a single poll cannot link two polls; " + _MEASURED + "1: MovieLens 100k with "
       "items +0.0007 [-0.0036, +0.0050], Last.fm -0.0003, demo identical; 5: +0.0005, "
       "-0.0017 [-0.0032, -0.0001], identical: kept"),
    # ---------------------------------------------------------------- event clock
    _d("CLOCK_QUORUM", CLOCK, 5, FROZEN, NONE,
       "robustness: 'now' is believed once 5 events agree; on data without a stray "
       "future timestamp the clock is the newest event"),
)

# Upper-case names in UP's modules that are not defaults.
NOT_DEFAULTS: dict[str, str] = {
    "REGISTRY": "the component classes by name; which are on is COMPONENT_NAMES",
}


def by_name() -> dict[str, Default]:
    return {d.name: d for d in DEFAULTS}


def _cell(value: Any) -> str:
    text = repr(value) if not isinstance(value, (int, float)) or isinstance(value, bool) \
        else f"{value:,}"
    return "`" + text.replace("|", "\\|") + "`"


def render_markdown() -> str:
    """docs/up-defaults.md, from DEFAULTS."""
    chosen = Counter(d.chosen for d in DEFAULTS)
    frozen_by = Counter(s for d in DEFAULTS if d.chosen == FROZEN for s in d.data)
    lines = [
        "# User-Personalization's defaults and the data that chose them",
        "",
        "Generated from `recsys/recipes/user_personalization/defaults.py` by",
        "`python -m recsys.recipes.user_personalization.defaults > docs/up-defaults.md`;",
        "`tests/recsys/test_up_defaults.py` fails when this file, the table or the code",
        "disagree, when UP gains a parameter or setting without an entry, and when an entry",
        "names a confirmation dataset (docs/public-data.md, Roles).",
        "",
        "**Chosen in fit** means chosen inside `fit` on the training users' validation",
        "split (the value shown is then only the fallback for data too small to split).",
        "**Frozen** values name the data that chose them: a development dataset",
        "(`movielens-100k`, `demo`), `prior-art` (a paper's, Personalize's or a library's",
        "default), `unrecorded` (no comment, doc or commit names it; all such values were",
        "set before the confirmation datasets were pinned on 2026-12-03, when only the",
        "demo and MovieLens 100k were in use) or `none` (not a modelling choice: units,",
        "schema fields, seeds, speed and memory bounds with the same scores).",
        "",
        f"{len(DEFAULTS)} defaults: {chosen[IN_FIT]} chosen in fit, {chosen[FROZEN]} frozen. "
        "Frozen, by what chose them (an entry may name two): "
        + ", ".join(f"{k} {v}" for k, v in sorted(frozen_by.items(), key=lambda kv: -kv[1]))
        + ".",
        "",
        "| name | where | value | chosen | data | reason |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for d in DEFAULTS:
        where = "constructor" if d.where == CONSTRUCTOR else d.where.rsplit(".", 1)[-1]
        lines.append(f"| `{d.name}` | {where} | {_cell(d.value)} | {d.chosen} | "
                     f"{', '.join(d.data)} | {d.reason.replace('|', '/')} |")
    lines += [
        "",
        "Choices that are not named settings, frozen on development data: the item-item",
        "component itself (MovieLens 100k, above), EASE's binary weighting of the",
        "user-poll matrix in it, and the learned blend's columns (demo, `DEFAULT_BLEND`).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(render_markdown(), end="")
