"""Follow impact: do follow-graph labels make the feed show more polls from people a user
follows, and at what cost in accuracy? (roadmap stage 3, issue 7)

Why it is built this way (docs/evidence-methods.md):

- **The unit is the user.** Held-out users (Personalize's split) get a feed of
  ``FEED_DEPTH`` polls from User-Personalization at the moment their hidden events start;
  each user's *followee share* (polls authored by someone they follow) and NDCG@10 on
  their hidden polls are averaged over model seeds, then compared with paired tests
  (paired t deciding, Wilcoxon signed-rank beside it) and a bootstrap interval over users. The slot-level
  two-proportion z-test the issue asks for is shown beside them, never used to decide.
- **The control is a size-matched permuted labelling**: the same labels shuffled across
  users, so cluster sizes match but graph meaning is gone. A categorical user feature
  alone smooths towards popular polls, and followees' polls tend to be popular; the
  effect of the labels is the gain over this control, not over "no labels". The shuffle
  is repeated (``shuffles`` per model seed) and the runs enter the interval (a two-level
  bootstrap over users and runs, recsys.analysis.stats), so a lucky shuffle cannot make
  an effect; their spread is reported (``run_spread``).
- **Labels or follows?** Graph communities share tastes as well as follows, so labels
  can raise the followee share through taste alone (polls of a community's topics are
  mostly written by its members). The graph effect needs both: the labels raise the
  share over their permuted control, *and* users engage with their own followees' polls
  more than the other members of their community do (the engagement control,
  recsys.analysis.follow_control: the same followees read through other members' hidden
  polls, so taste shared by the community is kept, the choice of whom to follow is
  not).
- **Holm's correction** over every test of the run, one family: labellings x metrics,
  the in-network comparison and the engagement control.
- **Three-way verdicts**: every comparison says ``raises``, ``lowers`` (Holm p < 0.05
  and the interval excludes 0) or ``no detectable change``, with the effect, its
  interval and the minimum detectable effect relative to the base rate.
- **The cost** (NDCG@10 difference) sits beside every share gain, with a curve over the
  weight of the user-segment feature, and the *natural rate* (share of hidden relevant
  polls authored by followees) says what share an accurate feed would have anyway.
- **Two shares, one rule each**: "authored by a followee" (the poll's AUTHOR_ID is
  followed) where the data has authors, and "engaged with by a followee" (a followee
  interacted with the poll in the training events before the user's cut-off), which is
  the only one that applies to a graph whose items nobody wrote (listeners of artists,
  docs/real-friend-graph.md). The first share present decides the verdict; both are
  tested in the one Holm family.
- **Power**: from the spread of per-user differences, how many users a study needs to
  detect a rise of ``RELATIVE_EFFECT_TO_DETECT`` of the control's followee share.

The labels and follows come in as data (users.csv CLUSTER/COMMUNITY, follows.csv):
recsys does not import the graph package; the CLI computes labels first when asked.
"""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recsys.analysis.follow_control import CONTROL_NAME, Reader, ShareRule, swapped_control
from recsys.analysis.stats import (
    LOWERS,
    RAISES,
    PairedComparison,
    paired_comparison,
    users_needed,
    with_holm,
)
from recsys.backends.local import InNetworkSource
from recsys.shared_fits import shared_fits, sharing
from recsys.errors import HunchError, InvalidEvent
from recsys.evaluation.metrics import ndcg_at_k
from recsys.evaluation.split import HeldOutUser, personalize_split
from recsys.events import Impression, Interaction
from recsys.mixer import IN_NETWORK, USER_PERSONALIZATION, Mixer, MixRequest, SlotPlan
from recsys.recipes.base import ScoredItem, TrainingData
from recsys.recipes.user_personalization import UserPersonalization, blend

