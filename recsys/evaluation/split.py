"""Splitting events into what a model may learn from and what it must predict.

Personalize's protocol: 90 % of users train with all their events; each of the other
10 % has the oldest 90 % of their interactions as *input* (the model sees these, as
Personalize folds them in) and the newest 10 % as the *relevant* polls to predict. A
temporal split (one global cut-off) and k-fold rotation of held-out users are offered
beside it, because one random 10 % of users gives noisy numbers on small datasets.

The guarantee every split keeps: a held-out user's relevant events never reach training
or hyperparameter tuning, and their input is strictly older than their relevant events.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from recsys.errors import HunchError
from recsys.events import Impression, Interaction

# Personalize holds out 10 % of users and, of each, the newest 10 % of interactions.
HOLDOUT_FRACTION = 0.1
RELEVANT_FRACTION = 0.1
# A user needs one event of input and one to predict; fewer and there is nothing to test.
MIN_EVENTS_TO_HOLD_OUT = 2
# The temporal split trains on the oldest 90 % of all events, mirroring the user split.
TEMPORAL_TRAIN_FRACTION = 0.9


class EvaluationSplitError(HunchError):
    """The data cannot be split as asked (too few users or events, bad fold count)."""


@dataclass(frozen=True)
class HeldOutUser:
    """A user whose newest events are hidden from the model and must be predicted."""

    user_id: str
    input: tuple[Interaction, ...]
    relevant_events: tuple[Interaction, ...]

    @property
    def input_items(self) -> frozenset[str]:
        """Polls the user already touched; a feed would not show them again."""
        return frozenset(e.item_id for e in self.input)

    @property
    def relevant_items(self) -> frozenset[str]:
        """Polls to predict: those in the hidden events the user had not touched before.

        A repeat (a comment on a poll voted on in the input) cannot be recommended, since
        input polls are excluded, so counting it would lower every model alike.
        """
        return frozenset(e.item_id for e in self.relevant_events) - self.input_items

    @property
    def cutoff(self) -> int:
        """Timestamp of the first hidden event; everything of this user from here is hidden."""
        return self.relevant_events[0].timestamp


@dataclass(frozen=True)
class EvaluationSplit:
    """One fold: the events a model may learn from and the users it is tested on."""

    fold: int
    training: tuple[Interaction, ...]
    held_out: dict[str, HeldOutUser]
    training_users: frozenset[str]
    kind: str = "personalize"
    cutoff: int | None = None  # the global cut-off of a temporal split
    notes: tuple[str, ...] = field(default=())

    @property
    def scored_users(self) -> list[HeldOutUser]:
        """Held-out users with at least one new poll to predict, in a stable order."""
        return [u for _, u in sorted(self.held_out.items()) if u.relevant_items]

    def training_impressions(self, impressions: Iterable[Impression]) -> list[Impression]:
        """Impressions a model may see: none at or after a held-out user's hidden events.

        What a user was shown right before acting is a hint at what they acted on.
        """
        out = []
        for imp in impressions:
            if self.cutoff is not None and imp.timestamp >= self.cutoff:
                continue
            user = self.held_out.get(imp.user_id)
            if user is not None and self.kind == "personalize" and imp.timestamp >= user.cutoff:
                continue
            out.append(imp)
        return out


def _events_by_user(interactions: Iterable[Interaction]) -> dict[str, list[Interaction]]:
    by_user: dict[str, list[Interaction]] = defaultdict(list)
    for event in interactions:
        by_user[event.user_id].append(event)
    for events in by_user.values():
        events.sort(key=lambda e: e.timestamp)  # stable: keeps file order within a second
    return dict(by_user)


def _cut_user(events: Sequence[Interaction], relevant_fraction: float) -> int | None:
    """Index where a user's hidden events start, or None when they cannot be held out.

    Aims at the newest ``relevant_fraction`` (at least one event) and moves the cut so
    that no input event shares a timestamp with a hidden one: input must be older.
    """
    n = len(events)
    if n < MIN_EVENTS_TO_HOLD_OUT:
        return None
    target = n - max(1, int(n * relevant_fraction))
    valid = [c for c in range(1, n) if events[c - 1].timestamp < events[c].timestamp]
    if not valid:
        return None
    # The nearest valid cut; on a tie prefer fewer hidden events (the later cut).
    return min(valid, key=lambda c: (abs(c - target), -c))


def _build(
    by_user: dict[str, list[Interaction]],
    held_out_ids: Iterable[str],
    *,
    fold: int,
    relevant_fraction: float,
) -> EvaluationSplit:
    held_out: dict[str, HeldOutUser] = {}
    for user_id in held_out_ids:
        events = by_user[user_id]
        cut = _cut_user(events, relevant_fraction)
        if cut is None:
            continue
        held_out[user_id] = HeldOutUser(user_id, tuple(events[:cut]), tuple(events[cut:]))
    training: list[Interaction] = []
    for user_id, events in by_user.items():
        user = held_out.get(user_id)
        training.extend(user.input if user is not None else events)
    training.sort(key=lambda e: e.timestamp)
    return EvaluationSplit(
        fold=fold,
        training=tuple(training),
        held_out=held_out,
        training_users=frozenset(by_user) - frozenset(held_out),
    )


def eligible_users(interactions: Iterable[Interaction]) -> list[str]:
    """Users that can be held out: at least two events at two different times, sorted."""
    by_user = _events_by_user(interactions)
    return sorted(u for u, ev in by_user.items() if _cut_user(ev, RELEVANT_FRACTION) is not None)


def personalize_split(
    interactions: Iterable[Interaction],
    *,
    seed: int = 0,
    holdout_fraction: float = HOLDOUT_FRACTION,
    relevant_fraction: float = RELEVANT_FRACTION,
) -> EvaluationSplit:
    """Personalize's split: a random ``holdout_fraction`` of users is held out."""
    by_user = _events_by_user(interactions)
    candidates = sorted(u for u, ev in by_user.items() if _cut_user(ev, relevant_fraction) is not None)
    if not candidates:
        raise EvaluationSplitError(
            "no user has two events at different times, so nobody can be held out; "
            "evaluation needs users with at least 2 interactions"
        )
    rng = np.random.default_rng(seed)
    n_held = max(1, round(len(by_user) * holdout_fraction))
    chosen = rng.permutation(len(candidates))[: min(n_held, len(candidates))]
    return _build(by_user, [candidates[i] for i in chosen], fold=0,
                  relevant_fraction=relevant_fraction)


