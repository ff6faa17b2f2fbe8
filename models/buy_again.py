"""The "buy again" candidate source: the user's own past purchases, by a time-decayed count.

Grocery baskets are mostly repeats (40-45% of a Complete Journey household's next basket was bought
by it before; Li et al., "A Next Basket Recommendation Reality Check", TOIS 2023), so the model
family has a source that proposes the items the user bought, scored by frequency and recency:

    score(user, item) = sum over the user's purchases p of the item of 0.5 ** (age_days(p) / half_life)

The ranker then sees, for every merged candidate, what the user's purchase record says of it (times
bought, days since the last purchase, the decayed score and its rank, and the same on the user's own
basket clock: the share of their baskets that hold it, overall and lately, baskets since the last
one that did) and the item's typical repurchase interval (the median days between two purchases of
it by one user in the training data), so that it learns when to repeat and when to explore.

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
    "basket_share",
    "recent_basket_share",
    "log_baskets_since",
    "log_user_baskets",
    "log_trip_days",
)
"""What the purchase record says of a candidate (ranker inputs when the source is on).

The last five read the user's own basket clock (a basket is a day with purchases): the share of the
user's baskets that hold the item, the same over the user's `RECENT_BASKETS` newest baskets, how many
baskets the user filled since last buying it, how many baskets the user has, and the user's typical
days between baskets. A household that shops twice a week and one that shops once a month differ in
what "bought 4 times, 20 days ago" means; TIFU-KNN (Hu et al., SIGIR 2020) reads the same clock."""

LEGACY_REPEAT_FEATURES: tuple[str, ...] = REPEAT_FEATURES[:7]
"""The repeat features of packages saved before the basket clock (their config names none)."""

RECENT_BASKETS = 5
"""How many of the user's newest baskets `recent_basket_share` reads."""


@dataclass(frozen=True)
class BuyAgainConfig:
    """Hyperparameters of the buy-again source, saved with the package.

    Attributes:
        enabled: the package has the source and the `REPEAT_FEATURES` (fitted with purchase records).
        half_life_days: a purchase's weight halves every this many days (chosen on validation).
        min_discoveries: every list keeps at least this many items the user never bought (the best
            ranked of them replace the lowest-ranked repeats): a list of repeats only shows nothing
            new (`train.min_discoveries`).
        features: the repeat features the package's ranker reads, in its input order (a subset of
            `REPEAT_FEATURES`; packages saved without the field read `LEGACY_REPEAT_FEATURES`).
    """

    enabled: bool = False
    half_life_days: float = 30.0
    min_discoveries: int = 0
    features: tuple[str, ...] = REPEAT_FEATURES

    @classmethod
    def from_dict(cls, values: dict) -> BuyAgainConfig:
        """Rebuild from `asdict` output; unknown keys are ignored. A package saved before the basket
        clock names no features: its ranker reads `LEGACY_REPEAT_FEATURES`."""
        kept = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        kept["features"] = tuple(kept.get("features", LEGACY_REPEAT_FEATURES))
        return cls(**kept)

    def __post_init__(self) -> None:
        unknown = [f for f in self.features if f not in REPEAT_FEATURES]
        if unknown:
            raise ValueError(
                f"unknown repeat features {unknown}: expected names from {list(REPEAT_FEATURES)}"
            )


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


@dataclass(frozen=True)
class PurchaseRecord:
    """What one user's purchases say of each distinct item they bought (arrays aligned with `items`).

    Attributes:
        items: the distinct catalogue rows bought, ascending.
        score: the decayed count (the buy-again score).
        count: times bought (purchase lines).
        since: days since the last purchase of the item.
        baskets: how many of the user's baskets (days with purchases) hold the item.
        baskets_since: how many baskets the user filled after the last one holding the item.
        recent: how many of the user's `RECENT_BASKETS` newest baskets hold the item.
        n_baskets: the user's baskets.
        trip_days: the user's median days between consecutive baskets (NaN with fewer than 2).
    """

    items: np.ndarray
    score: np.ndarray
    count: np.ndarray
    since: np.ndarray
    baskets: np.ndarray
    baskets_since: np.ndarray
    recent: np.ndarray
    n_baskets: int
    trip_days: float


def repeat_lookup(b: Bought, half_life_days: float) -> PurchaseRecord:
    """One user's purchase record (`PurchaseRecord`); a basket is a day with purchases (rounded ages)."""
    if not len(b.rows):
        empty = np.zeros(0)
        return PurchaseRecord(
            np.zeros(0, np.int64), empty, empty, empty, empty, empty, empty, 0, float("nan")
        )
    items, inverse = np.unique(np.asarray(b.rows, np.int64), return_inverse=True)
    ages = np.asarray(b.days_ago, np.float64)
    score = np.bincount(inverse, weights=0.5 ** (ages / half_life_days), minlength=len(items))
    count = np.bincount(inverse, minlength=len(items)).astype(np.float64)
    since = np.full(len(items), np.inf)
    np.minimum.at(since, inverse, ages)
    day = np.round(ages)
    user_days = np.unique(day)  # ascending days ago: the newest basket first
    pairs = np.unique(np.stack([inverse.astype(np.float64), day]), axis=1)  # a column per (item, basket)
    of_item = pairs[0].astype(np.int64)
    baskets = np.bincount(of_item, minlength=len(items)).astype(np.float64)
    newest = user_days[min(RECENT_BASKETS, len(user_days)) - 1]
    recent = np.bincount(of_item, weights=(pairs[1] <= newest).astype(np.float64), minlength=len(items))
    baskets_since = np.searchsorted(user_days, np.round(since), side="left").astype(np.float64)
    trip = float(np.median(np.diff(user_days))) if len(user_days) > 1 else float("nan")
    return PurchaseRecord(items, score, count, since, baskets, baskets_since, recent, len(user_days), trip)


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
