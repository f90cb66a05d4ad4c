"""Realistic demo data for the Hunch feed: polls, users, follows, votes, comments, impressions.

Why it exists: every recipe, the follower-graph clustering and the roadmap analyses
(follow-graph impact, trend-frequency tuning) need data in which good models beat naive
ones *for the right reasons*. So the generator plants known structure, writes it to
``ground_truth.json``, and lets tests and analyses check they recover it:

- **communities** of varied sizes (Dirichlet shares); about 80 % of follows stay inside
  the follower's community (``follow_within_community`` sets the share and sends the rest
  to communities of unlike taste); followees are chosen by a heavy-tailed "fitness" (a
  popularity-weighted choice), so in-degree is heavy-tailed and many users follow few.
- **topics**, each with a vocabulary; each community prefers a Dirichlet mix of topics and
  each user adds individual noise to it. A poll's topic is drawn from its author's mix,
  its CATEGORY is the coarse group of its topic (``TOPIC_CATEGORY``: 16 topics in 5
  categories, e.g. sports and fitness are both SPORTS; a few polls are
  ``PROMOTIONAL_EVENT``) and its text fields mix topic words with generic ones (QUESTION
  clearest, comments noisiest: ``TEXT_FIELD_TOPIC_SHARE``, order in ground_truth.json's
  ``text_field_order``), so only the text tells a poll's topic.
- **engagement** of user *u* with poll *p* at time *t* is proportional to
  ``activity(u) * affinity(u, topic(p)) * appeal(p) * recency(t - created(p))
  * diurnal(t) * follow_boost**[u follows author(p)]``; the poll's appeal is fed back by
  the engagement it already got (rich get richer). ``follow_effect=False`` sets the
  follow boost to 1 so an analysis can test that it detects the effect only when planted.
- **viral bursts**: some polls get a sudden wave of votes starting at a known onset, well
  above the interval before it, whose rate then decays exponentially with time constant
  ``burst_timescale`` (3 hours by default, Trending-Now's default interval): attention
  jumps and relaxes, as measured for shared content (Crane & Sornette 2008, Lehmann et al.
  2012), rather than switching off at a deadline. The wave is cut after
  ``BURST_SPAN_TIMESCALES`` timescales (its ``duration`` in ground_truth.json, beside its
  ``timescale``). Together bursts add ``burst_share`` of the interactions (3 % by
  default; the trend-tuning backtest raises it so that bursts, not the recency wave of
  new polls, decide which frequency fits).

Event types and values (the EVENT_VALUE column):

- ``HUNCH``: a vote, the large majority of events. EVENT_VALUE is ``1.0``.
- ``COMMENT``: a comment, written a few minutes after the user's vote, more likely the
  stronger the user's affinity to the poll's topic. EVENT_VALUE is the comment's length
  in words (a float, as the schema declares).

A user votes on a poll at most once and comments on it at most once. Every interaction
carries an IMPRESSION list (the poll plus other polls alive at that moment, recent ones
more likely); ``impressions.csv`` adds impression-only events. Follows all predate the
window (the follow boost is static, so a follow dated later would contradict the data).

Everything comes from one ``numpy.random.Generator`` seeded by ``seed``, and the start of
the window is a fixed date, so the same arguments give the same bytes. Sampling is
vectorised (a categorical draw per event is a ``searchsorted`` on cumulative weights);
Python loops run over polls and bursts, not over interactions, except to format rows.
No library generates social interaction data with planted structure, hence this module.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recsys import schemas
from recsys.arrays import sorted_distinct
from recsys.errors import HunchError


class DemoDataError(HunchError):
    """The demo-data parameters cannot produce a dataset (say which one to change)."""


# --- Parameters that matter, with the reason beside each -----------------------------

DEFAULT_START = 1_704_067_200  # 2024-01-01T00:00:00Z: a fixed start keeps runs byte-identical
DAY = 86_400
HOUR = 3_600
DEFAULT_EVENTS_PER_USER_PER_DAY = 10.0  # an engaged polls-app user votes ~10 times a day;
#                                         2000 users x 14 days -> ~280k interactions
DEFAULT_FOLLOW_BOOST = 3.0  # a followee's poll is 3x as likely to be engaged: clear, but
#                             weaker than topic affinity, as in published feed studies
DEFAULT_BURST_TIMESCALE = 3 * HOUR  # Trending-Now's default trend_discovery_frequency
FOLLOW_WITHIN_COMMUNITY = 0.8  # share of follows that stay inside the community
# With ``follow_within_community`` given, a follow that leaves the community picks the
# followee's community by (1 - cosine of the two topic mixes) ** this: the 4th power gives
# a community sharing most of the taste (cosine 0.7) under 3 % of the weight of an
# unlike one (cosine 0.1), so those follows cross tastes, not just community lines.
CROSS_TASTE_SHARPNESS = 4.0
FOLLOW_OUTDEGREE_MEDIAN = 12.0  # typical number of accounts a user follows
FOLLOW_OUTDEGREE_SIGMA = 1.0  # lognormal spread: many follow a few, some follow hundreds
MAX_FOLLOWS_PER_USER = 500
FOLLOWEE_FITNESS_PARETO = 1.3  # Pareto shape of followee "fitness": heavy-tailed in-degree
FOLLOW_HISTORY_DAYS = 180  # follows are dated within this many days before the window
COMMUNITY_DIRICHLET = 0.8  # < 1: community sizes vary a lot (a few big, many small)
COMMUNITY_TOPIC_DIRICHLET = 0.3  # < 1: each community cares about a few topics
USER_TOPIC_NOISE = 0.25  # weight of a user's own Dirichlet noise in their topic mix
USER_ACTIVITY_SIGMA = 1.0  # lognormal activity: a few users do most of the voting
AUTHOR_ACTIVITY_EXPONENT = 1.2  # active users author more than proportionally
POLL_APPEAL_SIGMA = 0.8  # lognormal intrinsic appeal of a poll
POPULARITY_FEEDBACK_EXPONENT = 0.5  # appeal *= (1 + engagements so far) ** this
POPULARITY_ROUNDS = 4  # engagement is drawn in this many rounds, appeal updated between
RECENCY_FAST_SHARE = 0.6  # most engagement comes in the first hours after posting ...
RECENCY_FAST_MEAN = 8 * HOUR
RECENCY_SLOW_MEAN = 3 * DAY  # ... a long tail keeps older polls alive for days
PROMOTIONAL_SHARE = 0.03  # polls whose CATEGORY is PROMOTIONAL_EVENT
COMMENT_BASE_RATE = 0.05  # P(comment | vote) at average affinity; scales with affinity
MAX_COMMENT_RATE = 0.5
EXPECTED_COMMENT_SHARE = 0.08  # first guess of comments per vote; the sampler tops up
COMMENT_WORDS_MEDIAN = 8.0
COMMENT_DELAY_MEAN = 15 * 60  # a comment follows the vote by a few minutes
BURST_SHARE = 0.03  # share of all interactions that the planted bursts add
# With an explicit ``burst_share`` the number of bursts grows so that a typical burst
# stays at this share of its per-burst cap: a large share then means more bursts, not
# bursts clipped at the cap (which would silently give a smaller share than asked).
BURST_CAP_FILL = 0.5
MIN_BURST_VOTES = 20  # a burst smaller than this would not stand out in small data
MAX_BURST_USER_SHARE = 0.5  # a burst reaches at most this share of users (one vote each)
POLLS_PER_BURST = 250  # one burst per this many polls (at least MIN_BURSTS)
MIN_BURSTS = 3
BURST_ONSET_DELAY = (0.5 * DAY, 3 * DAY)  # bursts hit polls that had time to go quiet
# A wave is cut after this many timescales: e**-3 = 5 % of its votes would remain, spread
# thinner than the poll's background, so the cut changes nothing a model could see.
BURST_SPAN_TIMESCALES = 3
IMPRESSION_MEAN_SIZE = 5  # polls visible on one screen of the feed
IMPRESSION_MAX_SIZE = 10  # keeps the pipe-joined list far below MAX_IMPRESSION_LENGTH
IMPRESSION_RECENCY_GAP = 20.0  # mean rank gap between shown polls, newest first
IMPRESSION_ONLY_PER_INTERACTION = 0.5  # screens seen without acting, per interaction
MAX_PAIR_DENSITY = 0.3  # at most this share of all (user, poll) pairs may be votes
DEFAULT_MAX_POLL_SHARE = 0.15  # by default a user engages with at most this share of all
#                                polls on average: tiny catalogs get fewer events, not an error
MAX_SAMPLING_ROUNDS = 60

# Relative activity per hour of the day (UTC): low at night, peak in the evening.
HOURLY_ACTIVITY = np.array(
    [0.35, 0.25, 0.18, 0.15, 0.15, 0.2, 0.35, 0.6, 0.8, 0.85, 0.85, 0.9,
     1.0, 0.95, 0.9, 0.9, 0.95, 1.0, 1.1, 1.25, 1.35, 1.3, 1.0, 0.6]
)

LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "pt_BR", "it_IT", "ja_JP")
LOCALE_OF_COMMUNITY_SHARE = 0.6  # users mostly share their community's locale
AGE_SPREAD = 9.0  # standard deviation of age inside a community
AGE_RANGE = (13, 80)

HUNCH = "HUNCH"
COMMENT = "COMMENT"
IMPRESSIONS_FILE = "impressions.csv"
FOLLOWS_FILE = "follows.csv"
# The text of every COMMENT event, one row each. items.csv's COMMENTS is derived from it
# (the first COMMENTS_PER_POLL comments of a poll), so an evaluation can rebuild COMMENTS
# from the events a fold may learn from instead of leaking held-out users' future ones.
COMMENTS_FILE = "comments.csv"
COMMENT_COLUMNS = ("USER_ID", "ITEM_ID", "TIMESTAMP", "TEXT")
COMMENTS_PER_POLL = 3  # an items row carries a preview of a poll's first few comments
# A second random stream for the text of comments past the preview: the main stream's
# draws stay as they were, so items.csv keeps its bytes for the same arguments.
_COMMENT_TEXT_STREAM = 1
GROUND_TRUTH_FILE = "ground_truth.json"
IMPRESSION_COLUMNS = ("USER_ID", "TIMESTAMP", "IMPRESSION", "RECOMMENDATION_ID")
FOLLOW_COLUMNS = ("FOLLOWER_ID", "FOLLOWEE_ID", "TIMESTAMP")

TOPIC_VOCABULARY: dict[str, tuple[str, ...]] = {
    "politics": ("election", "senate", "policy", "campaign", "candidate", "debate",
                 "congress", "governor", "ballot", "parliament", "reform", "mayor",
                 "referendum", "minister", "democracy", "coalition", "lobby",
                 "constitution", "president", "legislation"),
    "sports": ("football", "soccer", "basketball", "goal", "league", "playoffs", "coach",
               "striker", "championship", "tennis", "stadium", "referee", "transfer",
               "olympics", "marathon", "baseball", "hockey", "quarterback", "penalty",
               "tournament"),
    "music": ("album", "concert", "guitar", "singer", "band", "playlist", "lyrics",
              "festival", "drummer", "vinyl", "chorus", "rapper", "symphony", "jazz",
              "tour", "melody", "remix", "grammy", "piano", "headliner"),
    "movies": ("film", "director", "trailer", "actor", "actress", "oscar", "cinema",
               "screenplay", "blockbuster", "premiere", "franchise", "documentary",
               "horror", "comedy", "netflix", "casting", "villain", "superhero",
               "boxoffice", "sequel"),
    "food": ("pizza", "recipe", "burger", "sushi", "vegan", "dessert", "restaurant", "chef",
             "brunch", "taco", "pasta", "spicy", "bakery", "coffee", "barbecue", "noodles",
             "salad", "cheese", "chocolate", "avocado"),
    "travel": ("beach", "flight", "passport", "hotel", "backpacking", "island", "itinerary",
               "airport", "cruise", "roadtrip", "hostel", "luggage", "destination", "visa",
               "mountains", "resort", "sightseeing", "camping", "layover", "souvenir"),
    "technology": ("smartphone", "laptop", "software", "startup", "gadget", "android",
                   "iphone", "processor", "coding", "robot", "cloud", "browser",
                   "wearable", "chip", "blockchain", "keyboard", "battery", "firmware",
                   "programming", "server"),
    "gaming": ("console", "playstation", "xbox", "nintendo", "esports", "speedrun",
               "multiplayer", "rpg", "quest", "boss", "controller", "loot", "shooter",
               "minecraft", "streamer", "patch", "arcade", "indie", "leaderboard",
               "respawn"),
    "fashion": ("sneakers", "dress", "outfit", "denim", "designer", "runway", "jacket",
                "handbag", "vintage", "streetwear", "jewelry", "boots", "tailoring",
                "makeup", "hairstyle", "sunglasses", "fabric", "wardrobe", "couture",
                "lipstick"),
    "fitness": ("workout", "gym", "yoga", "protein", "cardio", "squat", "running",
                "pilates", "deadlift", "stretching", "treadmill", "crossfit", "calories",
                "hiit", "dumbbell", "cycling", "abs", "recovery", "kettlebell", "pushups"),
    "science": ("physics", "telescope", "galaxy", "experiment", "chemistry", "vaccine",
                "genome", "climate", "fossil", "quantum", "laboratory", "nasa", "asteroid",
                "evolution", "molecule", "volcano", "research", "microscope", "neuron",
                "rocket"),
    "pets": ("dog", "cat", "puppy", "kitten", "leash", "veterinarian", "hamster", "parrot",
             "aquarium", "adoption", "grooming", "treats", "breed", "litter", "fetch",
             "bunny", "tortoise", "shelter", "collar", "paws"),
    "finance": ("stocks", "bitcoin", "savings", "mortgage", "budget", "inflation",
                "dividend", "crypto", "investing", "retirement", "salary", "bank", "loan",
                "portfolio", "rent", "credit", "etf", "recession", "taxes", "pension"),
    "parenting": ("toddler", "baby", "homework", "school", "daycare", "diapers", "bedtime",
                  "teenager", "parenting", "nanny", "stroller", "playground", "siblings",
                  "tantrum", "lunchbox", "preschool", "chores", "allowance", "babysitter",
                  "naptime"),
    "books": ("novel", "author", "chapter", "paperback", "bestseller", "library", "poetry",
              "fantasy", "thriller", "bookclub", "memoir", "kindle", "audiobook", "fiction",
              "trilogy", "publisher", "prologue", "bookstore", "literature", "biography"),
    "cars": ("engine", "sedan", "electric", "tesla", "horsepower", "suv", "motorbike",
             "tires", "hybrid", "dealership", "convertible", "mileage", "garage", "racing",
             "pickup", "turbo", "gearbox", "charging", "highway", "carwash"),
}
TOPICS: tuple[str, ...] = tuple(TOPIC_VOCABULARY)
GENERIC_WORDS: tuple[str, ...] = (
    "better", "best", "today", "really", "think", "people", "new", "old", "first",
    "favorite", "week", "weekend", "morning", "night", "worth", "honest", "opinion",
    "everyone", "most", "overrated", "underrated", "time", "year", "ever", "right",
    "wrong", "good", "bad", "great", "love", "hate", "friends", "family", "city", "home",
    "still", "never", "always", "maybe", "actually", "fun", "quick", "big", "small",
    "pick", "question", "seriously", "totally", "kind", "thing", "way", "lot", "guess",
    "choice", "idea", "plan", "last", "next", "whole", "real",
)
PROMOTIONAL_WORDS: tuple[str, ...] = (
    "giveaway", "sponsored", "tickets", "win", "exclusive", "limited", "offer", "launch",
)
QUESTION_OPENERS: tuple[str, ...] = (
    "Which", "Would you rather", "Is", "Do you think", "What is your favorite",
    "Hot take:", "Be honest:", "Who wins:",
)
# Planted informativeness of the text fields, most to least (ground_truth.json's
# "text_field_order"). Each field draws a comparable number of words per poll
# (TEXT_FIELD_WORDS: 4-7 in all, options and option descriptions split over 2-4 options)
# and the share of them that are topic words falls strictly field by field, so how much a
# field tells about a poll's topic follows this order alone, with a clear gap between
# neighbours: an ablation that measures what each field adds must recover it.
TEXT_FIELD_TOPIC_SHARE: dict[str, float] = {
    "QUESTION": 0.8, "OPTIONS": 0.55, "DESCRIPTION": 0.35, "OPTION_DESCRIPTIONS": 0.2,
    "COMMENTS": 0.05,
}
TEXT_FIELD_ORDER: tuple[str, ...] = tuple(
    sorted(TEXT_FIELD_TOPIC_SHARE, key=TEXT_FIELD_TOPIC_SHARE.__getitem__, reverse=True))
# Words per poll of a field, [low, high) as numpy draws them; per option for the fields
# written per option. Comparable across fields so that length does not confound the order.
TEXT_FIELD_WORDS: dict[str, tuple[int, int]] = {
    "QUESTION": (4, 8), "OPTIONS": (1, 3), "DESCRIPTION": (4, 8),
    "OPTION_DESCRIPTIONS": (1, 3), "COMMENTS": (4, 8),
}
STOCK_OPTIONS: tuple[str, ...] = ("Yes, definitely", "No way", "Not sure, maybe",
                                  'Depends on the "vibe"')


# CATEGORY is coarse, as in real apps (SPORTS, not "tennis"): several topics share one
# category, so what a poll is really about is visible only in its text (and in who
# engages with it). With one category per topic, text could add nothing CATEGORY did
# not already say, and the cold-poll value of text could not be measured.
TOPIC_CATEGORY: dict[str, str] = {
    "politics": "SOCIETY", "finance": "SOCIETY", "parenting": "SOCIETY",
    "music": "ENTERTAINMENT", "movies": "ENTERTAINMENT", "gaming": "ENTERTAINMENT",
    "books": "ENTERTAINMENT",
    "food": "LIFESTYLE", "travel": "LIFESTYLE", "fashion": "LIFESTYLE", "pets": "LIFESTYLE",
    "technology": "SCIENCE_AND_TECH", "science": "SCIENCE_AND_TECH",
    "cars": "SCIENCE_AND_TECH",
    "sports": "SPORTS", "fitness": "SPORTS",
}
CATEGORIES: tuple[str, ...] = tuple(dict.fromkeys(TOPIC_CATEGORY.values()))


def category_of(topic: str) -> str:
    """The CATEGORY value of a (non-promotional) poll about ``topic``: its coarse group."""
    return TOPIC_CATEGORY[topic]


# --- Public result -------------------------------------------------------------------


@dataclass(frozen=True)
class DemoDataSummary:
    """Counts of what :func:`generate_demo_data` wrote, and where."""

    out_dir: Path
    users: int
    polls: int
    follows: int
    interactions: int
    hunches: int
    comments: int
    impressions: int
    bursts: int
    communities: int
    topics: int

    def describe(self) -> str:
        return (
            f"wrote {self.users:,} users, {self.polls:,} polls, {self.follows:,} follows, "
            f"{self.interactions:,} interactions ({self.hunches:,} hunches, "
            f"{self.comments:,} comments), {self.impressions:,} impression-only events, "
            f"{self.bursts} planted bursts to {self.out_dir}\n"
            f"planted: {self.communities} communities, {self.topics} topics "
            f"(see {GROUND_TRUTH_FILE})"
        )


# --- Progress ------------------------------------------------------------------------

_STAGES = ("people and communities", "follows", "polls", "interactions", "impressions",
           "writing files")


@contextmanager
def _progress(enabled: bool) -> Iterator:
    """Yields ``step(description)``; shows a rich progress bar on stderr when enabled."""
    if not enabled:
        yield lambda description: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description:<24}"), BarColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True)) as bar:
        task = bar.add_task(_STAGES[0], total=len(_STAGES))
        seen = [False]

        def step(description: str) -> None:
            if seen[0]:
                bar.advance(task)
            seen[0] = True
            bar.update(task, description=description)

        yield step
        bar.update(task, completed=len(_STAGES), description="done")


# --- Generation ----------------------------------------------------------------------


@dataclass
class _World:
    """The latent structure, kept in arrays indexed by user / poll / topic number."""

    community: np.ndarray  # (U,) community of each user
    affinity: np.ndarray  # (U, T) topic mix of each user, rows sum to 1
    activity: np.ndarray  # (U,) relative activity, mean 1
    age: np.ndarray
    locale: np.ndarray
    follower: np.ndarray  # (E,) follows, sorted by followee
    followee: np.ndarray
    follow_ts: np.ndarray
    author: np.ndarray  # (P,)
    topic: np.ndarray  # (P,)
    promotional: np.ndarray  # (P,) bool
    created: np.ndarray  # (P,) epoch seconds
    appeal: np.ndarray  # (P,)
    community_topics: np.ndarray  # (C, T)
    community_locale: np.ndarray
    community_age: np.ndarray


def _id_width(n: int) -> int:
    return max(4, len(str(n)))


def _diurnal_times(rng: np.random.Generator, n: int, start: int, days: int) -> np.ndarray:
    day = rng.integers(0, days, n)
    hour = rng.choice(24, size=n, p=HOURLY_ACTIVITY / HOURLY_ACTIVITY.sum())
    return start + day * DAY + hour * HOUR + rng.integers(0, HOUR, n)


def _build_people(rng: np.random.Generator, n_users: int, n_topics: int) -> dict:
    n_comm = int(np.clip(round(math.sqrt(n_users) / 3), 3, 50))
    min_size = max(2, min(5, n_users // (2 * n_comm)))
    shares = rng.dirichlet(np.full(n_comm, COMMUNITY_DIRICHLET))
    sizes = min_size + rng.multinomial(n_users - min_size * n_comm, shares)
    community = rng.permutation(np.repeat(np.arange(n_comm), sizes))
    community_topics = rng.dirichlet(np.full(n_topics, COMMUNITY_TOPIC_DIRICHLET), n_comm)
    own = rng.dirichlet(np.full(n_topics, 0.5), n_users)
    affinity = (1 - USER_TOPIC_NOISE) * community_topics[community] + USER_TOPIC_NOISE * own
    activity = rng.lognormal(0.0, USER_ACTIVITY_SIGMA, n_users)
    activity /= activity.mean()
    community_locale = rng.integers(0, len(LOCALES), n_comm)
    community_age = rng.uniform(20, 48, n_comm)
    locale = np.where(rng.random(n_users) < LOCALE_OF_COMMUNITY_SHARE,
                      community_locale[community], rng.integers(0, len(LOCALES), n_users))
    age = np.clip(np.rint(rng.normal(community_age[community], AGE_SPREAD)), *AGE_RANGE)
    return dict(community=community, affinity=affinity, activity=activity, age=age.astype(int),
                locale=locale, community_topics=community_topics,
                community_locale=community_locale, community_age=community_age)


def _build_follows(rng: np.random.Generator, community: np.ndarray, activity: np.ndarray,
                   start: int, within: float | None = None,
                   community_topics: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``within`` None: FOLLOW_WITHIN_COMMUNITY of follows drawn inside the community and
    the rest from everyone (the demo's draw, kept byte for byte). A number: exactly that
    share inside; the rest go to other communities, the less alike in taste (cosine of
    the ``community_topics`` mixes) the likelier, so those follows cross tastes."""
    n_users = len(community)
    fitness = (rng.pareto(FOLLOWEE_FITNESS_PARETO, n_users) + 1.0) * np.sqrt(activity)
    outdeg = np.clip(np.rint(rng.lognormal(math.log(FOLLOW_OUTDEGREE_MEDIAN),
                                           FOLLOW_OUTDEGREE_SIGMA, n_users)),
                     1, min(n_users - 1, MAX_FOLLOWS_PER_USER)).astype(np.int64)
    follower = np.repeat(np.arange(n_users), outdeg)
    inside = rng.random(len(follower)) < (FOLLOW_WITHIN_COMMUNITY if within is None else within)
    followee = np.empty(len(follower), dtype=np.int64)
    outside = ~inside
    if within is None:
        followee[outside] = rng.choice(n_users, size=int(outside.sum()),
                                       p=fitness / fitness.sum())

    def draw(weight: np.ndarray, pick: np.ndarray) -> None:  # followees by weight x fitness
        members = np.flatnonzero(weight)
        w = weight[members] * fitness[members]
        followee[pick] = members[rng.choice(len(members), size=int(pick.sum()), p=w / w.sum())]

    if within is not None:
        unit = community_topics / np.linalg.norm(community_topics, axis=1, keepdims=True)
        unlike = np.clip(1.0 - unit @ unit.T, 0.0, 1.0) ** CROSS_TASTE_SHARPNESS
    for c in range(int(community.max()) + 1):
        mine = community[follower] == c
        draw((community == c).astype(float), inside & mine)
        if within is not None:
            draw(np.where(community != c, unlike[c, community], 0.0), outside & mine)
    keep = follower != followee
    key = sorted_distinct(follower[keep] * n_users + followee[keep])
    follower, followee = key // n_users, key % n_users
    order = np.argsort(followee, kind="stable")  # grouped by followee for _FollowerIndex
    follower, followee = follower[order], followee[order]
    ts = start - rng.integers(1, FOLLOW_HISTORY_DAYS * DAY, len(follower))
    return follower, followee, ts


