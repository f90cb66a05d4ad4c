"""Content affinity: the user's recent polls' content vectors (text through the
pluggable encoder of recsys/text.py, plus topic categories; built in metadata.py)
against each poll's. It adds what the factor space cannot express, and it is what a
cold poll with no events can still be matched on."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from recsys.recipes.user_personalization.components.base import (
    BaseComponent,
    UserContext,
    recent_weights,
)

if TYPE_CHECKING:  # pragma: no cover
    from recsys.recipes.user_personalization.model import UserPersonalization, _UserVectors


class Content(BaseComponent):
    name = "content"
    features = ("content",)
    weights = ("content", "cold_content")
    affinities = ("content",)

    def score(self, up: UserPersonalization, user: UserContext) -> np.ndarray:
        return (up.content_ @ self.user_profile(up, user.user_id))[None, :]

    def score_at(self, up: UserPersonalization, user: UserContext, polls: np.ndarray
                 ) -> np.ndarray:
        profile = self.request_profile(up, user.user_id, up._user_vectors(user.user_id))
        return (up.content_[polls] @ profile)[None, :]

    @staticmethod
    def request_profile(up: UserPersonalization, user_id: str | None, vectors: _UserVectors
                        ) -> np.ndarray:
        """:meth:`user_profile`, once per entry of the request memo ``vectors`` (see
        ``Collaborative.request_vector``)."""
        return vectors.once("profile", lambda: Content.user_profile(up, user_id))

    @staticmethod
    def user_profile(up: UserPersonalization, user_id: str | None) -> np.ndarray:
        """The event-weighted, unit-length mean content of the user's latest polls
        (zeros without history)."""
        summed = recent_weights(up, user_id)
        if summed is None:
            return np.zeros(up.content_.shape[1], np.float32)
        uniq, w = summed
        profile = (w[:, None] * up.content_[uniq]).sum(0)
        norm = np.linalg.norm(profile)
        if norm > 0:
            profile = profile / norm
        return profile.astype(np.float32)
