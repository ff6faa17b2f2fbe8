"""Item-to-item co-occurrence recommender over the user's last few items: a strong sequential baseline.

The model counts, over the fitting sequences, how often item j follows item i within `window`
steps (weight `decay ** (gap - 1)`), and how often it precedes it (times `backward`). Counts are
divided by `popularity(j) ** alpha`, so that popular items do not win every row. A user is scored
by the rows of their last `last_n` items, the most recent weighted 1, the one before `recency`, ...
A tiny popularity term breaks ties and fills empty rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy import sparse


@dataclass(frozen=True)
class CooccurrenceParams:
    """Hyperparameters of the co-occurrence model (chosen on validation targets)."""

    window: int = 8
    decay: float = 0.8
    backward: float = 0.25
    alpha: float = 0.2
    last_n: int = 8
    recency: float = 0.5


GRID: dict[str, tuple] = {
    "window": (1, 2, 3, 5, 8, 12),
    "decay": (0.3, 0.5, 0.8, 0.9),
    "backward": (0.0, 0.25, 0.5, 1.0),
    "alpha": (0.0, 0.2, 0.4, 0.6),
    "last_n": (1, 2, 3, 5, 8, 12),
    "recency": (0.3, 0.5, 0.7),
}


class CooccurrenceModel:
    """Fitted co-occurrence scores: `scores(histories)` gives a `[users, items]` array."""

    def __init__(self, params: CooccurrenceParams, n_items: int) -> None:
        self.params = params
        self.n_items = n_items
        self.matrix: sparse.csr_matrix | None = None
        self.popularity = np.zeros(n_items)

    def fit(self, histories: Sequence[np.ndarray]) -> CooccurrenceModel:
        """Count the co-occurrences of the fitting sequences (each user's items in order)."""
        p = self.params
        lengths = np.array([len(h) for h in histories])
        flat = np.concatenate(histories) if len(histories) else np.zeros(0, np.int32)
        owner = np.repeat(np.arange(len(histories)), lengths)
        self.popularity = np.bincount(flat, minlength=self.n_items).astype(np.float64)
        rows, cols, vals = [], [], []
        for gap in range(1, p.window + 1):
            same = owner[gap:] == owner[:-gap]
            a, b = flat[:-gap][same], flat[gap:][same]
            w = p.decay ** (gap - 1)
            rows += [a, b]
            cols += [b, a]
            vals += [np.full(len(a), w), np.full(len(a), w * p.backward)]
        counts = sparse.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(self.n_items, self.n_items),
        )
        norm = np.power(np.maximum(self.popularity, 1.0), -p.alpha)
        self.matrix = (counts @ sparse.diags(norm)).tocsr()
        return self

    def context(self, histories: Sequence[np.ndarray]) -> sparse.csr_matrix:
        """The `[users, items]` weights of each user's last `last_n` items (most recent weighs 1)."""
        p = self.params
        rows, cols, vals = [], [], []
        for u, h in enumerate(histories):
            last = h[-p.last_n :][::-1]
            rows.append(np.full(len(last), u))
            cols.append(last)
            vals.append(p.recency ** np.arange(len(last)))
        return sparse.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(len(histories), self.n_items),
        )

    def scores(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """Scores of every item for each user, from the user's history (items in order)."""
        if self.matrix is None:
            raise RuntimeError("CooccurrenceModel.scores called before fit()")
        dense = (self.context(histories) @ self.matrix).toarray()
        dense += 1e-6 * self.popularity / max(self.popularity.max(), 1.0)  # ties go to the popular
        return dense


def tune_cooccurrence(
    histories: Sequence[np.ndarray],
    n_items: int,
    objective: Callable[[CooccurrenceModel], float],
    start: CooccurrenceParams | None = None,
    rounds: int = 2,
) -> tuple[CooccurrenceParams, list[dict]]:
    """Coordinate search over `GRID`, maximising `objective` (e.g. validation NDCG@10).

    Args:
        histories: the fitting sequences (training items only).
        n_items: catalogue size.
        objective: scores a fitted model; higher is better. It must use validation targets only.
        start: the starting point (defaults to `CooccurrenceParams()`).
        rounds: passes over the grid's coordinates.

    Returns:
        The best parameters and the trial log (`params` plus `score` per trial).
    """
    best = start or CooccurrenceParams()
    cache: dict[CooccurrenceParams, float] = {}

    def trial(params: CooccurrenceParams) -> float:
        if params not in cache:
            cache[params] = objective(CooccurrenceModel(params, n_items).fit(histories))
        return cache[params]

    best_score = trial(best)
    for _ in range(rounds):
        improved = False
        for name, values in GRID.items():
            for value in values:
                candidate = replace(best, **{name: value})
                score = trial(candidate)
                if score > best_score:
                    best, best_score, improved = candidate, score, True
        if not improved:
            break
    log = [{**asdict(p), "score": s} for p, s in cache.items()]
    return best, log