def _build_polls(rng: np.random.Generator, n_polls: int, affinity: np.ndarray,
                 activity: np.ndarray, start: int, days: int) -> dict:
    w = activity ** AUTHOR_ACTIVITY_EXPONENT
    author = rng.choice(len(activity), size=n_polls, p=w / w.sum())
    # Inverse-CDF per row: a poll's topic is drawn from its author's own topic mix.
    cum = np.cumsum(affinity[author], axis=1)
    topic = (rng.random(n_polls)[:, None] * cum[:, -1:] > cum).sum(axis=1)
    topic = np.minimum(topic, affinity.shape[1] - 1)
    promotional = rng.random(n_polls) < PROMOTIONAL_SHARE
    created = _diurnal_times(rng, n_polls, start, days)
    appeal = rng.lognormal(0.0, POLL_APPEAL_SIGMA, n_polls)
    return dict(author=author, topic=topic, promotional=promotional, created=created,
                appeal=appeal)


class _UserSampler:
    """Draws the user who engages with a poll: P(u | p) ∝ base_u(topic) * boost^[u→author].

    The boosted distribution is a two-part mixture (every user by base weight, or one of
    the author's followers by base weight), so each draw is one ``searchsorted`` on
    cumulative weights laid out topic-major; no per-event Python work.
    """

    def __init__(self, w: _World, follow_boost: float):
        n_users, n_topics = w.affinity.shape
        base = w.activity[:, None] * w.affinity  # (U, T)
        self._n_users, self._n_edges = n_users, len(w.follower)
        self._base_cum = np.concatenate([[0.0], np.cumsum(base.T.ravel())])
        self._base_total = base.sum(axis=0)
        self._indptr = np.searchsorted(w.followee, np.arange(n_users + 1))
        self._followers = w.follower
        fw = base[w.follower]  # (E, T) weight of each follow's follower, per topic
        self._f_cum = np.concatenate([[0.0], np.cumsum(fw.T.ravel())])
        seg = self._indptr[None, :] + (np.arange(n_topics) * self._n_edges)[:, None]
        follower_mass = (self._f_cum[seg[:, 1:]] - self._f_cum[seg[:, :-1]]).T  # (U, T)
        extra = (follow_boost - 1.0) * follower_mass
        self._p_follower = extra / (self._base_total[None, :] + extra)  # (author, topic)
        self._boost = follow_boost

    def follower_share(self, author: np.ndarray, topic: np.ndarray) -> np.ndarray:
        return self._p_follower[author, topic]

    def sample(self, rng: np.random.Generator, author: np.ndarray,
               topic: np.ndarray) -> np.ndarray:
        n = len(author)
        from_followers = rng.random(n) < self._p_follower[author, topic]
        u = rng.random(n)
        lo = topic * self._n_users
        r = self._base_cum[lo] + u * self._base_total[topic]
        idx = np.searchsorted(self._base_cum, r, side="right") - 1
        user = np.clip(idx - lo, 0, self._n_users - 1)
        if from_followers.any():
            a, t, uf = author[from_followers], topic[from_followers], u[from_followers]
            s = t * self._n_edges + self._indptr[a]
            e = t * self._n_edges + self._indptr[a + 1]
            r = self._f_cum[s] + uf * (self._f_cum[e] - self._f_cum[s])
            idx = np.clip(np.searchsorted(self._f_cum, r, side="right") - 1, s, e - 1)
            user[from_followers] = self._followers[idx - t * self._n_edges]
        return user

    def weights(self, author: int, topic: int) -> np.ndarray:
        """The full (unnormalised) weight vector over users for one poll; for bursts."""
        lo = topic * self._n_users
        w = np.diff(self._base_cum[lo:lo + self._n_users + 1])
        followers = self._followers[self._indptr[author]:self._indptr[author + 1]]
        w = w.copy()
        w[followers] *= self._boost
        return w


