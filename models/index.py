"""Faiss index over item embeddings: exact for small catalogues, IVF or HNSW above, recall checked at load."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from recflow.settings import ServingSettings

log = logging.getLogger(__name__)


@dataclass
class ItemIndex:
    """A faiss inner-product index and the settings it is served with.

    Attributes:
        index: the faiss index (row i is item i of the bundle).
        kind: "flat", "ivf" or "hnsw".
        recall_at_10: recall@10 of this index against exact search on sample queries (1.0 for flat).
        params: the served search parameters (nprobe for IVF, efSearch for HNSW).
    """

    index: faiss.Index
    kind: str
    recall_at_10: float
    params: dict

    def search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-n item rows and scores for each query row (rows of -1 when the catalogue is smaller)."""
        n = min(n, self.index.ntotal)
        scores, rows = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), n)
        return rows, scores

    def describe(self) -> dict:
        """A JSON-able summary for `/metadata`."""
        n_items = self.index.ntotal
        return {"kind": self.kind, "recall_at_10": self.recall_at_10, "n_items": n_items, **self.params}


def build_index(
    embeddings: np.ndarray,
    settings: ServingSettings,
    sample_queries: np.ndarray | None = None,
) -> ItemIndex:
    """Build the index the service searches, and check its recall against exact search.

    `auto` searches exactly (`IndexFlatIP`) up to `settings.exact_max_items` items and uses IVF above.
    For IVF and HNSW the search breadth (nprobe, efSearch) is raised until recall@10 against exact
    search on `sample_queries` reaches `settings.min_index_recall`.

    Args:
        embeddings: item embeddings, float32 [n_items, d].
        settings: the serving section of the settings.
        sample_queries: query vectors [m, d] to measure recall on; the item embeddings when omitted.

    Raises:
        ValueError: if the embeddings are empty or not 2-D, or the recall target cannot be met.
    """
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or embeddings.shape[0] == 0:
        raise ValueError(f"Item embeddings must be a non-empty [n, d] array, got shape {embeddings.shape}.")
    n, d = embeddings.shape
    kind = settings.index
    if kind == "auto":
        kind = "flat" if n <= settings.exact_max_items else "ivf"
    if kind == "flat":
        flat = faiss.IndexFlatIP(d)
        flat.add(embeddings)
        return ItemIndex(flat, "flat", 1.0, {})

    queries = embeddings if sample_queries is None else np.ascontiguousarray(sample_queries, dtype=np.float32)
    queries = queries[np.random.default_rng(0).permutation(len(queries))[:500]]
    exact = faiss.IndexFlatIP(d)
    exact.add(embeddings)
    _, truth = exact.search(queries, min(10, n))

    index: Any
    if kind == "ivf":
        nlist = max(1, min(int(4 * np.sqrt(n)), n // 39))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(embeddings)
        index.add(embeddings)
        name, breadths = "nprobe", _ladder(settings.nprobe, nlist)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.add(embeddings)
        name, breadths = "efSearch", _ladder(32, 4096)
    else:
        raise ValueError(f"Unknown index kind {kind!r}: expected auto, flat, ivf or hnsw.")

    recall = 0.0
    for breadth in breadths:
        _set_breadth(index, name, breadth)
        _, found = index.search(queries, truth.shape[1])
        recall = recall_at_k(found, truth)
        if recall >= settings.min_index_recall:
            log.info("faiss %s index: %s=%d gives recall@10 %.3f vs exact", kind, name, breadth, recall)
            return ItemIndex(index, kind, recall, {name: breadth})
    raise ValueError(
        f"faiss {kind} index reaches recall@10 {recall:.3f} < {settings.min_index_recall} even at "
        f"{name}={breadths[-1]}: use index='flat' or lower serving.min_index_recall."
    )


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row of `truth` (exact top-k rows) that appears in the same row of `found`."""
    pairs = zip(found, truth, strict=True)
    hits = [len(set(f[f >= 0]) & set(t[t >= 0])) / max(1, (t >= 0).sum()) for f, t in pairs]
    return float(np.mean(hits))


def _ladder(start: int, stop: int) -> list[int]:
    """start, 2*start, 4*start, ... capped at stop (stop included)."""
    out, value = [], max(1, min(start, stop))
    while value < stop:
        out.append(value)
        value *= 2
    return [*out, stop]


def _set_breadth(index: Any, name: str, value: int) -> None:
    """Set IVF's nprobe or HNSW's efSearch (attributes of the concrete faiss index classes)."""
    if name == "nprobe":
        index.nprobe = value
    else:
        index.hnsw.efSearch = value
