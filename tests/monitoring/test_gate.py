"""The champion/challenger gate: only a clear winner that holds on the golden set is promoted."""

from __future__ import annotations

import pytest

from monitoring.gate import decide_promotion


def test_a_worse_challenger_is_not_promoted():
    decision = decide_promotion(
        {"recall@10": 0.30}, {"recall@10": 0.25}, {"recall@10": 0.40}, {"recall@10": 0.41}, margin=0.0
    )
    assert not decision.promote
    assert "does not beat" in decision.reason
    # both evaluations are kept, for the model's metadata
    assert decision.to_dict()["champion_holdout"] == {"recall@10": 0.30}
    assert decision.to_dict()["challenger_golden"] == {"recall@10": 0.41}


def test_a_better_challenger_is_promoted():
    decision = decide_promotion(
        {"recall@10": 0.30}, {"recall@10": 0.36}, {"recall@10": 0.40}, {"recall@10": 0.40}, margin=0.1
    )
    assert decision.promote


def test_a_win_smaller_than_the_margin_is_not_enough():
    decision = decide_promotion(
        {"recall@10": 0.30}, {"recall@10": 0.32}, {"recall@10": 0.40}, {"recall@10": 0.40}, margin=0.1
    )
    assert not decision.promote
    assert "0.3300" in decision.reason  # the bar it had to clear


def test_a_golden_set_regression_blocks_a_holdout_winner():
    decision = decide_promotion(
        {"recall@10": 0.30}, {"recall@10": 0.50}, {"recall@10": 0.40}, {"recall@10": 0.30}, margin=0.0
    )
    assert not decision.promote
    assert "golden" in decision.reason
    tolerant = decide_promotion(
        {"recall@10": 0.30},
        {"recall@10": 0.50},
        {"recall@10": 0.40},
        {"recall@10": 0.30},
        margin=0.0,
        golden_tolerance=0.3,
    )
    assert tolerant.promote


def test_without_a_champion_the_challenger_is_promoted():
    assert decide_promotion(None, {"recall@10": 0.01}, None, {"recall@10": 0.01}, margin=0.5).promote


def test_a_missing_metric_is_named():
    with pytest.raises(KeyError, match="ndcg@10"):
        decide_promotion(
            {"recall@10": 0.3}, {"recall@10": 0.4}, None, {"recall@10": 0.4}, 0.0, metric="ndcg@10"
        )
