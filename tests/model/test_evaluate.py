"""Holdout metrics and the popularity baseline, checked against answers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from models.baselines import most_popular, popular_lists
from models.evaluate import (
    compare,
    holdout_relevance,
    ndcg_at_k,
    ranking_metrics,
    recall_at_k,
    top_k_by_score,
)


def test_recall_and_ndcg_by_hand():
    top = ["a", "b", "c", "d"]
    relevant = {"b", "d", "z"}
    # hits at ranks 2 and 4 of 3 relevant items
    assert recall_at_k(top, relevant, 4) == pytest.approx(2 / 3)
    assert recall_at_k(top, relevant, 2) == pytest.approx(1 / 3)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(top, relevant, 4) == pytest.approx(dcg / ideal)
    assert ndcg_at_k(["b", "d", "z"], relevant, 3) == pytest.approx(1.0)
    assert recall_at_k(top, set(), 4) == 0.0 and ndcg_at_k(top, set(), 4) == 0.0


def test_ranking_metrics_average_over_users_and_missing_users_score_zero():
    relevant = {"u1": {"a"}, "u2": {"x", "y"}, "u3": {"q"}}
    tops = {"u1": ["a", "b"], "u2": ["y", "b"]}  # u3 has no recommendation
    out = ranking_metrics(tops, relevant, k=2)
    assert out["recall@2"] == pytest.approx((1 + 0.5 + 0) / 3)
    ideal_u2 = 1 + 1 / math.log2(3)
    assert out["ndcg@2"] == pytest.approx((1 + 1 / ideal_u2 + 0) / 3)
    assert out["users"] == 3
    with pytest.raises(ValueError, match="No users"):
        ranking_metrics(tops, {}, k=2)


def test_compare_has_the_summary_keys():
    relevant = {"u1": {"a"}}
    out = compare({"u1": ["a"]}, {"u1": ["b"]}, relevant, k=10)
    assert out["model"]["recall@10"] == 1.0 and out["popularity"]["recall@10"] == 0.0
    assert set(out) == {"model", "popularity"} and {"recall@10", "ndcg@10"} <= set(out["model"])


def test_top_k_by_score_orders_best_first():
    scores = np.array([[0.1, 0.9, 0.5, 0.7], [3.0, 2.0, 1.0, 0.0]])
    ids = np.array(["a", "b", "c", "d"])
    assert top_k_by_score(scores, ids, 3) == [["b", "d", "c"], ["a", "b", "c"]]


def test_holdout_relevance_keeps_users_seen_in_training_only():
    train = pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["a", "b"]})
    holdout = pd.DataFrame({"user_id": ["u1", "u1", "u1", "u9"], "item_id": ["c", "c", "d", "a"]})
    assert holdout_relevance(train, holdout) == {"u1": {"c", "d"}}


def test_popularity_counts_events_and_breaks_ties_by_id():
    events = pd.DataFrame(
        {"user_id": ["u1", "u1", "u2", "u2", "u3", "u3"], "item_id": ["b", "a", "b", "c", "a", "c"]}
    )
    assert most_popular(events, 3) == ["a", "b", "c"]  # 2 each: ties by id
    assert most_popular(events, 2, available={"b", "c"}) == ["b", "c"]
    users = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "region": ["north", "north", "south"]})
    lists = popular_lists(events, users, 1)
    assert lists == {"global": ["a"], "by_region": {"north": ["b"], "south": ["a"]}}
