"""Roadmap analyses: follow-graph impact (offline and on served feeds), trend-frequency
tuning, poll-text ablation, the exploration replay, and their report."""

from recsys.analysis.exploration import ExplorationReplayError, ExplorationResult, exploration_replay

from recsys.analysis.follow_impact import (
    FollowImpactConfig,
    FollowImpactError,
    FollowImpactResult,
    follow_impact,
    read_follows,
)
from recsys.analysis.report import write_report
from recsys.analysis.served import (
    ServedImpactResult,
    ServedLogError,
    export_served,
    read_served,
    served_follow_impact,
)
from recsys.analysis.text_ablation import TextAblationError, TextAblationResult, text_ablation
from recsys.analysis.trend_tuning import (
    TrendTuningError,
    TrendTuningResult,
    tune_trending,
)

__all__ = [
    "ExplorationReplayError", "ExplorationResult", "ServedImpactResult", "ServedLogError",
    "TextAblationError", "TextAblationResult", "exploration_replay", "export_served",
    "read_served", "served_follow_impact", "text_ablation",
    "FollowImpactConfig", "FollowImpactError", "FollowImpactResult", "TrendTuningError",
    "TrendTuningResult", "follow_impact", "read_follows", "tune_trending", "write_report",
]