# The share is read over one session's scroll, 50 polls (ten phone screens); NDCG@10
# over its first two screens. A followee's poll is ~2-3 % of a feed, so a 10-poll feed
# holds 0 or 1 of them for most users and the per-user share is mostly rounding: on
# the default demo (2,000 users) community labels' +0.21 pp over their shuffled control
# at depth 10 was "no detectable change" (relative MDE 13 %); at depth 50 with half the
# users held out, +0.16 pp [0.09, 0.22], Holm p < 0.001 (MDE ~6 %), the planted verdict.
FEED_DEPTH = 50
# Half the users held out (Personalize holds out 10 %): the tests are paired over users,
# and 10-25 % of a 2,000-user app is too few to see a share change of a fifth; the
# model still trains on every held-out user's events before their cut-off.
HOLDOUT_FRACTION = 0.5
# Smallest share change worth acting on, relative to the control's share: a fifth, about
# the graph's own effect measured on a public friend graph (one point on a base of ~5 %;
# docs/evidence-methods.md). Relative, because base shares differ tenfold between graphs.
RELATIVE_EFFECT_TO_DETECT = 0.2
# Shuffles of each permuted control per model seed: two per seed give the spread between
# shuffles (which moved a real graph's share by 0.1-0.3 points) at one more fit each.
SHUFFLES = 2
# With the in-network source on, one slot in five holds a followee's poll, the rest
# User-Personalization (the trending/popular slots stay out so only one thing changes).
IN_NETWORK_PLAN = SlotPlan(block=(USER_PERSONALIZATION,) * 4 + (IN_NETWORK,),
                           backfill=(USER_PERSONALIZATION, IN_NETWORK))
# Multipliers of the learned user-segment weight for the trade-off curve; 0 removes the
# labels' influence on ranking, 4 over-weights it well past what the blend learned.
SEGMENT_WEIGHT_CURVE: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0)
# The curve describes (it is not one of the tests), so it ranks a fixed random sample of
# held-out users: 10 rankings per user per labelling were ~40 % of the analysis' time.
CURVE_USERS = 400
LABEL_FIELDS: tuple[str, ...] = ("CLUSTER", "COMMUNITY")
NO_LABELS = "no-labels"
IN_NETWORK_VARIANT = "in-network"
PERMUTED_SUFFIX = "-permuted"
CONTROL_LABEL_FIELD = "COMMUNITY"
SHARE = "followee_share"
ENGAGED_SHARE = "engaged_followee_share"
ENGAGEMENT = "relevant_followee_share"
NDCG = "ndcg_at_10"
METRICS = (SHARE, NDCG)


class FollowImpactError(HunchError):
    """The follow-impact analysis cannot run on this data (say what is missing)."""


@dataclass(frozen=True)
class FollowImpactConfig:
    """How the analysis runs; defaults are what ``hunch analyze follow-impact`` uses."""

    seeds: tuple[int, ...] = (0, 1)
    split_seed: int = 0
    holdout_fraction: float = HOLDOUT_FRACTION
    max_users: int | None = None  # a random sample of held-out users, None = all
    feed_depth: int = FEED_DEPTH
    relative_effect_to_detect: float = RELATIVE_EFFECT_TO_DETECT
    shuffles: int = SHUFFLES
    in_network: bool = True
    # The "engaged with by a followee" share: None computes it only when no item has an
    # author (then it is the share that decides), True adds it beside the authored one.
    engaged_share: bool | None = None
    recipe_params: Mapping[str, Any] = field(default_factory=dict)
    # Model seeds run in parallel processes, one per seed up to the machine's cores
    # (None); 1 runs them in this process. Results do not depend on it.
    processes: int | None = None


@dataclass
class FollowImpactResult:
    """Everything the report shows; ``to_json`` is the machine-readable form."""

    users: int
    seeds: tuple[int, ...]
    variants: dict[str, dict[str, float]]
    comparisons: list[PairedComparison]
    natural_rate: float
    power: dict[str, Any]
    curve: dict[str, list[dict[str, float]]]
    verdict: dict[str, Any]
    engagement: PairedComparison | None = None
    # Per variant and metric, the mean of every run (model seed x shuffle) and their sd.
    run_spread: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    per_user: dict[str, dict[str, list[float]]] = field(repr=False, default_factory=dict)
    share_metric: str = SHARE  # the share the verdict, natural rate and curve are about

    def to_json(self) -> dict:
        return {
            "share_metric": self.share_metric,
            "engagement": self.engagement.to_json() if self.engagement else None,
            "users": self.users, "seeds": list(self.seeds), "variants": self.variants,
            "comparisons": [c.to_json() for c in self.comparisons],
            "natural_rate": self.natural_rate, "power": self.power, "curve": self.curve,
            "verdict": self.verdict, "run_spread": self.run_spread,
        }


