"""Personalize's offline metrics, checked against its documented worked example."""

from __future__ import annotations

import pytest

from recsys.evaluation import coverage, ndcg_at_k, precision_at_k, recall_at_k, user_metrics
from recsys.evaluation.metrics import reciprocal_rank_at_k

# Relevant polls at ranks 2 and 5 of the list, as in Personalize's developer guide.
RANKED = ["a", "R1", "b", "c", "R2", "d", "e"]
RELEVANT = {"R1", "R2"}


def test_personalize_worked_example() -> None:
    assert ndcg_at_k(RANKED, RELEVANT, 5) == pytest.approx(0.6241, abs=5e-5)
    assert precision_at_k(RANKED, RELEVANT, 5) == pytest.approx(0.4)


def test_reciprocal_rank_is_first_hit_within_depth() -> None:
    assert reciprocal_rank_at_k(RANKED, RELEVANT, 25) == pytest.approx(0.5)
    assert reciprocal_rank_at_k(RANKED, RELEVANT, 1) == 0.0


def test_perfect_list_scores_one_and_empty_list_zero() -> None:
    assert ndcg_at_k(["R1", "R2", "x"], RELEVANT, 10) == pytest.approx(1.0)
    assert ndcg_at_k([], RELEVANT, 10) == 0.0
    assert recall_at_k(["R1", "x"], RELEVANT, 25) == pytest.approx(0.5)


def test_precision_divides_by_k_even_with_few_relevant() -> None:
    assert precision_at_k(["R1"] + ["x"] * 24, {"R1"}, 25) == pytest.approx(1 / 25)


def test_user_metrics_names_match_personalize() -> None:
    names = set(user_metrics(RANKED, RELEVANT))
    assert names == {
        "mean_reciprocal_rank_at_25",
        "normalized_discounted_cumulative_gain_at_5",
        "normalized_discounted_cumulative_gain_at_10",
        "normalized_discounted_cumulative_gain_at_25",
        "precision_at_5", "precision_at_10", "precision_at_25", "recall_at_25",
    }


def test_coverage_counts_distinct_polls_over_the_catalog() -> None:
    assert coverage([["a", "b"], ["b", "c"]], catalog_size=10) == pytest.approx(0.3)
