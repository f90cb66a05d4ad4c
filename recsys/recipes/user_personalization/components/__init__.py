"""User-Personalization's components, in blend (design-matrix) order; see base.py."""

from __future__ import annotations

from recsys.recipes.user_personalization.components.base import (
    BaseComponent,
    Component,
    FitEvents,
    UserContext,
)
from recsys.recipes.user_personalization.components.collaborative import Collaborative
from recsys.recipes.user_personalization.components.content import Content
from recsys.recipes.user_personalization.components.exploration import Exploration
from recsys.recipes.user_personalization.components.item_item import ItemItem
from recsys.recipes.user_personalization.components.popularity import Popularity
from recsys.recipes.user_personalization.components.recency import Recency
from recsys.recipes.user_personalization.components.rerank import Rerank
from recsys.recipes.user_personalization.components.segments import Segments
from recsys.recipes.user_personalization.components.sequence import SequenceAware
from recsys.recipes.user_personalization.components.walk import Walk

# Registration order is the blend's column order (kept as it was before the split, so a
# model's learned weights and scores did not move). Collaborative fits before segments:
# a segment's start in the factor space is its members' mean ALS factor. The re-ranker
# adds no column: it is the second stage, learned after the blend.
REGISTRY: dict[str, type[BaseComponent]] = {
    c.name: c for c in (Collaborative, Content, Popularity, Segments, ItemItem, Recency,
                        Exploration, SequenceAware, Walk, Rerank)
}
COMPONENT_NAMES: tuple[str, ...] = tuple(REGISTRY)

__all__ = ["BaseComponent", "Component", "FitEvents", "UserContext", "REGISTRY",
           "COMPONENT_NAMES", "Collaborative", "Content", "Exploration", "ItemItem",
           "Popularity", "Recency", "Rerank", "Segments", "SequenceAware", "Walk"]
