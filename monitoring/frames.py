"""Per-event tables for drift checks: validated events joined with item, user and behavioural features.

Two of the features are measured against a *profile* window of earlier events (the older part of the
training window): how popular the item was there, and how much of the user's activity there went to
the item's category. Both the reference and the current table are built against the same profile, so
on a day without drift both are out-of-sample in the same way and their distributions match.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from recflow.data.batches import batch_files, list_batches, read_events, read_snapshot
from recflow.settings import Settings

NUMERICAL_COLUMNS: tuple[str, ...] = (
    "price",
    "hour",
    "item_age_days",
    "item_popularity_rank",
    "user_events_day",
    "user_category_share",
    "user_tenure_days",
)
CATEGORICAL_COLUMNS: tuple[str, ...] = ("event_type", "category", "brand", "region", "age_band")


@dataclass(frozen=True)
class Profile:
    """What the profile window says about items and users: the lookups the event features need.

    Attributes:
        item_rank: popularity rank of each item id in the profile window (1 = most viewed).
        user_category_share: share of each (user_id, category) in the user's profile-window events.
        unseen_rank: rank given to items absent from the profile window (one past the last rank).
    """

    item_rank: pd.Series
    user_category_share: pd.Series
    unseen_rank: int


def build_profile(events: pd.DataFrame, items: pd.DataFrame) -> Profile:
    """Item popularity ranks and user-category shares over `events` (the profile window).

    Args:
        events: events of the profile window (data contract columns).
        items: catalogue snapshot with `item_id` and `category`.
    """
    counts = events["item_id"].value_counts()
    item_rank = pd.Series(np.arange(1, len(counts) + 1), index=counts.index.astype(str), name="rank")
    joined = events[["user_id", "item_id"]].merge(items[["item_id", "category"]], on="item_id", how="left")
    per_pair = joined.groupby(["user_id", "category"], observed=True).size()
    share = per_pair / per_pair.groupby(level="user_id").transform("sum")
    return Profile(
        item_rank=item_rank, user_category_share=share.rename("share"), unseen_rank=len(counts) + 1
    )


def event_frame(
    events: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame, profile: Profile
) -> pd.DataFrame:
    """One row per event with the monitored columns (`NUMERICAL_COLUMNS` + `CATEGORICAL_COLUMNS`).

    Args:
        events: the events to describe (data contract columns).
        items: catalogue snapshot covering the events' items (prices as of the events' day).
        users: user snapshot covering the events' users.
        profile: lookups from the profile window, see `build_profile`.

    Raises:
        ValueError: if an event refers to an item or user missing from the snapshots.
    """
    own = [c for c in events.columns if c not in items.columns and c not in users.columns]
    df = events[["user_id", "item_id", *own]].merge(items, on="item_id", how="left")
    df = df.merge(users, on="user_id", how="left")
    unknown_items = df.loc[df["category"].isna(), "item_id"].unique()
    if len(unknown_items):
        raise ValueError(
            f"{len(unknown_items)} event item_id(s) not in the catalogue, e.g. {unknown_items[0]!r}"
        )
    unknown_users = df.loc[df["region"].isna(), "user_id"].unique()
    if len(unknown_users):
        raise ValueError(
            f"{len(unknown_users)} event user_id(s) not in the user table, e.g. {unknown_users[0]!r}"
        )
    ts = df["timestamp"]
    day = ts.dt.floor("D")
    pair = pd.MultiIndex.from_arrays([df["user_id"].astype(str), df["category"].astype(str)])
    out = pd.DataFrame(
        {
            "price": df["price"].astype(float),
            "hour": ts.dt.hour.astype(float) + ts.dt.minute.astype(float) / 60.0,
            "item_age_days": (ts - df["created_date"]).dt.total_seconds() / 86_400.0,
            "item_popularity_rank": df["item_id"]
            .astype(str)
            .map(profile.item_rank)
            .fillna(profile.unseen_rank)
            .astype(float),
            "user_events_day": df.groupby([df["user_id"], day])["event_id"].transform("size").astype(float),
            "user_category_share": profile.user_category_share.reindex(pair).fillna(0.0).to_numpy(),
            "user_tenure_days": (ts - df["signup_date"]).dt.total_seconds() / 86_400.0,
            "event_type": df["event_type"].astype(str),
            "category": df["category"].astype(str),
            "brand": df["brand"].astype(str),
            "region": df["region"].astype(str),
            "age_band": df["age_band"].astype(str),
        }
    )
    return out.reset_index(drop=True)


def frames_for_days(
    settings: Settings, reference_days: Sequence[date], current_days: Sequence[date]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference and current event tables from the validated store.

    The reference window's older days form the profile; its newest `monitoring.reference_days` days
    form the reference table. The current table holds the events of `current_days`, described with
    the catalogue and users as of the newest current day (`read_snapshot`: batches hold upserts).

    Args:
        settings: platform settings (reads `validated_dir` and `monitoring.reference_days`).
        reference_days: the training window, oldest first (at least two days).
        current_days: the days to check, usually the newest batch.

    Raises:
        ValueError: if the reference window is too short or a day has no validated batch.
    """
    reference_days = sorted(reference_days)
    n_ref = min(settings.monitoring.reference_days, len(reference_days) - 1)
    if n_ref < 1:
        raise ValueError(
            f"Reference window {[d.isoformat() for d in reference_days]} is too short: need at least two "
            "days (profile + reference)"
        )
    root = settings.validated_dir
    batches = {b.day: b for b in list_batches(root)}
    missing = [d.isoformat() for d in [*reference_days, *current_days] if d not in batches]
    if missing:
        raise ValueError(f"No validated batch for day(s) {missing} under {root}: validate them first")
    profile_days, ref_days = reference_days[:-n_ref], reference_days[-n_ref:]
    profile, reference = _reference(root, tuple(profile_days), tuple(ref_days))
    cur_items, cur_users = (read_snapshot(root, t, max(current_days)) for t in ("items", "users"))
    current = event_frame(read_events(root, current_days), cur_items, cur_users, profile)
    clock = [
        c
        for c, (table, date_column) in CLOCK_COLUMNS.items()
        if _one_date(cur_items if table == "items" else cur_users, date_column)
    ]
    return reference.drop(columns=clock), current.drop(columns=clock)


