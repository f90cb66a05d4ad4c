"""Recency: polls are engaged mostly soon after creation, so a poll's age at the
request's moment enters the blend as a learned step function (one weight per step of
POLL_AGE_EDGES_DAYS). The steps are the blend's one-hot columns; without this
component (or with ``use_recency=False``) they collapse into a bare intercept."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from recsys.recipes.user_personalization.components.base import BaseComponent
from recsys.recipes.user_personalization.settings import POLL_AGE_EDGES_DAYS

if TYPE_CHECKING:  # pragma: no cover
    from recsys.recipes.user_personalization.model import UserPersonalization


class Recency(BaseComponent):
    name = "recency"

    @staticmethod
    def steps(up: UserPersonalization, t_ref: float) -> np.ndarray:
        """Each poll's age step at ``t_ref`` (poll-id order)."""
        # The serving cuts (add_age_term), not a search per poll: fit asks this for every
        # validation user, and at 50k polls the search was 0.9 ms a user. In creation
        # order a poll's step is how many cuts lie past it. The same steps as the search
        # wherever the subtractions are exact (whole-second timestamps, as Personalize
        # keeps them); a NaN creation time reads as step 0 here, as serving reads it.
        cuts = Recency._cuts(up, t_ref)
        in_creation_order = np.zeros(len(up._order), np.intp)
        for cut in cuts.tolist():
            in_creation_order[:cut] += 1
        steps = np.empty_like(in_creation_order)
        steps[up._order] = in_creation_order
        return steps

    @staticmethod
    def _cuts(up: UserPersonalization, t_ref: float) -> np.ndarray:
        """Per age edge, how many polls (in creation order) were created at or before
        ``t_ref - edge``: a poll is in step j when its age passed j edges, so in creation
        order each step is one run between two cuts."""
        return np.searchsorted(up._sorted_creation, t_ref - up._age_edges, side="right")

    @staticmethod
    def steps_at(up: UserPersonalization, t_ref: float, polls: np.ndarray) -> np.ndarray:
        """``steps(up, t_ref)[polls]``."""
        return np.searchsorted(up._age_edges, t_ref - up.creation_[polls], side="right")

    @staticmethod
    def design(ages: np.ndarray, on: bool) -> np.ndarray:
        """The blend's age columns: one-hot steps, or all ones (an intercept) when off."""
        one_hot = np.zeros((len(ages), len(POLL_AGE_EDGES_DAYS) + 1))
        one_hot[np.arange(len(ages)), ages] = 1
        if not on:
            one_hot[:] = 1  # a bare intercept
        return one_hot

    @staticmethod
    def add_age_term(up: UserPersonalization, score: np.ndarray, t_ref: float) -> None:
        """Add each poll's age-step weight to ``score`` (serving order) in place."""
        cuts = Recency._cuts(up, t_ref)
        bounds = [0, *cuts[::-1].tolist(), len(score)]  # plain ints: a few slices per request
        weights = up.age_weights_
        last = len(up._age_edges)
        for step in range(len(bounds) - 1):
            lo, hi = bounds[step], bounds[step + 1]
            if hi > lo:
                score[lo:hi] += weights[last - step]
