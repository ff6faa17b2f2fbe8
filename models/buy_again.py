"""The "buy again" candidate source: the user's own past purchases, by a time-decayed count.

Grocery baskets are mostly repeats (40-45% of a Complete Journey household's next basket was bought
by it before; Li et al., "A Next Basket Recommendation Reality Check", TOIS 2023), so the model
family has a source that proposes the items the user bought, scored by frequency and recency:

    score(user, item) = sum over the user's purchases p of the item of 0.5 ** (age_days(p) / half_life)

The ranker then sees, for every merged candidate, what the user's purchase record says of it (times
bought, days since the last purchase, the decayed score and its rank) and the item's typical
repurchase interval (the median days between two purchases of it by one user in the training data),
so that it learns when to repeat and when to explore.

The source is off unless the package was fitted with purchase records (`BuyAgainConfig.enabled`),
which the train stage gives only where the seen filter keeps purchased items
(`serving.exclude_purchased` false, the default of the dated grocery source). Where the filter
removes what a user bought (the Amazon sets), it could propose nothing, and it is not built at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

HALF_LIVES: tuple[float, ...] = (7.0, 30.0, 90.0, 365.0)
"""The half-lives (days) `choose_half_life` tries on the validation users."""

REPEAT_FEATURES: tuple[str, ...] = (
    "buy_again_log_score",
    "buy_again_log_rank",
    "bought_before",
    "log_times_bought",
    "log_days_since_bought",
    "log_repurchase_days",
    "log_due_ratio",
)
"""What the purchase record says of a candidate (ranker inputs when the source is on)."""


@dataclass(frozen=True)
class BuyAgainConfig:
    """Hyperparameters of the buy-again source, saved with the package.

    Attributes:
        enabled: the package has the source and the `REPEAT_FEATURES` (fitted with purchase records).
        half_life_days: a purchase's weight halves every this many days (chosen on validation).
        min_discoveries: every list keeps at least this many items the user never bought (the best
            ranked of them replace the lowest-ranked repeats): a list of repeats only shows nothing
            new (`train.min_discoveries`).
    """

    enabled: bool = False
    half_life_days: float = 30.0
    min_discoveries: int = 0


@dataclass(frozen=True)
class Bought:
    """One user's purchases as the source reads them, one entry per purchase (an item bought in three
    baskets appears three times).

    Attributes:
        rows: catalogue rows.
        days_ago: days between each purchase and the moment the user is scored at (>= 0).
    """

    rows: np.ndarray
    days_ago: np.ndarray

    @classmethod
    def empty(cls) -> Bought:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.float64))


def decayed_scores(bought: Sequence[Bought], n_items: int, half_life_days: float) -> np.ndarray:
    """Dense [B, n_items] buy-again scores (0 for items the user never bought)."""
    out = np.zeros((len(bought), n_items), np.float64)
    for u, b in enumerate(bought):
        if len(b.rows):
            np.add.at(out[u], b.rows, 0.5 ** (np.asarray(b.days_ago, np.float64) / half_life_days))
    return out


def repeat_lookup(b: Bought, half_life_days: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One user's distinct items with (decayed score, times bought, days since the last purchase)."""
    if not len(b.rows):
        empty = np.zeros(0)
        return np.zeros(0, np.int64), empty, empty, empty
    items, inverse = np.unique(np.asarray(b.rows, np.int64), return_inverse=True)
    ages = np.asarray(b.days_ago, np.float64)
    score = np.bincount(inverse, weights=0.5 ** (ages / half_life_days), minlength=len(items))
    count = np.bincount(inverse, minlength=len(items)).astype(np.float64)
    since = np.full(len(items), np.inf)
    np.minimum.at(since, inverse, ages)
    return items, score, count, since


def repurchase_days(bought: Sequence[Bought], n_items: int) -> np.ndarray:
    """Each item's median days between two consecutive purchases of it by one user (NaN: never re-bought).

    Purchases on the same day count once (one basket, or two trips on one day).
    """
    gaps_by_item: list[np.ndarray] = []
    items_of_gap: list[np.ndarray] = []
    for b in bought:
        if len(b.rows) < 2:
            continue
        rows = np.asarray(b.rows, np.int64)
        days = -np.round(np.asarray(b.days_ago, np.float64))
        order = np.lexsort((days, rows))
        rows, days = rows[order], days[order]
        same = rows[1:] == rows[:-1]
        gap = days[1:] - days[:-1]
        keep = same & (gap > 0)
        gaps_by_item.append(gap[keep])
        items_of_gap.append(rows[1:][keep])
    out = np.full(n_items, np.nan)
    if not gaps_by_item:
        return out
    gaps, items = np.concatenate(gaps_by_item), np.concatenate(items_of_gap)
    if not len(gaps):
        return out
    order = np.lexsort((gaps, items))
    gaps, items = gaps[order], items[order]
    starts = np.flatnonzero(np.append(True, items[1:] != items[:-1]))
    ends = np.append(starts[1:], len(items))
    for lo, hi in zip(starts, ends, strict=True):
        out[items[lo]] = float(np.median(gaps[lo:hi]))
    return out
