"""Top-k metrics, written once: HR@K, Recall@K and NDCG@K of ranked lists against what users did next.

For each user, `relevant` is the set of items they turned to next (one item in a leave-one-out
benchmark; every item of the held-out days in the platform's time split):

    HR@K     = 1 if the first K items hold a relevant item, else 0
    Recall@K = |top K ∩ relevant| / |relevant|
    NDCG@K   = sum_{rank r in top K, hit} 1 / log2(r + 1)  /  sum_{r=1}^{min(K, |relevant|)} 1 / log2(r + 1)

all averaged over users. With one relevant item Recall@K = HR@K.

Next-basket figures (`basket_metrics`) follow "A Next Basket Recommendation Reality Check" (Li et al.,
TOIS 2023) instead: NDCG's ideal runs over the whole basket (not only its first K items), and recall
is split into repeat items (bought before) and explore items (new to the household). The next-basket
benchmark and the replay's prequential scoring (`monitoring.quality.basket_quality`) both use it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

KS: tuple[int, ...] = (5, 10, 20)


def ranking_metrics(
    tops: Sequence[Sequence] | np.ndarray, relevant: Sequence[Collection], k: int
) -> dict[str, float]:
    """Mean HR@k, Recall@k and NDCG@k of aligned lists and relevant sets (users without relevant items count 0).

    Returns:
        `{"hr@k", "recall@k", "ndcg@k", "users"}`.

    Raises:
        ValueError: if there is nobody to evaluate or the lists and sets do not align.
    """
    hr, recall, ndcg = per_user_metrics(tops, relevant, k)
    return {
        f"hr@{k}": float(hr.mean()),
        f"recall@{k}": float(recall.mean()),
        f"ndcg@{k}": float(ndcg.mean()),
        "users": len(tops),
    }


def per_user_metrics(
    tops: Sequence[Sequence] | np.ndarray, relevant: Sequence[Collection], k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each user's HR@k, Recall@k and NDCG@k (see `ranking_metrics`), as three arrays."""
    if len(tops) != len(relevant):
        raise ValueError(f"{len(tops)} lists but {len(relevant)} relevant sets: they must align")
    if not len(relevant):
        raise ValueError("No users to evaluate: nobody has held-out interactions")
    discount = 1.0 / np.log2(np.arange(k) + 2.0)
    hr = np.zeros(len(tops))
    recall = np.zeros(len(tops))
    ndcg = np.zeros(len(tops))
    for u, (top, rel) in enumerate(zip(tops, relevant, strict=True)):
        rel = set(rel)
        if not rel:
            continue
        hits = np.array([item in rel for item in list(top)[:k]], dtype=bool)
        hr[u] = float(hits.any())
        recall[u] = hits.sum() / len(rel)
        ndcg[u] = (discount[: len(hits)] * hits).sum() / discount[: min(k, len(rel))].sum()
    return hr, recall, ndcg


