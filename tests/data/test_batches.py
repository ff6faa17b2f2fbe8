"""Raw batches: landed once, never overwritten, read back in time order; catalogue upserts folded by day."""

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from recflow.data.batches import day_bounds, list_batches, read_events, read_snapshot, write_raw_batch
from recflow.data.schema import TABLES, conform, empty
from recflow.data.sources import land_batches


def test_land_is_idempotent_and_raw_is_immutable(tiny_settings):
    first = land_batches(tiny_settings)
    stamp = {b.day: b.table("events").stat().st_mtime_ns for b in first}
    second = land_batches(tiny_settings)
    assert [b.day for b in first] == [b.day for b in second]
    assert {b.day: b.table("events").stat().st_mtime_ns for b in second} == stamp


def test_read_events_in_time_order(tiny_batches, tiny_settings):
    events = read_events(tiny_settings.validated_dir)
    assert len(events) > 100
    assert events["timestamp"].is_monotonic_increasing
    items = read_snapshot(tiny_settings.validated_dir, "items")
    assert events["item_id"].isin(items["item_id"]).all()
    assert len(list_batches(tiny_settings.raw_dir)) == tiny_settings.data.n_days


def test_full_snapshots_are_valid_upserts(tiny_batches, tiny_settings):
    """The synthetic source writes full snapshots: the snapshot of a day is that day's own table."""
    root = tiny_settings.validated_dir
    for batch in (tiny_batches[0], tiny_batches[-1]):
        for table, key in (("items", "item_id"), ("users", "user_id")):
            own = batch.read(table).sort_values(key).reset_index(drop=True)
            pd.testing.assert_frame_equal(read_snapshot(root, table, batch.day), own)


def _items(rows) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["item_id", "category", "price"])
    return conform(frame.assign(brand="b", created_date=pd.Timestamp("2026-01-01", tz="UTC")), "items")


def test_read_snapshot_folds_upserts_up_to_a_day(tmp_path):
    day = date(2026, 3, 1)
    frames = [
        _items([("a", "fruit", 1.0), ("b", "dairy", 2.0)]),  # the whole catalogue first
        _items([("b", "dairy", 2.5)]),  # b changes
        empty("items"),  # nothing changes
        _items([("c", "bread", 3.0), ("a", "fruit", 0.9)]),  # c is new, a changes
    ]
    for n, items in enumerate(frames):
        write_raw_batch(
            tmp_path,
            day + timedelta(days=n),
            {"events": empty("events"), "items": items, "users": empty("users")},
        )
    prices = lambda d: read_snapshot(tmp_path, "items", d).set_index("item_id")["price"].to_dict()  # noqa: E731
    assert prices(day) == {"a": 1.0, "b": 2.0}
    assert prices(day + timedelta(days=2)) == {"a": 1.0, "b": 2.5}
    assert prices(None) == prices(day + timedelta(days=9)) == {"a": 0.9, "b": 2.5, "c": 3.0}
    assert list(read_snapshot(tmp_path, "items").columns) == list(TABLES["items"])
    with pytest.raises(FileNotFoundError, match="on or before 2026-02-28"):
        read_snapshot(tmp_path, "items", day - timedelta(days=1))
    with pytest.raises(ValueError, match="catalogue table"):
        read_snapshot(tmp_path, "events")


def test_a_snapshot_folded_onto_yesterdays_equals_one_folded_from_the_first_day(tmp_path):
    from recflow.data import batches

    day = date(2026, 3, 1)
    rng = np.random.default_rng(0)
    for n in range(6):
        ids = rng.choice(list("abcdefgh"), size=3, replace=False)
        items = _items([(i, f"cat{n}", float(n) + k / 10) for k, i in enumerate(ids)])
        write_raw_batch(
            tmp_path,
            day + timedelta(days=n),
            {"events": empty("events"), "items": items, "users": empty("users")},
        )
    linked = tmp_path / "linked"  # another home linking the same day folders shares the cached folds
    linked.mkdir()
    for b in list_batches(tmp_path):
        (linked / b.path.name).symlink_to(b.path)
    batches._snapshots.clear()
    incremental = [read_snapshot(tmp_path, "items", day + timedelta(days=n)) for n in range(6)]
    assert len(batches._snapshots) == 6
    assert read_snapshot(linked, "items").equals(incremental[-1]) and len(batches._snapshots) == 6
    for n in range(6):
        batches._snapshots.clear()  # a cold fold over every file up to the day
        pd.testing.assert_frame_equal(
            read_snapshot(tmp_path, "items", day + timedelta(days=n)), incremental[n]
        )


def test_day_bounds_follow_the_shops_calendar():
    start, end = day_bounds(date(2017, 3, 12), "America/New_York")  # daylight saving time starts
    assert start == pd.Timestamp("2017-03-12 05:00", tz="UTC")
    assert end - start == pd.Timedelta(hours=23)
    assert day_bounds(date(2017, 1, 1)) == (
        pd.Timestamp("2017-01-01", tz="UTC"),
        pd.Timestamp("2017-01-02", tz="UTC"),
    )


def test_shop_time_zone_comes_from_the_source_unless_set():
    from recflow.settings import DataSettings

    assert DataSettings().shop_timezone == "UTC"
    assert DataSettings(source="completejourney:/x").shop_timezone == "America/New_York"
    assert DataSettings(source="completejourney", timezone="Europe/Paris").shop_timezone == "Europe/Paris"