# Problems listed in a FollowImpactError, as `hunch data import` lists them.
MAX_SHOWN_FOLLOW_PROBLEMS = 20


def read_follows(path: Path | str) -> list[tuple[str, str]]:
    """(follower, followee) pairs of a follows.csv (FOLLOWER_ID, FOLLOWEE_ID[, TIMESTAMP]).

    Checked as `hunch graph cluster` and the API check follows (README, "Every bulk
    read ... follows the API's rules"), every problem as ``file:line: reason``: ids are
    user ids (non-empty, at most 256 characters, no surrounding whitespace, control or
    invisible character), every row has its fields, no one follows themselves (a
    self-follow counted a user's own polls as a followee's, raising the followee share
    the analysis measures), the file is UTF-8. Unread, a bad row skewed the answer."""
    from hunchio.lines import NotUtf8, utf8_lines
    from recsys.admission import check_user_id

    path = Path(path)
    if not path.exists():
        raise FollowImpactError(
            f"{path} not found: the follow-impact analysis needs the follows "
            "(FOLLOWER_ID,FOLLOWEE_ID); export them from the graph or generate demo data")
    problems: list[str] = []

    def not_utf8(at: NotUtf8) -> None:
        problems.append(f"{path}:{at.line}: not UTF-8 (byte 0x{at.byte:02x} at byte "
                        f"{at.position} of the line); save the file as UTF-8")

    follows: list[tuple[str, str]] = []
    # Decoded line by line (a BOM, Excel's default, is no part of the header), as the
    # import and `hunch graph cluster` read it.
    with path.open("rb") as fh:
        reader = csv.DictReader(utf8_lines(fh, not_utf8))
        try:
            missing = {"FOLLOWER_ID", "FOLLOWEE_ID"} - set(reader.fieldnames or [])
            if missing and not problems:
                raise FollowImpactError(
                    f"{path}: missing column(s) {sorted(missing)}; expected "
                    "FOLLOWER_ID,FOLLOWEE_ID[,TIMESTAMP]")
            for row in reader:
                line = reader.line_num
                if None in row or None in row.values():
                    problems.append(f"{path}:{line}: expected {len(reader.fieldnames)} "
                                    f"fields ({','.join(reader.fieldnames)})")
                    continue
                follower, followee = row["FOLLOWER_ID"], row["FOLLOWEE_ID"]
                try:
                    check_user_id("FOLLOWER_ID", follower)
                    check_user_id("FOLLOWEE_ID", followee)
                except InvalidEvent as exc:
                    problems.append(f"{path}:{line}: {exc}")
                    continue
                if follower == followee:
                    problems.append(f"{path}:{line}: user {follower!r} follows themselves; "
                                    "drop the row")
                    continue
                follows.append((follower, followee))
        except csv.Error as exc:
            problems.append(f"{path}:{reader.line_num}: unreadable CSV ({exc}); check the "
                            "quoting")
    if problems:
        shown = problems[:MAX_SHOWN_FOLLOW_PROBLEMS]
        more = (f"\n... and {len(problems) - len(shown)} more"
                if len(problems) > len(shown) else "")
        raise FollowImpactError(f"{len(problems)} problem(s) in {path}, nothing was "
                                "analysed:\n" + "\n".join(shown) + more)
    if not follows:
        raise FollowImpactError(f"{path}: no follows after the header; the analysis "
                                "needs rows FOLLOWER_ID,FOLLOWEE_ID[,TIMESTAMP]")
    return follows


def followees_of(follows: Iterable[tuple[str, str]]) -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = {}
    for follower, followee in follows:
        out.setdefault(follower, set()).add(followee)
    return {k: frozenset(v) for k, v in out.items()}


def followee_share(polls: Sequence[str], followees: Collection[str],
                   author: Mapping[str, str]) -> float:
    """Share of ``polls`` authored by someone in ``followees`` (0 for an empty feed)."""
    if not polls:
        return 0.0
    return sum(1 for p in polls if author.get(p) in followees) / len(polls)


