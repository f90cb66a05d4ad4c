"""Offline evaluation: Personalize's split and metrics, peer baselines, intervals."""

from recsys.evaluation.evaluate import (
    HEADLINE_METRIC,
    MODEL_KEYS,
    EvaluationProgress,
    EvaluationReport,
    ModelResult,
    RecipeUnavailable,
    UnknownComponent,
    UnknownModel,
    evaluate,
    parse_models,
    report_json_schema,
)
from recsys.evaluation.intervals import Estimate, mean_interval, paired_difference, paired_ratio
from recsys.evaluation.metrics import (
    PER_USER_METRICS,
    PERSONALIZE_METRICS,
    coverage,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    reciprocal_rank_at_k,
    user_metrics,
)
from recsys.evaluation.peers import (
    ALS,
    BPR,
    EASE,
    EASE_MAX_ITEMS,
    ItemKNN,
    ItemKNNShrunk,
    MostPopular,
    PeerSkipped,
    RandomPolls,
    RP3beta,
    UserItemMatrix,
    ease_weights,
)
from recsys.evaluation.split import (
    EvaluationSplit,
    EvaluationSplitError,
    HeldOutUser,
    personalize_split,
    temporal_split,
    user_folds,
    validation_split,
)

__all__ = [
    "ALS", "BPR", "EASE", "EASE_MAX_ITEMS", "HEADLINE_METRIC", "MODEL_KEYS",
    "PER_USER_METRICS", "PERSONALIZE_METRICS", "Estimate", "EvaluationProgress",
    "EvaluationReport", "EvaluationSplit", "EvaluationSplitError", "HeldOutUser", "ItemKNN", "ItemKNNShrunk", "RP3beta",
    "ModelResult", "MostPopular", "PeerSkipped", "RandomPolls", "RecipeUnavailable",
    "UnknownComponent", "UnknownModel", "UserItemMatrix", "coverage", "ease_weights", "evaluate",
    "mean_interval", "ndcg_at_k", "paired_difference", "paired_ratio", "parse_models",
    "personalize_split", "precision_at_k", "recall_at_k", "reciprocal_rank_at_k", "report_json_schema",
    "temporal_split", "user_folds", "user_metrics", "validation_split",
]
