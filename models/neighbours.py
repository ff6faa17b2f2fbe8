"""The household-neighbour candidate source: what the households that shop like the user buy (TIFU-KNN).

TIFU-KNN (Hu et al., SIGIR 2020) is the strongest baseline of the next-basket bench: a household is a
temporal item-frequency vector of its baskets (`tifu_vectors`), and its next basket is predicted from
its own vector and the mean vector of its nearest households,

    score(user, item) = alpha * own(item) + (1 - alpha) * mean over the k nearest households(item)

The buy-again source (`models.buy_again`) already reads the household's own record; what it cannot
know is how households like this one shop: which of its usual items their baskets keep and which new
items they buy. This source adds that to the model family: a candidate list (the best items by the
score above, the seen filter applied) merged with the others, and ranker features for every merged
candidate (`NEIGHBOUR_FEATURES`: the share of the neighbours that bought it, its neighbour mean against
the best one, its rank in the list).

A package fitted with purchase records stores its households' vectors (`Neighbours.vectors`); a user
is scored from their purchases at the moment they are served (`Bought`, a basket being a day with
purchases, as the buy-again source's basket clock reads it) against those vectors. A stored vector equal to
the user's own is the user as fitted and is not their neighbour (TIFU-KNN leaves the household out
too): the validation package scores the purchases it stored, so its ranker learns from neighbours
that are other households, as a new household or the bench's test household is served. A household
served days after the fit differs from its stored vector and finds it among its nearest. The number of neighbours and alpha are chosen on the
validation users (`NEIGHBOURS` x `ALPHAS`); the vector's decays are TIFU-KNN's as the next-basket bench
chose them on this shop's validation baskets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from models.buy_again import Bought

NEIGHBOURS: tuple[int, ...] = (50, 100, 300)
"""The numbers of nearest households `fit_pipeline` tries on the validation users."""

ALPHAS: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
"""The weights of the user's own vector against the neighbours' mean that it tries."""

NEIGHBOUR_FEATURES: tuple[str, ...] = ("neighbour_share", "neighbour_mean_ratio", "neighbour_log_rank")
"""What the neighbours say of a candidate (ranker inputs in packages with the source): the share of the
k nearest households that bought it, its neighbour mean over the user's best one, and its 0-based rank
in the source's list (log1p; the list's length where it is not in it)."""

FUSIONS: tuple[float, ...] = (0.0, 0.2, 0.35, 0.5, 0.65, 0.8)
"""The fusion weights `fit_pipeline` tries on the validation users the ranker did not learn from."""

SEARCH_BATCH = 512
"""Users whose distances to every stored household are computed at once ([batch, households] floats)."""


@dataclass(frozen=True)
class NeighbourConfig:
    """Hyperparameters of the household-neighbour source, saved with the package.

    Attributes:
        enabled: the package has the source, its stored vectors and the `NEIGHBOUR_FEATURES`.
        neighbours: k, the nearest stored households averaged (Euclidean distance of the vectors).
        alpha: the weight of the user's own vector against the neighbours' mean in the list's score.
        within_decay: a basket weighs within_decay ** (baskets after it).
        group_decay: a group of consecutive baskets weighs group_decay ** (groups after it).
        groups: the baskets are cut into this many groups (each its own group when there are fewer).
        fusion: the weight of the neighbour list's ranks against the ranker's in the served order
            (`models.scorer.fused_scores`; 0: the ranker's order), chosen on validation.
    """

    enabled: bool = False
    neighbours: int = 100
    alpha: float = 0.5
    within_decay: float = 1.0
    group_decay: float = 0.8
    groups: int = 15
    fusion: float = 0.0

    @classmethod
    def from_dict(cls, values: dict) -> NeighbourConfig:
        """Rebuild from `asdict` output; unknown keys are ignored."""
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})


def tifu_vectors(
    histories: Sequence[Sequence[np.ndarray]],
    n_items: int,
    within_decay: float,
    group_decay: float,
    groups: int,
) -> sparse.csr_matrix:
    """The households' temporal item-frequency vectors, `[n_households, n_items]`.

    A history of n baskets (oldest first, each an array of item rows) is cut into g = min(n, m) groups
    of consecutive baskets (sizes differ by at most one, the larger ones last); basket j weighs
    r_b^(n-1-j); a group is the mean of its weighted baskets (multi-hot); the vector is
    (1/g) * sum_i r_g^(m-1-i) * group_i, as in the authors' code.
    """
    rows, cols, vals = [], [], []
    for u, history in enumerate(histories):
        n = len(history)
        if n == 0:
            continue
        g = min(n, groups)
        base, extra = divmod(n, g)
        sizes = np.array([base] * (g - extra) + [base + 1] * extra)
        group_of = np.repeat(np.arange(g), sizes)
        weight = (
            within_decay ** (n - 1 - np.arange(n))
            / sizes[group_of]
            * group_decay ** (groups - 1 - group_of)
            / g
        )
        lengths = [len(b) for b in history]
        rows.append(np.full(sum(lengths), u))
        cols.append(np.concatenate(history))
        vals.append(np.repeat(weight, lengths))
    if not rows:
        return sparse.csr_matrix((len(histories), n_items))
    matrix = sparse.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(len(histories), n_items)
    )
    return matrix.tocsr()  # duplicates (an item in several baskets) are summed


def baskets(bought: Bought) -> list[np.ndarray]:
    """A user's purchases as baskets (a day with purchases, rounded ages), oldest first, distinct rows."""
    if not len(bought.rows):
        return []
    day = np.round(np.asarray(bought.days_ago, np.float64))
    rows = np.asarray(bought.rows, np.int64)
    pairs = np.unique(np.stack([-day, rows.astype(np.float64)]), axis=1)  # oldest day first
    starts = np.flatnonzero(np.append(True, pairs[0, 1:] != pairs[0, :-1]))
    return np.split(pairs[1].astype(np.int64), starts[1:])


def user_vectors(bought: Sequence[Bought], n_items: int, config: NeighbourConfig) -> sparse.csr_matrix:
    """The TIFU vectors of users' purchase records under `config`'s decays."""
    return tifu_vectors(
        [baskets(b) for b in bought], n_items, config.within_decay, config.group_decay, config.groups
    )


@dataclass(frozen=True)
class NeighbourScores:
    """A batch's view from its neighbours, sparse `[B, n_items]`.

    Attributes:
        own: the users' own vectors.
        mean: the mean vector of each user's k nearest stored households.
        share: the share of those households whose vector holds the item.
    """

    own: sparse.csr_matrix
    mean: sparse.csr_matrix
    share: sparse.csr_matrix

    def scores(self, alpha: float) -> sparse.csr_matrix:
        """alpha * own + (1 - alpha) * mean: the source's list order."""
        return (alpha * self.own + (1.0 - alpha) * self.mean).tocsr()


class Neighbours:
    """The stored households' vectors and the nearest-neighbour search over them.

    Args:
        vectors: `[n_households, n_items]` TIFU vectors of the households the package was fitted on.
    """

    def __init__(self, vectors: sparse.spmatrix) -> None:
        self.vectors = sparse.csr_matrix(vectors, dtype=np.float64)
        self.norms = np.asarray(self.vectors.multiply(self.vectors).sum(axis=1)).ravel()
        self.held = self.vectors.copy()
        self.held.data[:] = 1.0  # which items each household's vector holds

    def __len__(self) -> int:
        return self.vectors.shape[0]

    def scores(self, bought: Sequence[Bought], config: NeighbourConfig) -> NeighbourScores:
        """The neighbours' view of users given their purchase records."""
        return self.views(bought, config, [config.neighbours])[config.neighbours]

    def views(
        self, bought: Sequence[Bought], config: NeighbourConfig, ks: Sequence[int]
    ) -> dict[int, NeighbourScores]:
        """`scores` for several numbers of neighbours, sharing one distance computation per batch."""
        own = user_vectors(bought, self.vectors.shape[1], config)
        widest = self.nearest_sorted(own, max(ks))
        out = {}
        for k in ks:
            weights = _weights(widest, k, len(self))
            out[k] = NeighbourScores(own, (weights @ self.vectors).tocsr(), (weights @ self.held).tocsr())
        return out

    def nearest_sorted(self, own: sparse.csr_matrix, k: int) -> list[np.ndarray]:
        """Each user's up to k nearest stored households, nearest first (ties by row); none for a user
        without purchases (a zero vector is nearest to whoever bought least, which says nothing)."""
        b, h = own.shape[0], len(self)
        k = min(k, h)
        own_norms = np.asarray(own.multiply(own).sum(axis=1)).ravel()
        out: list[np.ndarray] = []
        for lo in range(0, b, SEARCH_BATCH):
            hi = min(lo + SEARCH_BATCH, b)
            gram = (own[lo:hi] @ self.vectors.T).toarray()
            distance = own_norms[lo:hi, None] + self.norms[None, :] - 2.0 * gram
            # a stored vector equal to the user's own is the user (as fitted): not their neighbour
            same = distance <= 1e-9 * (own_norms[lo:hi, None] + self.norms[None, :])
            distance[same] = np.inf
            for u in range(hi - lo):
                if own_norms[lo + u] <= 0 or k == 0:
                    out.append(np.zeros(0, np.int64))
                    continue
                row = distance[u]
                # the k nearest and every household tied with the k-th, then ordered (ties by row)
                kth = np.partition(row, k - 1)[k - 1] if k < h else np.inf
                near = np.flatnonzero((row <= kth) & np.isfinite(row))
                out.append(near[np.lexsort((near, row[near]))][:k])
        return out


def _weights(nearest: Sequence[np.ndarray], k: int, n_households: int) -> sparse.csr_matrix:
    """`[B, n_households]` weights 1/k on the first k of each user's nearest households."""
    picked = [n[:k] for n in nearest]
    lengths = np.array([len(p) for p in picked], np.int64)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    columns = np.concatenate(picked) if len(picked) else np.zeros(0, np.int64)
    values = np.repeat(1.0 / np.maximum(lengths, 1), lengths)
    return sparse.csr_matrix((values, columns, indptr), shape=(len(nearest), n_households))
