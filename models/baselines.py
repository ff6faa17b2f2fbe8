"""The popularity baseline: the most interacted-with items of the training window, overall and by region."""

from __future__ import annotations

import pandas as pd


def most_popular(events: pd.DataFrame, k: int, available: set[str] | None = None) -> list[str]:
    """The `k` items with the most events (views, carts, purchases) in `events`, most popular first.

    Ties break by item id, so the list is deterministic. With `available`, only those items count.
    """
    items = events["item_id"].astype(str)
    if available is not None:
        items = items[items.isin(available)]
    counts = items.value_counts()
    ordered = counts.reset_index().sort_values(["count", "item_id"], ascending=[False, True])
    return ordered["item_id"].head(k).tolist()


def popular_lists(
    events: pd.DataFrame, users: pd.DataFrame, k: int, available: set[str] | None = None
) -> dict[str, object]:
    """Cold-start lists for serving: `{"global": [...], "by_region": {region: [...]}}`.

    Args:
        events: training events.
        users: user table with `user_id` and `region` (the newest snapshot).
        k: length of each list.
        available: items that may be recommended (the catalogue the model knows).
    """
    regions = users[["user_id", "region"]].astype(str).drop_duplicates("user_id", keep="last")
    with_region = events[["user_id", "item_id"]].astype(str).merge(regions, on="user_id", how="inner")
    return {
        "global": most_popular(events, k, available),
        "by_region": {
            str(region): most_popular(group, k, available) for region, group in with_region.groupby("region")
        },
    }
