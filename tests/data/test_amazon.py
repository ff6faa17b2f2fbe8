"""The Amazon text-format loader: order kept, schema conformed, batches landed, benchmark arrays."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from recflow.data.amazon import (
    PLACEHOLDER_PRICE,
    amazon_daily_batches,
    benchmark_sequences,
    read_amazon_sequences,
    write_amazon_sequences,
)
from recflow.data.batches import list_batches, read_events
from recflow.data.schema import TABLES
from recflow.data.sources import land_batches

LINES = ["1 10 11 12 13 14", "2 11 12 15 16 17 10", "3 12 10 14 15 16"]
ATTRS = {
    "10": [1, 2],
    "11": [1, 3],
    "12": [2],
    "13": [1, 2, 4],
    "14": [1],
    "15": [1, 3],
    "16": [1],
    "17": [5, 1],
}


@pytest.fixture
def toy_folder(tmp_path):
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "Toy.txt").write_text("\n".join(LINES) + "\n")
    (folder / "Toy_item2attributes.json").write_text(json.dumps(ATTRS))
    return folder


def test_read_keeps_order_and_attributes(toy_folder):
    data = read_amazon_sequences(toy_folder)
    assert data.name == "Toy"
    assert data.users == ["1", "2", "3"]
    assert data.sequences[1] == ["11", "12", "15", "16", "17", "10"]
    assert data.attributes["17"] == ["5", "1"]
    assert data.items == ["10", "11", "12", "13", "14", "15", "16", "17"]


def test_daily_batches_conform_and_keep_each_users_order(toy_folder, tiny_settings):
    batches = list(amazon_daily_batches(str(toy_folder), tiny_settings))
    n_days = tiny_settings.data.n_days
    assert batches[-1][0] == tiny_settings.data.start_date + pd.Timedelta(days=n_days - 1)
    for _, frames in batches:
        for table, columns in TABLES.items():
            assert list(frames[table].columns) == list(columns)
    events = pd.concat([f["events"] for _, f in batches]).sort_values("timestamp", kind="stable")
    assert len(events) == sum(len(line.split()) - 1 for line in LINES)  # one purchase per entry
    assert events["event_id"].is_unique
    for line in LINES:
        user, *items = line.split()
        mine = events[events["user_id"] == user]
        assert mine["timestamp"].is_monotonic_increasing
        assert list(mine["item_id"]) == items
        assert set(mine["event_type"]) == {"purchase"}  # purchase-only: the files hold no views
    last_day = batches[-1][1]["events"]
    assert set(last_day["item_id"]) >= {"14", "10", "16"}  # every user's last item falls on the last day
    items = batches[0][1]["items"].set_index("item_id")
    assert (items["price"] == PLACEHOLDER_PRICE).all()
    assert items.loc["13", "category"] == "attr1"  # attribute 1 is the most frequent
    assert items.loc["13", "brand"] == "attr4"  # attribute 4 the rarest
    assert items.loc["14", "brand"] == "unknown"
    assert items.loc["13", "tags"].split("|")[0] == "attr1"  # every attribute, most frequent first
    assert len(items.loc["13", "tags"].split("|")) == 3
    # the catalogue and the users are upserts of the first batch only: later batches carry none
    assert len(batches[0][1]["users"]) == len(LINES) and len(items) == 8
    assert all(f["items"].empty and f["users"].empty for _, f in batches[1:])


def test_land_batches_from_amazon_source(toy_folder, tiny_settings):
    tiny_settings.data.source = f"amazon:{toy_folder}"
    land_batches(tiny_settings)
    assert len(list_batches(tiny_settings.raw_dir)) >= 2
    assert len(read_events(tiny_settings.raw_dir)) == 16


def test_benchmark_sequences_are_indexed(toy_folder):
    sequences, attrs, item_ids = benchmark_sequences(toy_folder)
    assert [item_ids[i] for i in sequences[2]] == ["12", "10", "14", "15", "16"]
    assert attrs.shape == (8, 3)
    assert (attrs[item_ids.index("13")] > 0).sum() == 3
    assert attrs[item_ids.index("12"), 1:].tolist() == [0, 0]


def test_missing_folder_says_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="exactly one <Name>.txt"):
        read_amazon_sequences(tmp_path)


def _events(rows):
    """Platform events from (user, item, event_type, minute) tuples."""
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "minute"])
    frame["timestamp"] = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(frame["minute"], unit="min")
    frame["event_id"] = [f"e{n}" for n in range(len(frame))]
    frame["session_id"] = "s"
    return frame.drop(columns="minute")


def test_write_amazon_sequences_round_trips_through_the_reader(tmp_path):
    rows = [("ua", i, "purchase", m) for m, i in enumerate(["x", "y", "y", "z", "x", "w"])]
    rows += [("ub", i, "add_to_cart", m) for m, i in enumerate(["y", "x", "z", "w"])]
    rows += [("ub", "x", "view", 99), ("uc", "x", "purchase", 0)]  # a view never counts; uc is too short
    items = pd.DataFrame(
        {
            "item_id": ["x", "y", "z", "w"],
            "category": ["c1", "c1", "c2", "c2"],
            "brand": ["b1", "b2", "b1", "b1"],
        }
    )
    txt = write_amazon_sequences(_events(rows), items, tmp_path / "out", "Toy", min_count=2)
    data = read_amazon_sequences(txt.parent)
    assert data.name == "Toy"
    # ua: the repeated y collapses, time order kept; ub: the view is not an interaction; uc dropped
    assert data.sequences == [["1", "2", "3", "1", "4"], ["2", "1", "3", "4"]]
    assert set(data.attributes) == {"1", "2", "3", "4"}
    # x and y share a category, x and z share a brand: same attribute ids, one id space
    assert data.attributes["1"][0] == data.attributes["2"][0]
    assert data.attributes["1"][1] == data.attributes["3"][1]
    assert data.attributes["1"][0] != data.attributes["3"][0]


def test_write_amazon_sequences_says_when_nothing_is_left(tmp_path):
    items = pd.DataFrame({"item_id": ["x"], "category": ["c"], "brand": ["b"]})
    with pytest.raises(ValueError, match="5-core"):
        write_amazon_sequences(_events([("ua", "x", "purchase", 0)]), items, tmp_path, "Toy")


def test_the_first_batch_s_catalogue_holds_on_every_later_day(toy_folder, tiny_settings):
    from recflow.data.batches import read_snapshot

    tiny_settings.data.source = f"amazon:{toy_folder}"
    batches = land_batches(tiny_settings)
    catalogue = read_snapshot(tiny_settings.raw_dir, "items", batches[-1].day)
    pd.testing.assert_frame_equal(
        catalogue, batches[0].read("items").sort_values("item_id").reset_index(drop=True)
    )
    assert read_snapshot(tiny_settings.raw_dir, "users")["user_id"].tolist() == ["1", "2", "3"]
