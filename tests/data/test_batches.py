"""Raw batches: landed once, never overwritten, read back in time order."""

from recflow.data.batches import list_batches, read_events, read_latest
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
    items = read_latest(tiny_settings.validated_dir, "items")
    assert events["item_id"].isin(items["item_id"]).all()
    assert len(list_batches(tiny_settings.raw_dir)) == tiny_settings.data.n_days
