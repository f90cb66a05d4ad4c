"""Roadmap analyses: follow-graph impact, trend-frequency tuning, and their report."""

from recsys.analysis.follow_impact import (
    FollowImpactConfig,
    FollowImpactError,
    FollowImpactResult,
    follow_impact,
    read_follows,
)
from recsys.analysis.report import write_report
from recsys.analysis.trend_tuning import TrendTuningError, TrendTuningResult, tune_trending

__all__ = [
    "FollowImpactConfig", "FollowImpactError", "FollowImpactResult", "TrendTuningError",
    "TrendTuningResult", "follow_impact", "read_follows", "tune_trending", "write_report",
]