def _recency_delay(rng: np.random.Generator, n: int) -> np.ndarray:
    fast = rng.random(n) < RECENCY_FAST_SHARE
    return rng.exponential(np.where(fast, RECENCY_FAST_MEAN, RECENCY_SLOW_MEAN))


def _sample_votes(rng: np.random.Generator, w: _World, sampler: _UserSampler, target: int,
                  end: int, taken: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``target`` distinct (user, poll) votes with their times, avoiding ``taken`` pairs."""
    n_polls = len(w.author)
    max_hour = HOURLY_ACTIVITY.max()
    counts = np.zeros(n_polls)
    keys = np.sort(taken)
    got_u, got_p, got_t = [], [], []
    n_got, acceptance = 0, 0.35
    for round_no in range(MAX_SAMPLING_ROUNDS):
        remaining = target - n_got
        if remaining <= 0:
            break
        rounds_left = max(1, POPULARITY_ROUNDS - round_no)
        want = math.ceil(remaining / rounds_left)
        n = int(want / max(acceptance, 0.02) * 1.1) + 16
        weight = w.appeal * (1.0 + counts) ** POPULARITY_FEEDBACK_EXPONENT
        p = rng.choice(n_polls, size=n, p=weight / weight.sum())
        t = w.created[p] + _recency_delay(rng, n).astype(np.int64) + 1
        hour = (t // HOUR) % 24
        ok = (t < end) & (rng.random(n) * max_hour < HOURLY_ACTIVITY[hour])
        u = sampler.sample(rng, w.author[p], w.topic[p])
        ok &= u != w.author[p]  # authors do not vote on their own polls
        p, t, u = p[ok], t[ok], u[ok]
        key = u.astype(np.int64) * n_polls + p
        key, first = np.unique(key, return_index=True)
        fresh = ~np.isin(key, keys, assume_unique=True)
        first = np.sort(first[fresh])[:want]  # keep draw order so truncation is unbiased
        acceptance = max(len(np.flatnonzero(fresh)) / n, 1e-3)
        p, t, u = p[first], t[first], u[first]
        keys = np.union1d(keys, u.astype(np.int64) * n_polls + p)
        got_u.append(u), got_p.append(p), got_t.append(t)
        counts += np.bincount(p, minlength=n_polls)
        n_got += len(p)
    else:
        raise DemoDataError(
            f"could only place {n_got:,} of {target:,} interactions; ask for fewer "
            "interactions or more users/polls/days"
        )
    return np.concatenate(got_u), np.concatenate(got_p), np.concatenate(got_t)


def _burst_cap(n_users: int, total: int, n_bursts: int) -> int:
    """Most votes one burst may have: a share of users, and never half the data."""
    cap = max(MIN_BURST_VOTES, int(MAX_BURST_USER_SHARE * n_users))
    # Bursts may never take more than half the interactions asked for (tiny datasets).
    return min(cap, max(1, total // (2 * max(n_bursts, 1))))


def _plant_bursts(rng: np.random.Generator, w: _World, sampler: _UserSampler, n_bursts: int,
                  total: int, timescale: int, end: int,
                  burst_share: float = BURST_SHARE) -> list[dict]:
    n_users = len(w.activity)
    eligible = np.flatnonzero(w.created + BURST_ONSET_DELAY[1] + timescale < end)
    if len(eligible) == 0:
        eligible = np.flatnonzero(w.created + BURST_ONSET_DELAY[0] + timescale < end)
    n_bursts = min(n_bursts, len(eligible))
    polls = np.sort(rng.choice(eligible, size=n_bursts, replace=False))
    mean_size = burst_share * total / max(n_bursts, 1)
    cap = _burst_cap(n_users, total, n_bursts)
    bursts = []
    for p in polls.tolist():
        size = int(np.clip(rng.lognormal(math.log(max(mean_size, 1)), 0.4),
                           min(MIN_BURST_VOTES, cap), cap))
        latest = min(BURST_ONSET_DELAY[1], end - timescale - w.created[p] - 1)
        onset = int(w.created[p]
                    + rng.uniform(BURST_ONSET_DELAY[0], max(latest, BURST_ONSET_DELAY[0])))
        weights = sampler.weights(int(w.author[p]), int(w.topic[p]))
        weights[w.author[p]] = 0.0
        size = min(size, int(np.count_nonzero(weights)))
        users = rng.choice(n_users, size=size, replace=False, p=weights / weights.sum())
        # Exponential decay with mean ``timescale``, cut after BURST_SPAN_TIMESCALES of
        # them or at the end of the window (inverse CDF of the cut distribution). The
        # uniform draw is the one a flat burst used, so the rest of the data stays the same.
        span = max(1, min(BURST_SPAN_TIMESCALES * timescale, end - onset))
        u = (rng.integers(0, timescale, size) + 0.5) / timescale
        offsets = -timescale * np.log1p(-u * -np.expm1(-span / timescale))
        times = onset + np.minimum(offsets.astype(np.int64), span - 1)
        bursts.append(dict(poll=p, onset=onset, users=users, times=times, span=span))
    return bursts


def _comments(rng: np.random.Generator, w: _World, u: np.ndarray, p: np.ndarray,
              t: np.ndarray, end: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n_topics = w.affinity.shape[1]
    relative = w.affinity[u, w.topic[p]] * n_topics  # 1.0 = average affinity
    rate = np.minimum(COMMENT_BASE_RATE * relative, MAX_COMMENT_RATE)
    pick = rng.random(len(u)) < rate
    ct = t[pick] + 1 + rng.exponential(COMMENT_DELAY_MEAN, int(pick.sum())).astype(np.int64)
    words = np.clip(np.rint(rng.lognormal(math.log(COMMENT_WORDS_MEDIAN), 0.7, len(ct))
                            * np.sqrt(relative[pick])), 1, 200)
    ok = ct < end
    return u[pick][ok], p[pick][ok], ct[ok], words[ok]


def _impression_lists(rng: np.random.Generator, created: np.ndarray, t: np.ndarray,
                      shown: np.ndarray | None, poll_ids: list[str]) -> list[str]:
    """Pipe-joined lists of polls visible at ``t``: ``shown`` (if any) among recent others."""
    n = len(t)
    order = np.argsort(created, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    alive = np.searchsorted(created[order], t, side="right")  # polls created by then
    k = np.clip(rng.poisson(IMPRESSION_MEAN_SIZE - 1, n) + 1, 1, IMPRESSION_MAX_SIZE)
    n_others = IMPRESSION_MAX_SIZE - (0 if shown is None else 1)
    # Strictly increasing gaps back from the newest poll: distinct, recent ones likelier.
    gaps = rng.geometric(1.0 / IMPRESSION_RECENCY_GAP, (n, n_others))
    idx = alive[:, None] - np.cumsum(gaps, axis=1)
    if shown is None:
        idx[:, 0] = np.maximum(idx[:, 0], 0)  # a screen shows at least the newest poll
    valid = idx >= 0
    valid &= np.arange(n_others)[None, :] < (k - (0 if shown is None else 1))[:, None]
    if shown is not None:
        valid &= idx != rank[shown][:, None]
        idx = np.concatenate([rank[shown][:, None], idx], axis=1)
        valid = np.concatenate([np.ones((n, 1), bool), valid], axis=1)
    polls = np.where(valid, order[np.clip(idx, 0, None)], len(poll_ids))
    # Shuffle each row so the acted-on poll sits anywhere; invalid slots sort last.
    keys = np.where(valid, rng.random(polls.shape), 2.0)
    polls = np.take_along_axis(polls, np.argsort(keys, axis=1), axis=1)
    lookup = np.array(poll_ids + [""], dtype=object)
    rows = lookup[polls].tolist()
    counts = valid.sum(axis=1).tolist()
    lists = ["|".join(r[:c]) for r, c in zip(rows, counts)]
    return lists


def _words(rng: np.random.Generator, topic_words: Sequence[str], n: int,
           topic_share: float) -> list[str]:
    from_topic = rng.random(n) < topic_share
    ti = rng.integers(0, len(topic_words), n)
    gi = rng.integers(0, len(GENERIC_WORDS), n)
    return [topic_words[a] if f else GENERIC_WORDS[b]
            for f, a, b in zip(from_topic.tolist(), ti.tolist(), gi.tolist())]


def _vocabulary(topic: str, promotional: bool) -> tuple[str, ...]:
    return TOPIC_VOCABULARY[topic] + (PROMOTIONAL_WORDS if promotional else ())


def _field_words(rng: np.random.Generator, vocab: Sequence[str], field: str) -> list[str]:
    low, high = TEXT_FIELD_WORDS[field]
    return _words(rng, vocab, int(rng.integers(low, high)), TEXT_FIELD_TOPIC_SHARE[field])


def _comment_text(rng: np.random.Generator, vocab: Sequence[str]) -> str:
    return (f'"{" ".join(_field_words(rng, vocab, "COMMENTS"))}", '
            + GENERIC_WORDS[int(rng.integers(len(GENERIC_WORDS)))])


def _poll_text(rng: np.random.Generator, topic: str, promotional: bool,
               n_comments: int) -> tuple[str, str, str, str, list[str]]:
    """QUESTION, OPTIONS, DESCRIPTION, OPTION_DESCRIPTIONS and the first comments' texts.

    Signal falls field by field in TEXT_FIELD_ORDER (see TEXT_FIELD_TOPIC_SHARE).
    """
    vocab = _vocabulary(topic, promotional)
    opener = QUESTION_OPENERS[int(rng.integers(len(QUESTION_OPENERS)))]
    question = f"{opener} {' '.join(_field_words(rng, vocab, 'QUESTION'))}?"
    n_opt = int(rng.integers(2, 5))
    options = []
    for _ in range(n_opt):
        if rng.random() < 0.25:
            options.append(STOCK_OPTIONS[int(rng.integers(len(STOCK_OPTIONS)))])
        else:
            options.append(" ".join(_field_words(rng, vocab, "OPTIONS")).capitalize())
    description = ""
    if rng.random() < 0.7:
        words = _field_words(rng, vocab, "DESCRIPTION")
        description = " ".join(words).capitalize() + "."
        if rng.random() < 0.2:  # some descriptions carry quotes and a line break
            description += f'\nAs my friend said, "{words[0]}, {words[-1]}".'
    option_descriptions = ""
    if rng.random() < 0.4:
        option_descriptions = "|".join(" ".join(_field_words(rng, vocab, "OPTION_DESCRIPTIONS"))
                                       for _ in range(n_opt))
    comments = [_comment_text(rng, vocab) for _ in range(min(n_comments, COMMENTS_PER_POLL))]
    return question, "|".join(options), description, option_descriptions, comments


def comments_field(texts: Sequence[str]) -> str:
    """A poll's COMMENTS item field from its comments' texts, oldest first."""
    return "\n".join(texts[:COMMENTS_PER_POLL])


def read_comments(directory: Path | str) -> dict[tuple[str, str, int], str] | None:
    """The text of each COMMENT event, keyed by (USER_ID, ITEM_ID, TIMESTAMP), from
    ``comments.csv``; None when the directory has no such file."""
    path = Path(directory) / COMMENTS_FILE
    if not path.exists():
        return None
    with path.open(newline="", encoding="utf-8-sig") as f:  # a BOM is no column
        reader = csv.DictReader(f)
        missing = set(COMMENT_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise DemoDataError(f"{path}: missing column(s) {', '.join(sorted(missing))}; "
                                f"expected {', '.join(COMMENT_COLUMNS)}")
        out = {}
        for line, row in enumerate(reader, start=2):
            try:
                timestamp = int(row["TIMESTAMP"])
            except ValueError:
                raise DemoDataError(f"{path}:{line}: TIMESTAMP {row['TIMESTAMP']!r} is not an "
                                    "integer (epoch seconds)") from None
            out[row["USER_ID"], row["ITEM_ID"], timestamp] = row["TEXT"]
        return out


def _validate(users: int, polls: int, days: int, total: int, burst_timescale: int,
              follow_boost: float, burst_share: float | None = None) -> None:
    if burst_share is not None and not 0.0 < burst_share <= 0.5:
        raise DemoDataError(
            f"burst_share={burst_share} must be in (0, 0.5]: the share of interactions the "
            "planted bursts add (default 0.03); above half, bursts would be the whole feed")
    if users < 10 or polls < 10 or days < 1:
        raise DemoDataError(
            f"need at least 10 users, 10 polls and 1 day (got users={users}, polls={polls}, "
            f"days={days})"
        )
    if not 60 <= burst_timescale <= days * DAY / 3:
        raise DemoDataError(
            f"burst_timescale={burst_timescale}s must be between 60 s and a third of the "
            f"window ({days * DAY // 3}s); use more days or a shorter timescale"
        )
    if follow_boost < 1.0:
        raise DemoDataError(f"follow_boost={follow_boost} must be at least 1.0 (1.0 = no effect)")
    if total < 1:
        raise DemoDataError("ask for at least one interaction")
    if total > MAX_PAIR_DENSITY * users * polls:
        raise DemoDataError(
            f"{total:,} interactions would fill more than {MAX_PAIR_DENSITY:.0%} of all "
            f"{users:,} x {polls:,} user-poll pairs; add users or polls, or ask for fewer"
        )


def generate_demo_data(
    out_dir: Path | str,
    *,
    users: int = 2000,
    polls: int = 5000,
    days: int = 14,
    seed: int = 1,
    follow_effect: bool = True,
    follow_boost: float = DEFAULT_FOLLOW_BOOST,
    burst_timescale: int = DEFAULT_BURST_TIMESCALE,
    burst_share: float | None = None,
    bursts: int | None = None,
    follow_within_community: float | None = None,
    interactions: int | None = None,
    events_per_user: float | None = None,
    start: int = DEFAULT_START,
    progress: bool = False,
) -> DemoDataSummary:
    """Write the demo datasets and the planted truth to ``out_dir``; same arguments, same bytes.

    ``interactions`` (total rows of interactions.csv) or ``events_per_user`` (average per
    user over the window) set the size; by default each user averages
    ``DEFAULT_EVENTS_PER_USER_PER_DAY * days`` events (fewer for a tiny catalog).
    ``follow_effect=False`` plants no follow effect (``follow_boost`` is then ignored);
    ``burst_timescale`` (seconds) is the decay time of each planted viral burst;
    ``burst_share`` is the share of interactions the bursts add (default
    ``BURST_SHARE``; when given, the number of bursts grows as needed to reach it unless
    ``bursts`` is given too). ``follow_within_community`` (0 to 1) is the exact share of
    follows inside the follower's community, the rest going to communities unlike it in
    taste (``CROSS_TASTE_SHARPNESS``); None keeps the demo's follows
    (``FOLLOW_WITHIN_COMMUNITY`` inside, the rest to anyone). A low share plants a world
    where labelling users by their taste community pulls feeds away from followees' polls.
    """
    if interactions is not None and events_per_user is not None:
        raise DemoDataError("give interactions or events_per_user, not both")
    if events_per_user is None:
        events_per_user = min(DEFAULT_EVENTS_PER_USER_PER_DAY * days,
                              DEFAULT_MAX_POLL_SHARE * polls)
    total = int(interactions if interactions is not None else round(events_per_user * users))
    burst_timescale = int(burst_timescale)
    _validate(users, polls, days, total, burst_timescale, follow_boost, burst_share)
    if follow_within_community is not None and not 0.0 <= follow_within_community <= 1.0:
        raise DemoDataError(
            f"follow_within_community={follow_within_community} must be between 0 and 1: "
            f"the share of follows inside the community (None: the demo's "
            f"{FOLLOW_WITHIN_COMMUNITY}, the rest to anyone)")
    n_bursts = bursts if bursts is not None else max(MIN_BURSTS, polls // POLLS_PER_BURST)
    if burst_share is not None and bursts is None:
        typical = BURST_CAP_FILL * _burst_cap(users, total, n_bursts)
        n_bursts = max(n_bursts, math.ceil(burst_share * total / typical))
    out = Path(out_dir)
    end = start + days * DAY
    boost = follow_boost if follow_effect else 1.0
    rng = np.random.default_rng(seed)
    uw, pw = _id_width(users), _id_width(polls)
    user_ids = [f"u{i:0{uw}d}" for i in range(users)]
    poll_ids = [f"p{i:0{pw}d}" for i in range(polls)]

    with _progress(progress) as step:
        step(_STAGES[0])
        people = _build_people(rng, users, len(TOPICS))
        step(_STAGES[1])
        follower, followee, follow_ts = _build_follows(rng, people["community"],
                                                       people["activity"], start,
                                                       follow_within_community,
                                                       people["community_topics"])
        step(_STAGES[2])
        poll = _build_polls(rng, polls, people["affinity"], people["activity"], start, days)
        world = _World(follower=follower, followee=followee, follow_ts=follow_ts,
                       **people, **poll)
        sampler = _UserSampler(world, boost)

        step(_STAGES[3])
        planted = _plant_bursts(rng, world, sampler, n_bursts, total, burst_timescale, end,
                                BURST_SHARE if burst_share is None else burst_share)
        bu = np.concatenate([b["users"] for b in planted]) if planted else np.zeros(0, int)
        bp = np.concatenate([np.full(len(b["users"]), b["poll"]) for b in planted]) \
            if planted else np.zeros(0, int)
        bt = np.concatenate([b["times"] for b in planted]) if planted else np.zeros(0, int)
        # Bursts and their comments come out of the total; background votes fill the rest.
        hu, hp, ht = bu, bp, bt
        cu, cp, ct, cwords = _comments(rng, world, hu, hp, ht, end)
        comment_share = EXPECTED_COMMENT_SHARE
        while len(hu) + len(cu) < total:  # usually once; again if comments fell short
            deficit = total - len(hu) - len(cu)
            vu, vp, vt = _sample_votes(rng, world, sampler,
                                       max(1, math.ceil(deficit / (1 + comment_share))), end,
                                       hu.astype(np.int64) * polls + hp)
            more_u, more_p, more_t, more_words = _comments(rng, world, vu, vp, vt, end)
            comment_share = max(len(more_u) / len(vu), 0.5 * comment_share)
            hu, hp, ht = (np.concatenate([hu, vu]), np.concatenate([hp, vp]),
                          np.concatenate([ht, vt]))
            cu, cp, ct = (np.concatenate([cu, more_u]), np.concatenate([cp, more_p]),
                          np.concatenate([ct, more_t]))
            cwords = np.concatenate([cwords, more_words])
        eu = np.concatenate([hu, cu])
        ep = np.concatenate([hp, cp])
        et = np.concatenate([ht, ct])
        is_comment = np.concatenate([np.zeros(len(hu), bool), np.ones(len(cu), bool)])
        value = np.concatenate([np.ones(len(hu)), cwords])
        is_burst = np.zeros(len(eu), bool)
        is_burst[:len(bu)] = True
        # Trim to the exact size asked for, never touching a planted burst vote.
        if len(eu) > total:
            droppable = np.flatnonzero(~is_burst)
            drop = rng.choice(droppable, size=min(len(eu) - total, len(droppable)), replace=False)
            keep = np.ones(len(eu), bool)
            keep[drop] = False
            eu, ep, et, is_comment, value = (eu[keep], ep[keep], et[keep], is_comment[keep],
                                             value[keep])
        order = np.lexsort((is_comment, ep, eu, et))
        eu, ep, et, is_comment, value = (eu[order], ep[order], et[order], is_comment[order],
                                         value[order])

        step(_STAGES[4])
        shown = _impression_lists(rng, world.created, et, ep, poll_ids)
        n_only = int(round(IMPRESSION_ONLY_PER_INTERACTION * len(eu)))
        w_users = world.activity / world.activity.sum()
        mu = rng.choice(users, size=n_only, p=w_users)
        mt = _diurnal_times(rng, n_only, start, days)
        first_poll = int(world.created.min())
        mask = mt >= first_poll  # nothing can be shown before the first poll exists
        mu, mt = mu[mask], mt[mask]
        order = np.lexsort((mu, mt))
        mu, mt = mu[order], mt[order]
        only_lists = _impression_lists(rng, world.created, mt, None, poll_ids)

        step(_STAGES[5])
        out.mkdir(parents=True, exist_ok=True)
        comment_counts = np.bincount(ep[is_comment], minlength=polls)
        previews = _write_items(rng, out, world, poll_ids, user_ids, comment_counts)
        _write_comments(np.random.default_rng([seed, _COMMENT_TEXT_STREAM]), out, world,
                        previews, eu[is_comment], ep[is_comment], et[is_comment],
                        user_ids, poll_ids)
        _write_users(out, world, user_ids)
        _write_interactions(out, eu, ep, et, is_comment, value, shown, user_ids, poll_ids)
        _write_csv(out / IMPRESSIONS_FILE, IMPRESSION_COLUMNS,
                   zip([user_ids[i] for i in mu.tolist()], mt.tolist(), only_lists,
                       [""] * len(mu)))
        f_order = np.lexsort((followee, follower, follow_ts))
        _write_csv(out / FOLLOWS_FILE, FOLLOW_COLUMNS,
                   zip([user_ids[i] for i in follower[f_order].tolist()],
                       [user_ids[i] for i in followee[f_order].tolist()],
                       follow_ts[f_order].tolist()))
        n_comments = int(is_comment.sum())
        summary = DemoDataSummary(
            out_dir=out, users=users, polls=polls, follows=len(follower),
            interactions=len(eu), hunches=len(eu) - n_comments, comments=n_comments,
            impressions=len(mu), bursts=len(planted),
            communities=len(world.community_topics), topics=len(TOPICS),
        )
        _write_ground_truth(out, world, planted, user_ids, poll_ids, summary, dict(
            seed=seed, users=users, polls=polls, days=days, start=start, end=end,
            follow_effect=follow_effect, follow_boost=boost,
            burst_timescale=burst_timescale, interactions=total,
            # Only when asked for: default output stays byte-identical to earlier versions.
            **({} if burst_share is None else {"burst_share": burst_share}),
            **({} if follow_within_community is None
               else {"follow_within_community": follow_within_community}),
        ))
    return summary


def _write_csv(path: Path, header: Sequence[str], rows) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_MINIMAL)
        writer.writerow(header)
        writer.writerows(rows)


def _write_interactions(out: Path, u, p, t, is_comment, value, shown: list[str],
                        user_ids: list[str], poll_ids: list[str]) -> None:
    types = np.where(is_comment, COMMENT, HUNCH).tolist()
    _write_csv(out / schemas.CSV_FILES["interactions"], schemas.INTERACTIONS.names,
               zip([user_ids[i] for i in u.tolist()], [poll_ids[i] for i in p.tolist()],
                   t.tolist(), types, value.tolist(), shown, [""] * len(u)))
    schemas.write_schema(out, schemas.INTERACTIONS)


def _write_items(rng: np.random.Generator, out: Path, w: _World, poll_ids: list[str],
                 user_ids: list[str], comment_counts: np.ndarray) -> list[list[str]]:
    """Write items.csv; returns each poll's first comments' texts (its COMMENTS)."""
    rows = []
    previews = []
    for i, (topic, promo, author, created, nc) in enumerate(zip(
            w.topic.tolist(), w.promotional.tolist(), w.author.tolist(),
            w.created.tolist(), comment_counts.tolist())):
        name = TOPICS[topic]
        *text, comments = _poll_text(rng, name, promo, nc)
        previews.append(comments)
        category = schemas.PROMOTIONAL_EVENT if promo else category_of(name)
        rows.append((poll_ids[i], category, user_ids[author], created, *text,
                     comments_field(comments)))
    _write_csv(out / schemas.CSV_FILES["items"], schemas.ITEMS.names, rows)
    schemas.write_schema(out, schemas.ITEMS)
    return previews


def _write_comments(rng: np.random.Generator, out: Path, w: _World, previews: list[list[str]],
                    u: np.ndarray, p: np.ndarray, t: np.ndarray, user_ids: list[str],
                    poll_ids: list[str]) -> None:
    """comments.csv: every COMMENT event's text. ``u, p, t`` are in file order (time
    first), so a poll's first comments get the preview texts items.csv shows."""
    seen = np.zeros(len(poll_ids), np.int64)
    rows = []
    for ui, pi, ti in zip(u.tolist(), p.tolist(), t.tolist()):
        k = seen[pi]
        seen[pi] += 1
        text = (previews[pi][k] if k < len(previews[pi]) else
                _comment_text(rng, _vocabulary(TOPICS[w.topic[pi]], bool(w.promotional[pi]))))
        rows.append((user_ids[ui], poll_ids[pi], ti, text))
    _write_csv(out / COMMENTS_FILE, COMMENT_COLUMNS, rows)


