"""Small synthetic datasets for the evaluation tests: taste clusters make them learnable."""

from __future__ import annotations

import numpy as np

from recsys.events import Interaction
from recsys.recipes.base import TrainingData

TOPICS = ("sports", "music", "politics", "food")


def synthetic_polls(users: int = 120, polls: int = 80, events_per_user: int = 12,
                    seed: int = 0, ratings: bool = False) -> TrainingData:
    """Users prefer one topic; polls have a topic and a popularity; time runs forward.

    ``ratings=True`` shapes it like a public ratings dataset: one RATING event per
    (user, poll) with EVENT_VALUE 1..5 and no text metadata.
    """
    rng = np.random.default_rng(seed)
    poll_topic = rng.integers(0, len(TOPICS), polls)
    popularity = rng.pareto(1.5, polls) + 1
    base = 1_700_000_000
    items = {
        f"p{j}": (
            {"CREATION_TIMESTAMP": base - 86_400, "CATEGORY": TOPICS[poll_topic[j]]}
            if ratings else
            {"CREATION_TIMESTAMP": base - 86_400, "CATEGORY": TOPICS[poll_topic[j]],
             "AUTHOR_ID": f"a{j % 7}", "QUESTION": f"Which {TOPICS[poll_topic[j]]} team wins?",
             "OPTIONS": "yes|no", "DESCRIPTION": None, "OPTION_DESCRIPTIONS": None,
             "COMMENTS": None}
        )
        for j in range(polls)
    }
    users_meta = {f"u{i}": {"AGE": None, "LOCALE": "en_US", "CLUSTER": None,
                            "COMMUNITY": None} for i in range(users)}
    events: list[Interaction] = []
    for i in range(users):
        topic = rng.integers(0, len(TOPICS))
        weight = popularity * np.where(poll_topic == topic, 8.0, 1.0)
        n = int(rng.integers(2, 2 * events_per_user))
        chosen = rng.choice(polls, size=min(n, polls), replace=False, p=weight / weight.sum())
        t = base + int(rng.integers(0, 3600))
        for j in chosen:
            t += int(rng.integers(60, 7200))
            if ratings:
                events.append(Interaction(f"u{i}", f"p{j}", "RATING", t,
                                          event_value=float(rng.integers(1, 6))))
            else:
                events.append(Interaction(f"u{i}", f"p{j}", "HUNCH", t))
    events.sort(key=lambda e: e.timestamp)
    return TrainingData(interactions=events, items=items, users=users_meta)


def write_ratings_directory(directory, users: int = 80, polls: int = 50, seed: int = 0) -> None:
    """A public-ratings-shaped dataset in Personalize format: interactions.csv only,
    EVENT_TYPE RATING with EVENT_VALUE 1..5 (as a converted MovieLens would look)."""
    import csv
    from pathlib import Path

    data = synthetic_polls(users=users, polls=polls, seed=seed, ratings=True)
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    with open(path / "interactions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", "EVENT_VALUE"])
        for e in data.interactions:
            writer.writerow([e.user_id, e.item_id, e.timestamp, e.event_type, e.event_value])