REFERENCES_KEPT = 4
_references: dict[tuple, tuple[Profile, pd.DataFrame]] = {}


def _reference(
    root, profile_days: tuple[date, ...], ref_days: tuple[date, ...]
) -> tuple[Profile, pd.DataFrame]:
    """The profile and the reference frame of a training window, cached by the window and the identities
    of the batch files under it: a loop checks each day against the same champion's window."""
    key = (profile_days, ref_days, batch_files(root, ref_days[-1]))
    if key in _references:
        return _references[key]
    ref_items, ref_users = (read_snapshot(root, t, ref_days[-1]) for t in ("items", "users"))
    profile = build_profile(read_events(root, list(profile_days)), ref_items)
    reference = event_frame(read_events(root, list(ref_days)), ref_items, ref_users, profile)
    _references[key] = profile, reference
    while len(_references) > REFERENCES_KEPT:
        del _references[next(iter(_references))]
    return profile, reference


CLOCK_COLUMNS: dict[str, tuple[str, str]] = {
    "item_age_days": ("items", "created_date"),
    "user_tenure_days": ("users", "signup_date"),
}
"""Age columns and the table date they count from. Where every row of the table has the same date (a
source that creates its whole catalogue, or signs up every user, before its first day: the grocery
year), the age is the calendar and nothing else: it grows by a day each day and would alarm on every
day after the reference window. `frames_for_days` leaves such a column out of both frames."""


def _one_date(table: pd.DataFrame, column: str) -> bool:
    return column in table and table[column].nunique(dropna=True) <= 1