def user_folds(
    interactions: Iterable[Interaction],
    folds: int,
    *,
    seed: int = 0,
    relevant_fraction: float = RELEVANT_FRACTION,
) -> list[EvaluationSplit]:
    """``folds`` splits whose held-out users partition the eligible users.

    ``folds == 1`` is Personalize's single split (10 % of users). With ``folds >= 2``
    every eligible user is held out exactly once, in fold ``i`` of a seeded shuffle.
    """
    if folds < 1:
        raise EvaluationSplitError(f"--folds must be at least 1, got {folds}")
    interactions = list(interactions)
    if folds == 1:
        return [personalize_split(interactions, seed=seed, relevant_fraction=relevant_fraction)]
    by_user = _events_by_user(interactions)
    candidates = sorted(u for u, ev in by_user.items() if _cut_user(ev, relevant_fraction) is not None)
    if len(candidates) < folds:
        raise EvaluationSplitError(
            f"--folds {folds} needs at least {folds} users with 2+ interactions at "
            f"different times; the data has {len(candidates)}. Use fewer folds."
        )
    order = np.random.default_rng(seed).permutation(len(candidates))
    return [
        _build(by_user, [candidates[i] for i in part], fold=f, relevant_fraction=relevant_fraction)
        for f, part in enumerate(np.array_split(order, folds))
    ]


def temporal_split(
    interactions: Iterable[Interaction],
    *,
    cutoff: int | None = None,
    train_fraction: float = TEMPORAL_TRAIN_FRACTION,
) -> EvaluationSplit:
    """One global cut-off: events before it train, events from it on are predicted.

    The default cut-off is the timestamp below which ``train_fraction`` of events fall.
    Every user with events on both sides is tested; users with no event before the
    cut-off are new users the model cannot know and are left out.
    """
    events = sorted(interactions, key=lambda e: e.timestamp)
    if len(events) < 2:
        raise EvaluationSplitError("a temporal split needs at least 2 interactions")
    if cutoff is None:
        cutoff = events[min(len(events) - 1, int(len(events) * train_fraction))].timestamp
    training = [e for e in events if e.timestamp < cutoff]
    if not training or len(training) == len(events):
        raise EvaluationSplitError(
            f"the temporal cut-off {cutoff} leaves one side empty; all events share too "
            "few distinct timestamps to split by time, use --split personalize"
        )
    by_user = _events_by_user(events)
    held_out: dict[str, HeldOutUser] = {}
    for user_id, user_events in by_user.items():
        before = tuple(e for e in user_events if e.timestamp < cutoff)
        after = tuple(e for e in user_events if e.timestamp >= cutoff)
        if before and after:
            held_out[user_id] = HeldOutUser(user_id, before, after)
    return EvaluationSplit(
        fold=0,
        training=tuple(training),
        held_out=held_out,
        training_users=frozenset(by_user) - frozenset(held_out),
        kind="temporal",
        cutoff=cutoff,
    )


def validation_folds(split: EvaluationSplit, folds: int, *, seed: int = 0) -> list[EvaluationSplit]:
    """Inner folds for tuning, over what the fold's models may learn from only.

    Personalize-kind folds: ``folds`` user folds of the training users' events, so that
    every training user who can be held out is validated once and a tuned value rests
    on all of them, not on a few dozen (held-out users are left out entirely, input
    included). Temporal folds: one temporal split of the events before the cut-off.
    """
    if split.kind == "temporal" or folds <= 1:
        return [validation_split(split, seed=seed)]
    training = [e for e in split.training if e.user_id not in split.held_out]
    eligible = len(eligible_users(training))
    if eligible < 2:
        return [validation_split(split, seed=seed)]
    return user_folds(training, min(folds, eligible), seed=seed)


def validation_split(split: EvaluationSplit, *, seed: int = 0) -> EvaluationSplit:
    """A split for tuning, carved from what the fold's models may learn from only.

    Personalize-kind folds: a Personalize split of the training users' events (held-out
    users are left out entirely, input included). Temporal folds: a temporal split of
    the events before the cut-off.
    """
    if split.kind == "temporal":
        return temporal_split(split.training)
    training = [e for e in split.training if e.user_id not in split.held_out]
    return personalize_split(training, seed=seed)
