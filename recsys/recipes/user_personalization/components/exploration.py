"""Exploration, as Personalize does it: polls younger than the cut-off get a bonus that
shrinks with their impressions and interactions, with a little seeded noise. It is not
a blend column: it is added after the blend, scaled to each request's scores."""

from __future__ import annotations

import math
import zlib
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.recipes.user_personalization.components.base import BaseComponent
from recsys.recipes.user_personalization.settings import (
    EXPLORATION_BONUS_SCALE,
    EXPLORATION_NOISE,
    SECONDS_PER_DAY,
)

if TYPE_CHECKING:  # pragma: no cover
    from recsys.recipes.user_personalization.model import UserPersonalization


class Exploration(BaseComponent):
    name = "exploration"

    @staticmethod
    def scale(score: np.ndarray) -> float:
        """The bonus of an unseen new poll at weight 1 for a request with these scores."""
        if len(score):
            top, mean = score.max(), score.mean()
            if math.isfinite(top) and math.isfinite(mean):
                # Every score is finite (a NaN or an infinity would show in the max or
                # the mean): the numbers below, without copying the catalog's scores.
                return max(EXPLORATION_BONUS_SCALE, float(top - mean))
        finite = score[np.isfinite(score)]
        if not len(finite):
            return EXPLORATION_BONUS_SCALE
        return max(EXPLORATION_BONUS_SCALE, float(finite.max() - finite.mean()))

    @staticmethod
    def tail(up: UserPersonalization, user_id: str | None, now: float | None, scale: float,
             kept: Any = None) -> tuple[int, np.ndarray]:
        """(first serving position eligible for exploration, bonus of each eligible).
        ``kept``: the user's request-time vectors (model.py's ``_UserVectors``), where
        the seeded noise is kept: it depends only on the user, the moment and how many
        polls are young, so a user's next page draws nothing."""
        horizon = float(now) if now is not None else float(up.newest_timestamp_)
        cutoff = horizon - up.exploration_item_age_cutoff_days * SECONDS_PER_DAY
        start = int(np.searchsorted(up._sorted_creation, cutoff, side="left"))
        count = len(up._order) - start
        drawn = (up.random_state, int(horizon), count)
        if kept is not None and kept.noise is not None and kept.noise[0] == drawn:
            noise = kept.noise[1] * up._explore_base[start:]
        else:
            # Seeded per (model seed, user, moment): repeatable, yet varies between users.
            seed = [up.random_state, zlib.crc32((user_id or "").encode()), int(horizon)]
            rng = np.random.default_rng(seed)
            noise = rng.random(count, dtype=np.float32)
            noise *= 2 * EXPLORATION_NOISE
            noise += 1 - EXPLORATION_NOISE
            if kept is not None:
                kept.noise = (drawn, noise.copy())
            noise *= up._explore_base[start:]
        noise *= up.exploration_weight * scale
        return start, noise
