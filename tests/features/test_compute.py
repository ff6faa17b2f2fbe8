"""Feature computation on hand-made events: windows, sequences, snapshot timestamps, Dask == pandas."""

from __future__ import annotations

import pandas as pd
import pytest

from features.compute import (
    ONE_MICROSECOND,
    daily_categories,
    daily_counts,
    daily_last_event,
    event_sequences,
    item_popularity,
    training_timestamps,
    user_activity,
)
from recflow.data.schema import conform

DAY0 = pd.Timestamp("2026-01-01", tz="UTC")
DAYS = pd.date_range(DAY0, periods=10, freq="D")


def _events(rows: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "timestamp"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    frame["event_id"] = [f"e{i}" for i in range(len(frame))]
    frame["session_id"] = "s"
    return conform(frame, "events")


EVENTS = _events(
    [
        ("u1", "i1", "view", "2026-01-01 10:00"),
        ("u1", "i2", "view", "2026-01-01 11:00"),
        ("u1", "i2", "add_to_cart", "2026-01-01 11:01"),
        ("u1", "i1", "view", "2026-01-06 09:00"),
        ("u1", "i2", "purchase", "2026-01-06 10:00"),
    ]
)
CATEGORIES = pd.DataFrame({"item_id": ["i1", "i2"], "category": ["a", "b"]})


def _activity() -> pd.DataFrame:
    frame = user_activity(
        daily_counts(EVENTS, "user_id"), daily_categories(EVENTS, CATEGORIES), daily_last_event(EVENTS), DAYS
    )
    return frame.set_index("event_timestamp")


def test_user_activity_windows_are_stamped_after_the_day_they_cover():
    activity = _activity()
    assert activity.index.min() == DAY0 + pd.Timedelta(days=1)  # day 0 is complete at 00:00 of day 1
    assert len(activity) == len(DAYS)
    day0 = activity.loc[pd.Timestamp("2026-01-02", tz="UTC")]
    assert (day0.views_1d, day0.carts_1d, day0.purchases_1d, day0.distinct_categories_30d) == (2, 1, 0, 2)
    assert day0.days_since_last_event == pytest.approx((13 * 60 - 1) / (24 * 60))
    day5 = activity.loc[pd.Timestamp("2026-01-07", tz="UTC")]
    assert (day5.views_1d, day5.purchases_1d, day5.views_7d, day5.carts_7d, day5.views_30d) == (1, 1, 3, 1, 3)
    day7 = activity.loc[pd.Timestamp("2026-01-09", tz="UTC")]  # day 0 has left the 7-day window
    assert (day7.views_1d, day7.views_7d, day7.carts_7d, day7.purchases_7d, day7.views_30d) == (0, 1, 0, 1, 3)
    day9 = activity.loc[pd.Timestamp("2026-01-11", tz="UTC")]
    assert day9.days_since_last_event == pytest.approx(4 + 14 / 24)


def test_item_popularity_counts_and_conversion():
    on_sale = pd.DataFrame({"item_id": ["i1", "i2"] * len(DAYS), "day": DAYS.repeat(2)})
    pop = item_popularity(daily_counts(EVENTS, "item_id"), on_sale, DAYS)
    row = pop[(pop.item_id == "i2") & (pop.event_timestamp == pd.Timestamp("2026-01-07", tz="UTC"))].iloc[0]
    assert (row.item_views_7d, row.item_carts_7d, row.item_purchases_1d, row.item_purchases_7d) == (
        1,
        1,
        1,
        1,
    )
    assert row.item_conversion_7d == pytest.approx(1.0)
    first = pop[(pop.item_id == "i1") & (pop.event_timestamp == pd.Timestamp("2026-01-02", tz="UTC"))].iloc[0]
    assert (first.item_views_1d, first.item_conversion_30d) == (1, 0.0)
    assert len(pop) == 2 * len(DAYS)  # every item on sale has a row each day, even without events


def test_event_sequences_include_their_own_interaction_newest_last_and_truncate():
    seq = event_sequences(EVENTS, length=3)
    # the view and the add-to-cart of i2 at 11:00-11:01 are one interaction: no row of its own at 11:01
    assert seq["recent_items"].tolist() == [["i1"], ["i1", "i2"], ["i1", "i2", "i1"], ["i2", "i1", "i2"]]
    assert seq["event_timestamp"].tolist() == EVENTS["timestamp"].drop(index=2).tolist()
    assert event_sequences(EVENTS, length=2)["recent_items"].iloc[-1] == ["i1", "i2"]


def test_event_sequences_keep_one_row_per_timestamp():
    tied = _events([("u2", "i1", "view", "2026-01-01 10:00"), ("u2", "i2", "view", "2026-01-01 10:00")])
    seq = event_sequences(tied, length=5)
    assert len(seq) == 1
    assert seq["recent_items"].iloc[0] == ["i1", "i2"]


def test_training_timestamps_are_one_microsecond_before_the_label():
    labels = pd.Series(pd.to_datetime(["2026-01-06 10:00"], utc=True))
    assert (labels - training_timestamps(labels)).iloc[0] == ONE_MICROSECOND


@pytest.mark.slow
def test_dask_engine_equals_pandas(tiny_settings, tiny_batches):
    """The aggregations on a local Dask cluster of 2 worker processes give the pandas tables."""
    from features.compute import TABLE_NAMES, compute_features

    pandas_tables = compute_features(tiny_settings)
    expected = {name: pd.read_parquet(pandas_tables.path(name)) for name in TABLE_NAMES}
    dask_settings = tiny_settings.model_copy(
        update={"features": tiny_settings.features.model_copy(update={"engine": "dask", "dask_workers": 2})}
    )
    dask_tables = compute_features(dask_settings)
    assert dask_tables.rows == pandas_tables.rows
    for name in TABLE_NAMES:
        got = pd.read_parquet(dask_tables.path(name))
        key = "user_id" if name.startswith("user") else "item_id"
        sort = [key, "event_timestamp"]
        pd.testing.assert_frame_equal(
            got.sort_values(sort).reset_index(drop=True).astype({key: str}),
            expected[name].sort_values(sort).reset_index(drop=True).astype({key: str}),
            check_dtype=False,
        )


def test_features_read_only_the_validated_store(tiny_settings, tiny_batches):
    """Rows that are in the raw batches but not in the validated store never reach a feature table."""
    from features.compute import compute_features, interactions
    from recflow.data.batches import list_batches, read_events

    first = list_batches(tiny_settings.validated_dir)[0]
    events = first.read("events")
    dropped = events["user_id"].iloc[0]
    events[events["user_id"] != dropped].to_parquet(first.table("events"), index=False)  # as if quarantined
    tables = compute_features(tiny_settings)
    raw = read_events(tiny_settings.raw_dir)
    raw_rows = raw[(raw["user_id"] == dropped) & (raw["timestamp"] < events["timestamp"].max())]
    sequence = pd.read_parquet(tables.path("user_sequence"))
    mine = sequence[sequence["user_id"] == dropped]
    assert len(raw_rows) > 0
    assert mine.empty or mine["event_timestamp"].min() > events["timestamp"].max()
    expected = interactions(read_events(tiny_settings.validated_dir))
    assert tables.rows["user_sequence"] == len(expected.drop_duplicates(["user_id", "timestamp"]))


@pytest.mark.parametrize("drift_day", [None, 4])
def test_feature_tables_from_upserts_equal_those_from_full_snapshots(tiny_settings, drift_day, tmp_path):
    """The synthetic source sends full daily snapshots; sent as upserts, every feature table is the same."""
    import shutil

    from upserts import as_upserts

    from features.compute import TABLE_NAMES, compute_features
    from recflow.data.sources import land_batches

    tiny_settings.data.drift_day = drift_day  # prices and new items change on the drift day
    for batch in land_batches(tiny_settings):
        shutil.copytree(batch.path, tiny_settings.validated_dir / batch.path.name)
    full = compute_features(tiny_settings)
    expected = {name: pd.read_parquet(full.path(name)) for name in TABLE_NAMES}
    as_upserts(tiny_settings.validated_dir)
    sizes = [len(pd.read_parquet(p)) for p in sorted(tiny_settings.validated_dir.glob("*/items.parquet"))]
    assert sizes[0] > 0 and sum(sizes[1:]) < sizes[0]  # later days hold only the changes
    upserts = compute_features(tiny_settings)
    for name in TABLE_NAMES:
        got = pd.read_parquet(upserts.path(name))
        key = "user_id" if name.startswith("user") else "item_id"
        order = [key, "event_timestamp"]
        pd.testing.assert_frame_equal(
            got.sort_values(order).reset_index(drop=True),
            expected[name].sort_values(order).reset_index(drop=True),
        )
    assert len(expected["item_promotions"]) == 0  # the synthetic shop runs no promotions


def test_grocery_days_are_stamped_in_the_shops_time_zone(tiny_settings, completejourney_folder):
    """Complete Journey: snapshots known from local midnight; a promotion from its week's first day only."""
    import shutil

    from completejourney_data import COMPLETEJOURNEY_WEEK11_ONLY

    from features.compute import compute_features
    from recflow.data.sources import land_batches

    tiny_settings.data.source = f"completejourney:{completejourney_folder}"
    for batch in land_batches(tiny_settings):
        shutil.copytree(batch.path, tiny_settings.validated_dir / batch.path.name)
    tables = compute_features(tiny_settings)
    attributes = pd.read_parquet(tables.path("item_attributes"))
    first = attributes["event_timestamp"].min()
    assert first == pd.Timestamp("2017-02-25 05:00", tz="UTC")  # 00:00 in New York
    promo = pd.read_parquet(tables.path("item_promotions"))
    mine = promo[promo["item_id"] == str(COMPLETEJOURNEY_WEEK11_ONLY)].sort_values("event_timestamp")
    assert mine["event_timestamp"].tolist() == [
        pd.Timestamp("2017-02-25 05:00", tz="UTC"),  # not promoted: the first batch's row
        pd.Timestamp("2017-03-06 05:00", tz="UTC"),  # Monday of week 11, 00:00 in New York (EST)
        pd.Timestamp("2017-03-13 04:00", tz="UTC"),  # the next Monday, after the switch to EDT
    ]
    assert mine["on_promotion"].tolist() == [0, 1, 0]
    assert mine["promo_mailer_stores"].tolist() == [0, 2, 0]
    demographics = pd.read_parquet(tables.path("user_demographics")).set_index("user_id")
    assert demographics.loc["1", "household_comp"] == "2 Adults Kids"
    assert demographics.loc["3", "home_ownership"] == "unknown"  # known household, value not given
    assert "2" not in demographics.index  # no demographics at all: no row (Feast gives nulls)
    assert len(demographics) == 15  # one row per household with demographics: they never changed