def labels_from_users(users: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """USER_ID -> {CLUSTER, COMMUNITY} as the Users dataset carries them (blank dropped)."""
    out: dict[str, dict[str, str]] = {}
    for uid, meta in users.items():
        labs = {f: str(meta[f]) for f in LABEL_FIELDS if meta.get(f) not in (None, "")}
        if labs:
            out[uid] = labs
    return out


def permuted(labels: Mapping[str, str], seed: int) -> dict[str, str]:
    """The same labels shuffled across the same users: identical group sizes, no graph."""
    users = sorted(labels)
    values = [labels[u] for u in users]
    order = np.random.default_rng(seed).permutation(len(values))
    return {u: values[i] for u, i in zip(users, order)}


class _RecipeAt:
    """User-Personalization as a mixer source that ranks at a fixed moment."""

    name = USER_PERSONALIZATION

    def __init__(self, model: UserPersonalization, now: float):
        self.model, self.now = model, now

    def candidates(self, user_id: str, n: int, *, exclude: Collection[str] = (),
                   allow: Callable[[str], bool] | None = None, filter_name: str | None = None,
                   filter_values: dict[str, str] | None = None) -> list[ScoredItem]:
        return self.model.recommend(user_id, n, now=self.now, exclude=exclude, allow=allow)


def _variant_users(users: Mapping[str, Mapping[str, Any]], field_values: Mapping[str, str],
                   field_name: str | None) -> dict[str, dict[str, Any]]:
    """Users metadata with both label fields cleared, then ``field_name`` set."""
    out = {}
    for uid, meta in users.items():
        row = {k: v for k, v in meta.items() if k not in LABEL_FIELDS}
        if field_name is not None and uid in field_values:
            row[field_name] = field_values[uid]
        out[uid] = row
    for uid, value in field_values.items():
        if uid not in out and field_name is not None:
            out[uid] = {"USER_ID": uid, field_name: value}
    return out


def _fit_variant(training: Sequence[Interaction], items: Mapping[str, Mapping[str, Any]],
                 users: Mapping[str, Mapping[str, Any]],
                 labels: Mapping[str, Mapping[str, str]],
                 impressions: Sequence[Impression], field_name: str | None, *,
                 shuffle_seed: int | None, params: Mapping[str, Any]) -> UserPersonalization:
    """User-Personalization on the training events with only ``field_name`` as a user
    label (none for None), shuffled across users when ``shuffle_seed`` is given."""
    values = {u: lab[field_name] for u, lab in labels.items()
              if field_name in lab} if field_name else {}
    if shuffle_seed is not None:
        values = permuted(values, seed=shuffle_seed)
    data = TrainingData(training, items, _variant_users(users, values, field_name),
                        impressions)
    return UserPersonalization(**params).fit(data)


def _feed(model: UserPersonalization, user: HeldOutUser, depth: int,
          in_network: InNetworkSource | None) -> list[str]:
    if in_network is None:
        return [s.item_id for s in model.recommend(user.user_id, depth, now=user.cutoff,
                                                   exclude=user.input_items)]
    mixer = Mixer({USER_PERSONALIZATION: _RecipeAt(model, user.cutoff), IN_NETWORK: in_network},
                  IN_NETWORK_PLAN)
    placed = mixer.mix(MixRequest(user.user_id, depth, exclude=set(user.input_items)))
    return [p.item_id for p in placed]


def authored_rule(author: Mapping[str, str]) -> ShareRule:
    return ShareRule.authored(SHARE, author)


def engaged_rule(training: Iterable[Interaction]) -> ShareRule:
    by_user: dict[str, list[tuple[str, float]]] = {}
    for e in training:
        by_user.setdefault(e.user_id, []).append((e.item_id, float(e.timestamp)))
    return ShareRule(ENGAGED_SHARE, by_user, timed=True)


def _share_in(polls: Sequence[str], network: Collection[str]) -> float:
    return sum(1 for p in polls if p in network) / len(polls) if polls else 0.0


def _polls_by_author(items: Mapping[str, Mapping[str, Any]]
                     ) -> dict[str, list[tuple[str, float]]]:
    """Author -> (poll, creation time) of every dated poll; built once per analysis."""
    by_author: dict[str, list[tuple[str, float]]] = {}
    for pid, meta in items.items():
        created = meta.get("CREATION_TIMESTAMP")
        author = meta.get("AUTHOR_ID")
        if author and created is not None:
            by_author.setdefault(str(author), []).append((pid, float(created)))
    return by_author


def _in_network_source(followees: Mapping[str, frozenset[str]],
                       items: Mapping[str, Mapping[str, Any]], now: float, *,
                       by_author: Mapping[str, list[tuple[str, float]]] | None = None
                       ) -> InNetworkSource:
    """Followees' polls created before ``now``, newest first (``by_author``: the
    items grouped once by :func:`_polls_by_author`, instead of once per user)."""
    by_author = _polls_by_author(items) if by_author is None else by_author

    def polls_by_authors(authors: list[str], n: int) -> list[tuple[str, float]]:
        polls = [p for a in authors for p in by_author.get(a, ()) if p[1] < now]
        polls.sort(key=lambda p: (-p[1], p[0]))  # ties by poll id, never by set order
        newest: dict[str, float] = {}  # a poll two followees engaged with comes once
        for poll, at in polls:
            newest.setdefault(poll, at)
        return list(newest.items())[:n]

    return InNetworkSource(lambda uid: followees.get(uid, ()), polls_by_authors)


def follow_impact(
    interactions: Sequence[Interaction],
    items: Mapping[str, Mapping[str, Any]],
    users: Mapping[str, Mapping[str, Any]],
    follows: Iterable[tuple[str, str]],
    *,
    labels: Mapping[str, Mapping[str, str]] | None = None,
    impressions: Sequence[Impression] = (),
    config: FollowImpactConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> FollowImpactResult:
    """Run the follow-impact comparison (see the module docstring)."""
    config = config or FollowImpactConfig()
    say = progress or (lambda _m: None)
    labels = labels_from_users(users) if labels is None else labels
    fields = [f for f in LABEL_FIELDS
              if len({lab[f] for lab in labels.values() if f in lab}) >= 2]
    if not fields:
        raise FollowImpactError(
            "no user labels: give users.csv with CLUSTER and/or COMMUNITY filled (run "
            "`hunch graph cluster` or pass --cluster to `hunch analyze follow-impact`)")
    followees = followees_of(follows)
    if not followees:
        raise FollowImpactError("no follows: the follow-impact analysis needs follows.csv rows")
    author = {pid: str(m.get("AUTHOR_ID") or "") for pid, m in items.items()}
    authored = any(author.values())
    engaged = not authored if config.engaged_share is None else config.engaged_share
    if not authored and not engaged:
        raise FollowImpactError("items.csv has no AUTHOR_ID: cannot tell who wrote a poll "
                                "(the engaged-with share, engaged_share=True, still applies)")

    say("splitting users (Personalize's split)")
    split = personalize_split(interactions, seed=config.split_seed,
                              holdout_fraction=config.holdout_fraction)
    held = split.scored_users
    if config.max_users is not None and len(held) > config.max_users:
        pick = np.random.default_rng(config.split_seed).choice(len(held), config.max_users,
                                                               replace=False)
        held = [held[i] for i in sorted(pick)]
    if len(held) < 10:
        raise FollowImpactError(
            f"only {len(held)} held-out users have polls to predict; need at least 10 "
            "(more users or a larger holdout_fraction)")
    training_impressions = split.training_impressions(impressions)
    rules = ([authored_rule(author)] if authored else []) + (
        [engaged_rule(split.training)] if engaged else [])
    primary = rules[0]
    metrics = (*(r.metric for r in rules), NDCG)
    # Per share rule and held-out user, the polls that count as their followees'.
    own = {r.metric: {u.user_id: r.polls(followees.get(u.user_id, ()), u.cutoff) for u in held}
           for r in rules}

    variants: list[tuple[str, str | None, bool]] = [(NO_LABELS, None, False)]
    for f in fields:
        variants += [(f.lower(), f, False), (f.lower() + PERMUTED_SUFFIX, f, True)]
    if config.in_network:
        variants.append((IN_NETWORK_VARIANT, None, False))

    if config.shuffles < 1:
        raise FollowImpactError(f"shuffles={config.shuffles}: the permuted control needs at "
                                "least one shuffle per model seed")
    n_users = len(held)
    names = [name for name, _, _ in variants]
    share_metrics = [r.metric for r in rules]
    # The in-network source offers followees' polls by the deciding rule: those they
    # wrote, or (no authors) those they engaged with, newest first.
    by_author = ((_polls_by_author(items) if authored else primary.by_user)
                 if config.in_network else {})
    networks = {u.user_id: _in_network_source(followees, items, u.cutoff, by_author=by_author)
                for u in held} if config.in_network else {}
    curve_users = held
    if len(held) > CURVE_USERS:
        pick = np.random.default_rng(config.split_seed).choice(len(held), CURVE_USERS,
                                                               replace=False)
        curve_users = [held[i] for i in sorted(pick)]

    def one_seed(seed: int, say: Callable[[str], None]) -> _SeedRuns:
        """Every variant's fits and feeds for one model seed."""
        out = _SeedRuns.empty(names, metrics, share_metrics)
        # The in-network variant ranks with the no-labels model (the same fit).
        unlabelled: UserPersonalization | None = None
        # The variants change labels only, never EASE's user-poll matrix: one memo for
        # every fit in this process (the caller's, when the seeds run here).
        with contextlib.nullcontext() if sharing() else shared_fits():
            for name, field_name, shuffle in variants:
                for k in range(config.shuffles if shuffle else 1):
                    say(f"seed {seed}: training and ranking '{name}'"
                        + (f" (shuffle {k + 1})" if shuffle else ""))
                    if field_name is None and unlabelled is not None:
                        model = unlabelled
                    else:
                        model = _fit_variant(split.training, items, users, labels,
                                             training_impressions, field_name,
                                             shuffle_seed=1_000 + 100 * seed + k
                                             if shuffle else None,
                                             params={"random_state": seed,
                                                     **config.recipe_params})
                    if field_name is None:
                        unlabelled = model
                    run = {m: np.zeros(n_users) for m in metrics}
                    for j, user in enumerate(held):
                        feed = _feed(model, user, config.feed_depth,
                                     networks.get(user.user_id) if name == IN_NETWORK_VARIANT
                                     else None)
                        for r in rules:
                            mine = own[r.metric][user.user_id]
                            run[r.metric][j] = _share_in(feed, mine)
                            out.slots[name][r.metric][0] += sum(1 for p in feed if p in mine)
                            out.slots[name][r.metric][1] += len(feed)
                        run[NDCG][j] = ndcg_at_k(feed, user.relevant_items, 10)
                    for m in metrics:
                        out.runs[name][m].append(run[m])
                    if field_name and not shuffle and seed == config.seeds[-1]:
                        out.curve[name] = _segment_curve(model, curve_users, own[primary.metric],
                                                         primary.metric, config.feed_depth)
        return out

    # Merged in seed order, so the result is the same however the seeds were run.
    with shared_fits():
        by_seed = _map_seeds(one_seed, config.seeds, config.processes, say)
    merged = _SeedRuns.empty(names, metrics, share_metrics)
    for seed_runs in by_seed:
        merged.add(seed_runs)
    runs, slots, curve = merged.runs, merged.slots, merged.curve
    per_run = {name: {m: np.vstack(v) for m, v in ms.items()} for name, ms in runs.items()}
    per_user = {name: {m: v.mean(0) for m, v in ms.items()} for name, ms in per_run.items()}

    comparisons = []
    pairs: list[tuple[str, str]] = []
    for f in fields:
        pairs += [(f.lower(), f.lower() + PERMUTED_SUFFIX), (f.lower(), NO_LABELS)]
    if len(fields) == 2:
        pairs.append(("community", "cluster"))
    if config.in_network:
        pairs.append((IN_NETWORK_VARIANT, NO_LABELS))
    for treatment, baseline in pairs:
        for metric in metrics:
            s = ((*slots[treatment][metric], *slots[baseline][metric])
                 if metric in slots[treatment] else None)
            comparisons.append(paired_comparison(
                metric, treatment, baseline, per_run[treatment][metric],
                per_run[baseline][metric], seed=config.split_seed, slots=s))

    relevant_rates = [_share_in(sorted(u.relevant_items), own[primary.metric][u.user_id])
                      for u in held]
    natural_rate = float(np.mean(relevant_rates))
    say("engagement control: the same followees read through other community members")
    group = {u: lab.get(CONTROL_LABEL_FIELD, "") for u, lab in labels.items()}
    readers = [Reader(u.user_id, sorted(u.relevant_items), u.cutoff) for u in held]
    control_rates = swapped_control(readers, followees, group, primary.counted,
                                    seed=config.split_seed)
    # Only users who follow someone: one who follows nobody reads 0 against 0, which
    # says nothing about follows and shrank the effect (they still read for others).
    following = np.array([bool(followees.get(u.user_id)) for u in held], dtype=bool)
    if not following.any():  # nobody to compare: everyone, at 0 against 0, says so
        following[:] = True
    engagement = paired_comparison(ENGAGEMENT, "own followees", CONTROL_NAME,
                                   np.array(relevant_rates)[following],
                                   control_rates[following], seed=config.split_seed)
    # One Holm family for every test of the run, the engagement control included.
    *comparisons, engagement = with_holm([*comparisons, engagement])
    power = _power(comparisons, fields, config.relative_effect_to_detect, n_users,
                   primary.metric)
    summary = {name: {**{m: float(per_user[name][m].mean()) for m in metrics},
                      "slots": slots[name][primary.metric][1], "users": n_users}
               for name, _, _ in variants}
    return FollowImpactResult(
        users=n_users, seeds=tuple(config.seeds), variants=summary, comparisons=comparisons,
        natural_rate=natural_rate, power=power, curve=curve,
        verdict=_verdict(comparisons, fields, engagement, [r.metric for r in rules]),
        engagement=engagement,
        run_spread={name: {m: {"run_means": v.mean(1).tolist(),
                               "sd": float(v.mean(1).std(ddof=1)) if len(v) > 1 else None}
                           for m, v in ms.items()} for name, ms in per_run.items()},
        per_user={n: {m: v.tolist() for m, v in ms.items()} for n, ms in per_user.items()},
        share_metric=primary.metric,
    )


@dataclass
class _SeedRuns:
    """One model seed's per-user metric arrays, slot counts and (last seed) curve."""

    runs: dict[str, dict[str, list[np.ndarray]]]
    slots: dict[str, dict[str, list[int]]]
    curve: dict[str, list[dict[str, float]]]

    @classmethod
    def empty(cls, names: Sequence[str], metrics: Sequence[str],
              share_metrics: Sequence[str]) -> _SeedRuns:
        return cls({n: {m: [] for m in metrics} for n in names},
                   {n: {m: [0, 0] for m in share_metrics} for n in names}, {})

    def add(self, other: _SeedRuns) -> None:
        """Append another seed's runs (after this one's) and add its slot counts."""
        for name, by_metric in other.runs.items():
            for m, arrays in by_metric.items():
                self.runs[name][m] += arrays
            for m, (hits, total) in other.slots[name].items():
                self.slots[name][m][0] += hits
                self.slots[name][m][1] += total
        self.curve.update(other.curve)


# The seed function a forked worker runs: set just before the pool forks (closures,
# models and the data are inherited by the fork, never pickled).
_SEED_WORK: Callable[[int], _SeedRuns] | None = None


def _run_seed_in_worker(seed: int) -> _SeedRuns:
    assert _SEED_WORK is not None
    return _one_blas_thread(_SEED_WORK, seed)


def _one_blas_thread(work: Callable[..., _SeedRuns], *args: Any) -> _SeedRuns:
    """``work(*args)`` with BLAS on one thread: a fit's sums are rounded in an order that
    depends on the thread count, and with the machine's default threads HetRec Last.fm's
    cluster row read +4.83 pp on one machine and +5.45 pp at one thread. Seeds run in
    parallel processes anyway, so the analysis reads the same on any machine."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):
        return work(*args)


def _map_seeds(work: Callable[[int, Callable[[str], None]], _SeedRuns], seeds: Sequence[int],
               processes: int | None, say: Callable[[str], None]) -> list[_SeedRuns]:
    """``work`` for every seed, in seed order: in forked processes when there are
    several seeds and cores (each seed's fits and feeds are independent), else here."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    n = min(len(seeds), processes or os.cpu_count() or 1)
    if n <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [_one_blas_thread(work, seed, say) for seed in seeds]
    global _SEED_WORK
    _SEED_WORK = lambda seed: work(seed, lambda _m: None)  # workers stay quiet
    try:
        say(f"training and ranking {len(seeds)} model seeds in {n} processes")
        with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("fork")) as pool:
            return list(pool.map(_run_seed_in_worker, seeds))
    finally:
        _SEED_WORK = None


def _segment_curve(model: UserPersonalization, held: list[HeldOutUser],
                   own: Mapping[str, frozenset[str]], metric: str,
                   depth: int) -> list[dict[str, float]]:
    """Share and NDCG@10 as the learned user-segment weight is scaled (the trade-off)."""
    learned = dict(model.blend_)
    points = []
    try:
        for multiplier in SEGMENT_WEIGHT_CURVE:
            twin = blend.twin_name("segment")  # the weight's history twin scales too
            model.blend_ = {**learned, "segment": learned["segment"] * multiplier,
                            **({twin: learned[twin] * multiplier} if twin in learned else {})}
            shares, ndcgs = [], []
            for user in held:
                feed = _feed(model, user, depth, None)
                shares.append(_share_in(feed, own[user.user_id]))
                ndcgs.append(ndcg_at_k(feed, user.relevant_items, 10))
            points.append({"segment_weight_multiplier": multiplier,
                           metric: float(np.mean(shares)), NDCG: float(np.mean(ndcgs))})
    finally:
        model.blend_ = learned
    return points


def _find(comparisons: list[PairedComparison], treatment: str, baseline: str,
          metric: str) -> PairedComparison | None:
    for c in comparisons:
        if (c.treatment, c.baseline, c.metric) == (treatment, baseline, metric):
            return c
    return None


def _power(comparisons: list[PairedComparison], fields: list[str], relative: float,
           n_users: int, share: str = SHARE) -> dict[str, Any]:
    out: dict[str, Any] = {"relative_effect_to_detect": relative, "users_measured": n_users,
                           "alpha": 0.05, "power": 0.8, "effect_to_detect": {},
                           "users_needed": {}}
    for f in fields:
        c = _find(comparisons, f.lower(), f.lower() + PERMUTED_SUFFIX, share)
        if c is None:
            continue
        effect = relative * c.mean_baseline  # a rise of `relative` of the control's share
        sd = abs(c.difference / c.effect_size_dz) if c.effect_size_dz else float("nan")
        out["effect_to_detect"][f.lower()] = effect
        out["users_needed"][f.lower()] = users_needed(sd, effect)
    return out


def _summary(c: PairedComparison) -> dict[str, Any]:
    return {"verdict": c.verdict, "effect": c.difference, "ci": [c.ci_low, c.ci_high],
            "holm_p": c.holm_p, "base_rate": c.mean_baseline,
            "min_detectable_effect": c.min_detectable_effect,
            "relative_min_detectable_effect": c.relative_min_detectable_effect}


def _verdict(comparisons: list[PairedComparison], fields: list[str],
             engagement: PairedComparison, shares: Sequence[str] = (SHARE,)) -> dict[str, Any]:
    """The answer in one place: per labelling, does it raise, lower or not detectably
    change the followee share (and NDCG@10) against its permuted control; and is that
    the graph (own follows matter in engagement) or only taste the community shares."""
    by_labelling = {}
    for f in fields:
        name = f.lower()
        by_labelling[name] = {
            m: _summary(_find(comparisons, name, name + PERMUTED_SUFFIX, m))
            for m in (*shares, NDCG)}
    share = shares[0]  # the first share present decides (authored where there are authors)
    best = max(by_labelling, key=lambda n: by_labelling[n][share]["effect"])
    follows_matter = engagement.verdict == RAISES
    raises = [n for n, v in by_labelling.items() if v[share]["verdict"] == RAISES]
    return {
        "graph_effect": follows_matter and bool(raises),
        "labels_raise_share": raises,
        "labels_lower_share": [n for n, v in by_labelling.items()
                               if v[share]["verdict"] == LOWERS],
        "follow_effect_in_engagement": follows_matter,
        "engagement": _summary(engagement),
        "best_labelling": best,
        "share_metric": share,
        "by_labelling": by_labelling,
        "rule": "a labelling raises (lowers) the followee share when its share beats (falls "
                "below) the same labels permuted across users: Holm-corrected paired t "
                "p < 0.05 over every test of the run, and the 95 % interval (users and "
                "runs resampled) excludes 0; otherwise no detectable change, read beside "
                "the minimum detectable effect. graph_effect: some labelling raises the "
                "share and users engage with their own followees' polls more than the other "
                "members of their community engage with them (without the latter, the "
                "gain is taste the community shares, not the follows)",
    }
