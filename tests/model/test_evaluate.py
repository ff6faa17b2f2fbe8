"""Top-k metrics and the popularity lists, checked against answers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from models.baselines import most_popular, popular_lists
from models.evaluate import (
    metrics_from_ranks,
    ndcg_from_scores,
    per_user_metrics,
    ranking_metrics,
    ranks_in_lists,
    target_ranks,
    top_k,
)


def test_hr_recall_and_ndcg_by_hand():
    tops = [["a", "b", "c", "d"], ["y", "b"], ["q"]]
    relevant = [{"b", "d", "z"}, {"x", "y"}, set()]  # the third user had nothing relevant: scores 0
    out = ranking_metrics(tops, relevant, k=4)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert out["recall@4"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert out["hr@4"] == pytest.approx(2 / 3)
    assert out["ndcg@4"] == pytest.approx((dcg / ideal + 1 / (1 + 1 / math.log2(3)) + 0) / 3)
    assert out["users"] == 3
    assert ranking_metrics([["b", "d", "z"]], [{"b", "d", "z"}], k=3)["ndcg@3"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="No users"):
        ranking_metrics([], [], k=2)
    with pytest.raises(ValueError, match="align"):
        ranking_metrics([["a"]], [], k=2)


def test_one_target_metrics_agree_with_ranks():
    ranks = np.array([0, 1, 4, 9, 30])
    m = metrics_from_ranks(ranks, ks=(1, 5, 10))
    assert m["hr@1"] == pytest.approx(1 / 5) and m["hr@5"] == pytest.approx(3 / 5)
    expected = (1 / np.log2(2) + 1 / np.log2(3) + 1 / np.log2(6)) / 5
    assert m["ndcg@5"] == pytest.approx(expected)
    # the same users as lists: the target placed at its rank in a list of 40 items
    tops = [[t if i == r else -1 - i for i in range(40)] for t, r in enumerate(ranks)]
    lists = ranking_metrics(tops, [{t} for t in range(5)], k=10)
    assert lists["ndcg@10"] == pytest.approx(m["ndcg@10"]) and lists["hr@10"] == pytest.approx(m["hr@10"])


def test_excluded_items_are_masked_before_ranking():
    scores = np.array([[5.0, 4.0, 3.0, 2.0, 1.0]])
    assert target_ranks(scores.copy(), [np.array([], int)], np.array([3])).tolist() == [3]
    assert target_ranks(scores.copy(), [np.array([0, 1])], np.array([3])).tolist() == [1]
    assert top_k(scores.copy(), 2, [np.array([0])]).tolist() == [[1, 2]]
    assert ranks_in_lists(np.array([[4, 2, 9], [1, 2, 3]]), np.array([9, 7])).tolist() == [2, 3]


def test_ndcg_from_scores_is_the_top_k_ndcg():
    """Validation's sort-free NDCG equals the ranked lists' NDCG: one or several targets, targets
    that are masked, users with none."""
    rng = np.random.default_rng(7)
    scores = rng.standard_normal((300, 50))
    relevant = [rng.choice(50, size=rng.integers(0, 4), replace=False) for _ in range(300)]
    exclude = [rng.choice(50, size=rng.integers(0, 6), replace=False) for _ in range(300)]
    for k in (1, 5, 10):
        expected = per_user_metrics(top_k(scores.copy(), k, exclude), relevant, k)[2]
        got = ndcg_from_scores(scores.copy(), exclude, relevant, k)
        np.testing.assert_allclose(got, expected)
    assert (
        ndcg_from_scores(scores.copy(), exclude, relevant, 10)[[len(r) == 0 for r in relevant]] == 0
    ).all()


def test_ndcg_from_scores_breaks_ties_by_column():
    scores = np.array([[1.0, 3.0, 3.0, 0.0]])
    # item 2 ties item 1, which comes first: position 1
    assert ndcg_from_scores(scores.copy(), [np.array([], int)], [[2]], 2)[0] == pytest.approx(
        1 / math.log2(3)
    )
    assert ndcg_from_scores(scores.copy(), [np.array([], int)], [[2]], 1)[0] == 0.0
    assert ndcg_from_scores(scores.copy(), [np.array([1])], [[2]], 1)[0] == 1.0
    with pytest.raises(ValueError, match="relevant sets"):
        ndcg_from_scores(scores, [np.array([], int)], [[1], [2]], 2)


def test_popularity_counts_events_and_breaks_ties_by_id():
    events = pd.DataFrame(
        {"user_id": ["u1", "u1", "u2", "u2", "u3", "u3"], "item_id": ["b", "a", "b", "c", "a", "c"]}
    )
    assert most_popular(events, 3) == ["a", "b", "c"]  # 2 each: ties by id
    assert most_popular(events, 2, available={"b", "c"}) == ["b", "c"]
    users = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "region": ["north", "north", "south"]})
    lists = popular_lists(events, users, 1)
    assert lists == {"global": ["a"], "by_region": {"north": ["b"], "south": ["a"]}}