def _write_users(out: Path, w: _World, user_ids: list[str]) -> None:
    # CLUSTER and COMMUNITY stay empty: the follower graph's clustering fills them, and
    # the planted communities must not leak into the data a model sees.
    _write_csv(out / schemas.CSV_FILES["users"], schemas.USERS.names,
               ((uid, age, LOCALES[loc], "", "") for uid, age, loc in
                zip(user_ids, w.age.tolist(), w.locale.tolist())))
    schemas.write_schema(out, schemas.USERS)


def _write_ground_truth(out: Path, w: _World, planted: list[dict], user_ids: list[str],
                        poll_ids: list[str], summary: DemoDataSummary, params: dict) -> None:
    truth = {
        "parameters": params,
        "event_values": {HUNCH: "1.0 (a vote)", COMMENT: "length of the comment in words"},
        "topics": [{"id": i, "name": t, "category": category_of(t),
                    "vocabulary": list(TOPIC_VOCABULARY[t])} for i, t in enumerate(TOPICS)],
        "communities": [
            {"id": c, "size": int((w.community == c).sum()),
             "topic_preference": [round(x, 4) for x in w.community_topics[c].tolist()],
             "locale": LOCALES[int(w.community_locale[c])],
             "mean_age": round(float(w.community_age[c]), 1)}
            for c in range(len(w.community_topics))
        ],
        # Text fields from most to least informative about a poll's topic, with each
        # field's share of topic words (TEXT_FIELD_TOPIC_SHARE).
        "text_field_order": list(TEXT_FIELD_ORDER),
        "text_field_topic_share": dict(TEXT_FIELD_TOPIC_SHARE),
        "user_community": dict(zip(user_ids, w.community.tolist())),
        "polls": {
            pid: {"topic": TOPICS[t], "author": user_ids[a], "promotional": pr,
                  "category": schemas.PROMOTIONAL_EVENT if pr else category_of(TOPICS[t])}
            for pid, t, a, pr in zip(poll_ids, w.topic.tolist(), w.author.tolist(),
                                     w.promotional.tolist())
        },
        "bursts": [
            {"item_id": poll_ids[b["poll"]], "onset": b["onset"],
             "duration": b["span"],
             "timescale": params["burst_timescale"], "size": len(b["users"])}
            for b in planted
        ],
        "counts": {
            "users": summary.users, "polls": summary.polls, "follows": summary.follows,
            "interactions": summary.interactions, "hunches": summary.hunches,
            "comments": summary.comments, "impressions": summary.impressions,
            "bursts": summary.bursts, "communities": summary.communities,
            "topics": summary.topics,
        },
    }
    (out / GROUND_TRUTH_FILE).write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
