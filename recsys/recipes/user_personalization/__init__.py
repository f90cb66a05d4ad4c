"""User-Personalization (Amazon Personalize's ``aws-user-personalization``), built from
components: see model.py for the recipe and the blend, components/ for the parts."""

from recsys.recipes.user_personalization.components import COMPONENT_NAMES
from recsys.recipes.user_personalization.model import (
    NotFitted,
    UserPersonalization,
    UserPersonalizationError,
)
from recsys.recipes.user_personalization.settings import (
    ALS_ALPHA,
    EXPLORATION_BONUS_SCALE,
    ITEM_ITEM_L2_GRID,
    TEXT_FIELDS,
)

__all__ = ["UserPersonalization", "UserPersonalizationError", "NotFitted", "TEXT_FIELDS",
           "ALS_ALPHA", "COMPONENT_NAMES", "EXPLORATION_BONUS_SCALE", "ITEM_ITEM_L2_GRID"]
