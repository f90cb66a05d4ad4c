"""Popularity: log(1 + events) of each poll, the prior every feed leans on when the
user says little. Its unlearned companions, served too when a blend gives them weight:
"appeal" (events against what the poll's age predicts) and "coldness" (how few events
a poll has, as the factor shrink uses it); on the demo data they lowered NDCG@10, so
the learned blend leaves them out."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from recsys.recipes.user_personalization.components.base import BaseComponent, UserContext

if TYPE_CHECKING:  # pragma: no cover
    from recsys.recipes.user_personalization.model import UserPersonalization


class Popularity(BaseComponent):
    name = "popularity"
    features = ("popularity",)
    weights = ("popularity", "appeal", "coldness")

    def score(self, up: UserPersonalization, user: UserContext) -> np.ndarray:
        return up._popularity[None, :]

    def score_at(self, up: UserPersonalization, user: UserContext, polls: np.ndarray
                 ) -> np.ndarray:
        return up._popularity[polls][None, :]
