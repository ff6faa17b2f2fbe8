"""Offline evaluation on the time-based holdout: Recall@K and NDCG@K of the model and of popularity.

Protocol. The holdout is the newest `settings.data.holdout_days` days of validated events; the model
never trains on them. Every user who has holdout interactions AND was seen in training is evaluated;
their relevant set is every distinct item they viewed, carted or bought in the holdout. Each
recommender ranks the whole catalogue once per user, as of the end of the training window, and
its top K is scored. Nothing is excluded from the top K (items the user already interacted with
stay eligible: shoppers re-view and re-buy, and the synthetic world has repeat views); the same rule
applies to the model and to the baseline.

    Recall@K = |top K ∩ relevant| / |relevant|
    NDCG@K   = sum_{rank r in top K, hit} 1 / log2(r + 1)  /  sum_{r=1}^{min(K, |relevant|)} 1 / log2(r + 1)

Both are averaged over the evaluated users.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd


def recall_at_k(top: Sequence[str], relevant: set[str], k: int) -> float:
    """Share of the relevant items found in the first `k` of `top` (0 when nothing is relevant)."""
    if not relevant:
        return 0.0
    return len(set(list(top)[:k]) & relevant) / len(relevant)


def ndcg_at_k(top: Sequence[str], relevant: set[str], k: int) -> float:
    """Binary-gain NDCG of the first `k` of `top` against `relevant` (0 when nothing is relevant)."""
    if not relevant:
        return 0.0
    dcg = sum(1.0 / np.log2(rank + 2) for rank, item in enumerate(list(top)[:k]) if item in relevant)
    ideal = sum(1.0 / np.log2(rank + 2) for rank in range(min(k, len(relevant))))
    return float(dcg / ideal)


def ranking_metrics(tops: Mapping[str, Sequence[str]], relevant: Mapping[str, set[str]], k: int) -> dict:
    """Mean Recall@K and NDCG@K over the users of `relevant` (a user missing from `tops` scores 0).

    Returns:
        `{"recall@K": float, "ndcg@K": float, "users": int}`.
    """
    if not relevant:
        raise ValueError("No users to evaluate: the holdout has no interactions of users seen in training")
    recalls = [recall_at_k(tops.get(u, []), rel, k) for u, rel in relevant.items()]
    ndcgs = [ndcg_at_k(tops.get(u, []), rel, k) for u, rel in relevant.items()]
    return {
        f"recall@{k}": float(np.mean(recalls)),
        f"ndcg@{k}": float(np.mean(ndcgs)),
        "users": len(relevant),
    }


def holdout_relevance(train_events: pd.DataFrame, holdout_events: pd.DataFrame) -> dict[str, set[str]]:
    """For each user with holdout interactions who was seen in training: the distinct holdout items."""
    seen = set(train_events["user_id"].astype(str))
    holdout = holdout_events[holdout_events["user_id"].astype(str).isin(seen)]
    grouped = holdout.groupby(holdout["user_id"].astype(str))["item_id"].agg(lambda s: set(s.astype(str)))
    return grouped.to_dict()


def top_k_by_score(scores: np.ndarray, item_ids: np.ndarray, k: int) -> list[list[str]]:
    """The `k` highest-scoring item ids of each row of `scores` [n_users, n_items], best first."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(scores, part, axis=1).argsort(axis=1)[:, ::-1]
    best = np.take_along_axis(part, order, axis=1)
    return [list(item_ids[row]) for row in best]


def compare(
    model_tops: Mapping[str, Sequence[str]],
    popularity_tops: Mapping[str, Sequence[str]],
    relevant: Mapping[str, set[str]],
    k: int,
) -> dict[str, dict[str, float]]:
    """Model and popularity baseline side by side: `{"model": {...}, "popularity": {...}}`."""
    return {
        "model": ranking_metrics(model_tops, relevant, k),
        "popularity": ranking_metrics(popularity_tops, relevant, k),
    }
