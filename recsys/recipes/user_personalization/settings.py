"""User-Personalization's settings: the numbers that matter, each with its reason.

Shared by the model (model.py) and its components (components/); the model re-exports
them, so ``from recsys.recipes.user_personalization.model import ALS_ALPHA`` still works.
A new setting needs an entry in defaults.py: chosen in fit, or frozen with the data that
chose it (tests/recsys/test_up_defaults.py fails without one).
"""

from __future__ import annotations

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
# Pseudo-events at the catalog's rate added to a segment's count on a poll and to the
# count its share predicts: a segment needs a few events more (or fewer) than expected
# before a poll counts as its favourite (or not); like APPEAL_PRIOR_EVENTS.
SEGMENT_PRIOR_EVENTS = 2.0
# Validation for the blend: below this many users (drawn with a target among their
# candidates) the hand-set DEFAULT_BLEND is kept. It was 30; measured on small catalogs
# (docs/public-data.md, "The unrecorded defaults"), a blend learned from 10-29 users beat
# the fallback everywhere it could learn (demo with 150 and 250 users +0.23 / +0.28
# NDCG@10, 250-user samples of MovieLens 100k and Last.fm +0.061 / +0.083).
MIN_VALIDATION_USERS = 10
MAX_VALIDATION_USERS = 3_000
MIN_EVENTS_FOR_VALIDATION_USER = 5
# Personalize's split: a tenth of the users, the newest 10 % of their events relevant.
VALIDATION_USER_SHARE = 0.1
VALIDATION_TARGET_FRACTION = 0.1  # Personalize's split: newest 10 % are relevant
# Each validation user's candidate pool (blend.candidate_pool): every column's top polls
# and a few random ones; its non-targets are subsampled to POOL_NEGATIVES rows.
POOL_HEAD_PER_COLUMN = 50
POOL_RANDOM_POLLS = 30
POOL_NEGATIVES = 60
# The blend's logistic regression: scikit-learn's default L2 strength (C, inverse) on
# columns scaled to unit spread, and iterations enough for lbfgs to converge on ~20.
BLEND_INVERSE_L2 = 1.0
BLEND_MAX_ITERATIONS = 500
# History twins (blend.learn): a column's weight may move with how many polls the user
# has touched, w + t * z with z = log1p(polls) - log1p(HISTORY_PIVOT_POLLS); fit keeps
# them only where a blend learned with them ranks held-out validation users' whole
# catalog better than one without.
HISTORY_PIVOT_POLLS = 10
# The twins are judged on two halves of the drawn validation users: with fewer than this
# many drawn they are not tried (at 30 a half, as measured; below, on a 400-user demo with
# ~36 drawn, judging on halves of 18 lost -0.0045 NDCG@10).
HISTORY_TWINS_MIN_USERS = 60
# The judgement ranks the drawn users' whole catalog again: the draw keeps their columns
# for it (1.65 MB a user at 50k polls, ~3 ms each to recompute) up to this many bytes,
# and the users past it are recomputed.
BLEND_KEPT_FEATURES_BYTES = 256 * 2**20
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
# Users whose request-time vectors (fold-in factor, content profile, item-item scores
# over B and the ones their content neighbours borrow, the exploration draw, the product
# with the serving matrix) are kept between requests: a user's next feed page reuses
# them until the user's own events move, however many other users' events arrive
# meanwhile. Each holds up to three float32 per poll (60 kB at 5k polls, 600 kB at 50k:
# 38 MB for all), and 64 covers the users paging at once on one worker (bench_gateway's
# load: 16 or 32).
USER_VECTOR_CACHE_SIZE = 64
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
# The sequence component (components/sequence.py): a transition a -> b counts when b
# follows a within this many of a user's events (weighted 1, 1/2, 1/3 ... by distance);
# each poll keeps its strongest successors (sparse, so it stays on at any catalog); a
# user's column sums the successors of their latest events, halved every half-life
# newer events. Chosen on MovieLens 100k (10 folds, seed 0, UP with minus without it,
# NDCG@10, paired): window 1 / last 5 / half-life 1: +0.0008 [-0.000, 0.002]; 3/5/1:
# +0.0033; 3/10/3: +0.0102; 10/20/5: +0.0163; 20/20/5: +0.0201 [0.014, 0.026]
# (0.1555 -> 0.1757); 40/20/5 (200 successors): +0.0226; 200 successors instead of 100
# at 20/20/5: the same. 20 holds the pairs built at fit to 20x the events.
SEQUENCE_WINDOW_EVENTS = 20
SEQUENCE_SUCCESSORS = 100
SEQUENCE_LAST_EVENTS = 20
SEQUENCE_HALF_LIFE_EVENTS = 5.0
# The walk component (components/walk.py, RP3beta over the whole catalog). Alpha and
# the neighbours are what the tuned RP3beta peer chose on Amazon Sports (10 folds:
# alpha 0.5 in 10/10, 200 neighbours in 7/10; development data since); beta is chosen
# in fit from the grid (the peer chose 0.11-0.3 there; its textbook 0.6 scored 0.0138
# against the tuned 0.0361), WALK_DEFAULT_BETA when there is no validation split.
WALK_ALPHA = 0.5
WALK_NEIGHBOURS = 200
WALK_BETA_GRID: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5)
WALK_DEFAULT_BETA = 0.2
# A user's walk column sums the rows of their latest events, each halved every this many
# newer events: next-event data wants the last event most. Amazon Sports (development,
# 5 folds, UP's NDCG@10): half-life 0.5 event 0.0418, 1 event 0.0418, 3 events 0.0398,
# 10 events 0.0388, every touched poll alike (the peer's scoring) 0.0393; UP without the
# walk 0.0388.
WALK_HALF_LIFE_EVENTS = 1.0
# Only the latest this many events walk: the 21st newest would weigh 0.5^20 (1e-6) of the
# newest, and each event adds ~200 entries to a request.
WALK_LAST_EVENTS = 20
# The walk's cost is its (poll, user, poll) pairs: the sum over users of their distinct
# polls squared. Each user walks from their latest c polls, c the largest that keeps the
# pairs within this (the demo at 50,000 polls has 824M pairs uncapped; at c = 45, 10M
# take ~3 s; Amazon Toys 2.9M, Sports 3.8M, HetRec Last.fm 4.6M stay whole; MovieLens
# 100k's 20M is cut at c = 171, a fifth of its users, keeping 81 % of its pairs).
WALK_MAX_PAIRS = 10_000_000
# Polls whose walks are made (and cut to their neighbours) at once: bounds memory.
WALK_ROW_CHUNK = 2_000
# The re-ranker (components/rerank.py): a LambdaMART ranker of the blend's head, switched
# on in fit when it ranks held-out validation users better. Chosen on development data
# (docs/public-data.md, "A second stage", 5 folds each, NDCG@10 against UP without it):
# 300 trees of 15 leaves at >= 50 rows a leaf overfit a few hundred queries (MovieLens
# 100k -0.0384, Toys -0.0003); 100 trees of 7 leaves at >= 200 rows lifted Toys +0.0064
# and Sports +0.0029 and lost Yelp 0.0020 when always on; judged on 5 parts it stays on
# for Toys and Sports in every fold and off for Yelp (judged on halves it was off in 3
# of 5 Toys folds). A head of 50 or 200 polls scored as 100 (Toys).
RERANK_HEAD = 100
RERANK_TREES = 100
RERANK_LEAVES = 7
RERANK_LEARNING_RATE = 0.05
RERANK_MIN_LEAF_ROWS = 200
RERANK_JUDGE_PARTS = 5
# The held-out gain must exceed this many of its standard errors (over the queries). At
# 0 ("any gain") the ranker went on in 3 of 5 MovieLens 100k folds (93 queries each) and
# 1 of 5 Yelp folds and lost there (-0.0059 [-0.0125, +0.0003], -0.0004): each had won
# by 0.3-0.9 standard errors; at 1 those stay off and Toys keeps +0.0052 of +0.0064.
RERANK_MIN_GAIN_ERRORS = 1.0
# Fewer validation users with a target in their head than this: no ranker (each of the
# 5 parts would judge on ~4 users).
RERANK_MIN_QUERIES = 20
# While a user's history holds at most this share of B's polls, their item-item row
# gathers their rows of B (reads and copies those rows); above it, one dense
# vector-matrix product reads all of B once. A fixed count of 256 polls, tuned on the
# 2,000-poll window, sent 2 % of the demo's users at 5,000 polls (B over the catalog,
# 100 MB) to a 5.5 ms dense product where gathering their ~300 rows took 0.4 ms; by
# share the cut is where the two cost about as much. Gathering copies rows, so it costs
# more per row read than the dense product: on one core, gather / dense is 0.50, 0.54
# and 0.94 at a fifth of B's rows for B of 2,000, 5,000 and 10,000 polls, but 1.8, 2.5
# and 2.4 at half of them (0.5 was the cut before; a 5,000-poll history at 10k polls
# took 52 ms instead of 22). Same scores up to float rounding (another summing order).
ITEM_ITEM_GATHER_MAX_SHARE = 0.2
# EASE gives a poll with a handful of votes an almost empty column, so every cold poll
# scored ~0 on the blend's strongest feature, whatever it said. A poll's item-item score
# is therefore shrunk towards the mean score of the warm polls its content (text and
# CATEGORY) resembles most, with the factor shrink's strength (COLD_ITEM_PRIOR_STRENGTH).
# 20 neighbours average out one poll's appeal yet stay on its topic (a topic of the demo
# has ~300 polls in 5,000).
ITEM_ITEM_CONTENT_NEIGHBOURS = 20
# How much a poll's content neighbours may say about it: their weights are their
# similarities over (their sum + this prior), so twenty close neighbours (the demo's
# polls: median sum 13.8; MovieLens genres and titles: 10.0) carry a poll ~93 % of the
# way, as weights summing to 1 did, and twenty that barely resemble it (artist names on
# HetRec Last.fm: median 0.02) ~2 %. The rest stays on the poll's own score, or on 0 for
# a poll outside B. One identical neighbour's worth: set a priori, not tuned.
ITEM_ITEM_NEIGHBOUR_PRIOR = 1.0
# Rows of the poll x warm-poll similarity computed at once while finding neighbours
# (1,000 x 10,000 float32: 40 MB).
NEIGHBOUR_CHUNK = 1_000
# (user, poll) impressions streamed since the last fit that are remembered so that a user
# counts once per poll shown (~80 bytes each: 2M pairs, ~160 MB, a busy day's feeds).
MAX_SHOWN_PAIRS = 2_000_000