def top_k(scores: np.ndarray, k: int, exclude: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """The `k` best columns of each row of `scores` [B, n], best first; `exclude` rows' columns masked.

    `scores` is modified in place when `exclude` is given.
    """
    if exclude is not None:
        for u, columns in enumerate(exclude):
            scores[u, columns] = -np.inf
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def ndcg_from_scores(
    scores: np.ndarray, exclude: Sequence[np.ndarray], relevant: Sequence[Collection], k: int
) -> np.ndarray:
    """Each user's NDCG@k of the top k of `scores` [B, n] (the `exclude` columns masked in place),
    ties broken by column (the lower column first).

    The same figure as `per_user_metrics(top_k(scores, k, exclude), relevant, k)` wherever the top k
    holds no ties (`top_k` breaks ties in no set order), for a fraction of the cost: validation runs
    it on every candidate model it compares (co-occurrence trials, two-tower epochs). One partial
    partition per user finds the k-th best score; only the items at or above it are ordered, so a
    basket of many relevant items costs what a single target does.
    """
    if len(scores) != len(relevant) or len(exclude) != len(relevant):
        raise ValueError(
            f"{len(scores)} score rows, {len(exclude)} exclusions, {len(relevant)} relevant sets"
        )
    for row, columns in enumerate(exclude):
        scores[row, columns] = -np.inf
    n = scores.shape[1]
    k = min(k, n)
    discount = 1.0 / np.log2(np.arange(k) + 2.0)
    ideal = np.cumsum(discount)
    out = np.zeros(len(relevant))
    chunk = max(1, int(2e7 // max(n, 1)))
    for lo in range(0, len(relevant), chunk):
        block = scores[lo : lo + chunk]
        kth = -np.partition(-block, k - 1, axis=1)[:, k - 1]
        for b, row in enumerate(block):
            wanted = relevant[lo + b]
            if not len(wanted):
                continue
            above = np.flatnonzero(row >= kth[b])
            top = above[np.lexsort((above, -row[above]))][:k]
            top = top[np.isfinite(row[top])]
            hit = np.flatnonzero(np.isin(top, np.asarray(list(set(wanted)), dtype=np.int64)))
            out[lo + b] = discount[hit].sum() / ideal[min(len(set(wanted)), k) - 1]
    return out


def target_ranks(scores: np.ndarray, exclude: Sequence[np.ndarray], targets: np.ndarray) -> np.ndarray:
    """0-based rank of each user's one target among all items, the excluded items masked.

    An item ties with the target only if it scores exactly the same; ties are counted in the
    target's favour (rank = number of unmasked items scoring strictly higher). `scores` (float32)
    is masked in place.
    """
    scores = np.asarray(scores, dtype=np.float32)
    if not scores.flags.writeable:
        scores = scores.copy()
    for u, h in enumerate(exclude):
        scores[u, h] = -np.inf
    rows = np.arange(len(targets))
    target_scores = scores[rows, targets]
    return (scores > target_scores[:, None]).sum(axis=1)


def metrics_from_ranks(ranks: np.ndarray, ks: Sequence[int] = KS) -> dict[str, float]:
    """HR@K (= Recall@K for one target) and NDCG@K from each user's 0-based target rank, averaged."""
    out: dict[str, float] = {}
    for k in ks:
        hit = ranks < k
        out[f"hr@{k}"] = float(hit.mean())
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean())
    return out


def ranks_in_lists(ranked: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each target in its ranked list [B, C]; C when it is absent."""
    hit = ranked == targets[:, None]
    return np.where(hit.any(axis=1), hit.argmax(axis=1), ranked.shape[1])


def basket_metrics(
    lists: np.ndarray | Sequence[Sequence],
    targets: Sequence[Sequence],
    histories: Sequence[Sequence[Sequence]],
    k: int = 10,
) -> dict[str, float]:
    """Recall@K, NDCG@K, PHR@K and repeat / explore recall@K of next baskets, averaged over households.

    For a household with target basket T (its distinct items) and top-K list P: Recall@K = |P ∩ T| / |T|;
    NDCG@K = DCG@K / IDCG with the ideal over the whole basket (IDCG sums 1/log2(i+2) for i < |T|, not
    only i < K, as the paper's code does); PHR@K = 1 if P ∩ T is not empty; repeat / explore recall: the
    same recall on T's items the household bought before / the ones new to it, averaged over the
    households whose target has such items.

    Args:
        lists: per household, its ranked items (item indices or ids; a value that is no item, such as
            -1 or None, pads a short list); the first `k` count.
        targets: each household's target basket (distinct items, not empty).
        histories: each household's history baskets (which items are repeats).
        k: the cut-off.

    Returns:
        `{"recall@K", "ndcg@K", "phr@K", "repeat_recall@K", "explore_recall@K", "repeat_users",
        "explore_users"}` (0.0 for a figure with nobody to average).
    """
    discount = 1.0 / np.log2(np.arange(2, max(k, max((len(t) for t in targets), default=1)) + 2))
    recall, ndcg, phr, repeat, explore = [], [], [], [], []
    for top, target, history in zip(lists, targets, histories, strict=True):
        chosen_list = list(top)[:k]
        truth = set(list(target))
        hit = np.array([i in truth for i in chosen_list], dtype=bool)
        recall.append(hit.sum() / len(truth))
        ndcg.append(discount[: len(hit)][hit].sum() / discount[: len(truth)].sum())
        phr.append(float(hit.any()))
        seen = {i for basket in history for i in list(basket)}
        chosen = set(chosen_list)
        if truth & seen:
            repeat.append(len(chosen & truth & seen) / len(truth & seen))
        if truth - seen:
            explore.append(len(chosen & (truth - seen)) / len(truth - seen))

    def mean(values: list) -> float:
        return float(np.mean(values)) if values else 0.0

    return {
        f"recall@{k}": mean(recall),
        f"ndcg@{k}": mean(ndcg),
        f"phr@{k}": mean(phr),
        f"repeat_recall@{k}": mean(repeat),
        f"explore_recall@{k}": mean(explore),
        "repeat_users": len(repeat),
        "explore_users": len(explore),
    }
