"""The faiss index: exact on small catalogues, ANN recall against exact search checked and met."""

from __future__ import annotations

import numpy as np
import pytest

from models.index import build_index, recall_at_k
from recflow.settings import ServingSettings


def clustered(n: int, d: int = 32, seed: int = 0) -> np.ndarray:
    """Embeddings in 20 clusters, like a trained candidate tower's."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(20, d))
    return (centers[rng.integers(0, 20, n)] + 0.4 * rng.normal(size=(n, d))).astype(np.float32)


def test_recall_at_k_counts_shared_rows():
    truth = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    found = np.array([[4, 3, 9, 9], [5, 6, 7, 8]])
    assert recall_at_k(found, truth) == pytest.approx((2 / 4 + 1.0) / 2)


def test_small_catalogue_is_searched_exactly():
    items = clustered(300)
    index = build_index(items, ServingSettings())
    assert index.kind == "flat" and index.recall_at_10 == 1.0
    rows, scores = index.search(items[:1], 5)
    assert rows[0][0] == int(np.argmax(items @ items[0]))
    assert np.all(np.diff(scores[0]) <= 0)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_ann_index_meets_the_recall_target_against_exact_search(kind):
    items, queries = clustered(4000), clustered(300, seed=1)
    index = build_index(items, ServingSettings(index=kind, min_index_recall=0.95), queries)
    assert index.kind == kind
    assert index.recall_at_10 >= 0.95
    exact = np.argsort(-(queries @ items.T), axis=1)[:, :10]
    found, _ = index.search(queries, 10)
    assert recall_at_k(found, exact) >= 0.95  # re-measured independently of build_index
    assert index.describe()["n_items"] == 4000


def test_auto_switches_to_ivf_above_the_exact_limit():
    index = build_index(clustered(2000), ServingSettings(exact_max_items=1000))
    assert index.kind == "ivf" and "nprobe" in index.params


def test_empty_embeddings_are_refused():
    with pytest.raises(ValueError, match="non-empty"):
        build_index(np.zeros((0, 8), dtype=np.float32), ServingSettings())
