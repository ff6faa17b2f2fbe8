"""Training data: the time cut, collapsed interactions, and point-in-time features from Feast."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.compute import interactions
from models.data import held_out, split_by_time
from recflow.data.batches import read_events


def _events(rows: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "timestamp"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame


def test_split_by_time_holds_out_the_newest_days():
    events = _events(
        [
            ("u1", "a", "view", "2026-01-01 10:00"),
            ("u1", "b", "view", "2026-01-02 23:59"),
            ("u2", "c", "view", "2026-01-03 00:00"),
            ("u2", "d", "view", "2026-01-04 12:00"),
        ]
    )
    split = split_by_time(events, holdout_days=2)
    assert split.cut == pd.Timestamp("2026-01-03", tz="UTC")
    assert split.windows()["validation_window"] == {
        "start": "2026-01-03",
        "end": "2026-01-04",
        "fit_end": "2026-01-02",
    }
    with pytest.raises(ValueError, match="holdout_days=4"):
        split_by_time(events, holdout_days=4)


def test_split_by_time_cuts_at_the_shops_midnight():
    # 2017-03-01 22:30 in New York is 03:30 UTC the next day: it belongs to the shop's 1 March
    events = _events(
        [
            ("u1", "a", "purchase", "2017-02-28 15:00"),
            ("u1", "b", "purchase", "2017-03-02 03:30"),
            ("u2", "c", "purchase", "2017-03-02 14:00"),
        ]
    )
    split = split_by_time(events, holdout_days=1, timezone="America/New_York")
    assert split.cut == pd.Timestamp("2017-03-02 05:00", tz="UTC")  # 00:00 in New York (EST)
    assert split.windows()["validation_window"] == {
        "start": "2017-03-02",
        "end": "2017-03-02",
        "fit_end": "2017-03-01",
    }
    assert split.windows()["data_window"] == {"start": "2017-02-28", "end": "2017-03-02"}


def test_a_run_of_events_on_one_item_is_one_interaction_of_its_strongest_type():
    events = _events(
        [
            ("u1", "a", "view", "2026-01-01 10:00"),
            ("u1", "a", "view", "2026-01-01 10:01"),  # repeat view
            ("u1", "a", "add_to_cart", "2026-01-01 10:02"),
            ("u1", "b", "view", "2026-01-01 10:03"),
            ("u1", "a", "view", "2026-01-01 10:04"),  # back to a: a new interaction
            ("u0", "a", "purchase", "2026-01-01 09:00"),
        ]
    )
    out = interactions(events)
    assert list(zip(out["user_id"], out["item_id"], out["event_type"], strict=True)) == [
        ("u0", "a", "purchase"),
        ("u1", "a", "add_to_cart"),
        ("u1", "b", "view"),
        ("u1", "a", "view"),
    ]
    assert out["timestamp"].iloc[1] == pd.Timestamp("2026-01-01 10:00", tz="UTC")  # the run's first event


def test_interactions_of_time_ordered_events_match_those_of_any_order():
    """Validated events come in time order and are ordered by user alone (the fast path); shuffled, or
    with ties in time out of event-id order, they are sorted by all three keys: the interactions are
    the same either way."""
    rng = np.random.default_rng(3)
    n = 3_000
    minutes = np.sort(rng.integers(0, 600, n))  # many events share a minute: ties broken by event id
    events = pd.DataFrame(
        {
            "event_id": [f"e{i:05d}" for i in range(n)],
            "user_id": rng.choice([f"u{i}" for i in range(40)], n),
            "item_id": rng.choice(list("abcdef"), n),  # few items: many runs to collapse
            "event_type": rng.choice(["view", "add_to_cart", "purchase"], n),
            "timestamp": pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(minutes, unit="min"),
        }
    )
    in_order = interactions(events)
    expected = interactions(events.sample(frac=1.0, random_state=0))  # the three-key sort
    pd.testing.assert_frame_equal(in_order, expected)
    reversed_ids = events.assign(event_id=events["event_id"].to_numpy()[::-1])  # ties now out of id order
    pd.testing.assert_frame_equal(
        interactions(reversed_ids), interactions(reversed_ids.sample(frac=1.0, random_state=1))
    )
    assert len(in_order) < n  # runs were collapsed


def test_training_data_is_cut_in_time_and_features_are_point_in_time(model_world, tiny_data):
    settings, store = model_world
    data, split = tiny_data
    inter = interactions(read_events(settings.validated_dir))
    before = inter[inter["timestamp"] < split.cut]
    assert sum(len(h) for h in data.fit) == len(before)
    assert sum(len(h) for h in data.refit) == len(inter) > len(before)
    index = data.catalogue.index
    after = inter[inter["timestamp"] >= split.cut]
    for user, history, exclude, relevant in list(
        zip(data.valid_users, data.valid_history, data.valid_exclude, data.valid_relevant, strict=True)
    )[:25]:
        mine = before[before["user_id"] == user]
        assert [index[i] for i in mine["item_id"]] == history.tolist()  # the history at the cut
        bought = {index[i] for i in mine.loc[mine["event_type"] == "purchase", "item_id"]}
        assert set(exclude.tolist()) == bought  # the seen filter: what they had bought
        assert set(relevant.tolist()) == {index[i] for i in after.loc[after["user_id"] == user, "item_id"]}

    # the ranker's user features are Feast's values as of the cut, recomputed here from the events
    column = data.features["user"].index("views_7d")
    events = read_events(settings.validated_dir)
    week = events[
        (events["timestamp"] >= split.cut - pd.Timedelta(days=7)) & (events["timestamp"] < split.cut)
    ]
    views = week[week["event_type"] == "view"].groupby("user_id").size()
    expected = np.array([views.get(u, 0) for u in data.valid_users], np.float32)
    got = np.nan_to_num(data.valid_user_features[:, column])
    np.testing.assert_array_equal(got, expected)
    assert data.item_features.shape == (len(data.catalogue), len(data.features["item"]))
    assert {"price", "item_views_7d", "item_conversion_30d"} <= set(data.features["item"])


def test_held_out_users_on_one_day(model_world):
    settings, store = model_world
    events = read_events(settings.validated_dir)
    day = pd.to_datetime(events["timestamp"], utc=True).max().floor("D")
    held = held_out(settings, store, day, day + pd.Timedelta(days=1))
    today = events[pd.to_datetime(events["timestamp"], utc=True) >= day]
    earlier = events[pd.to_datetime(events["timestamp"], utc=True) < day]
    assert set(held.users) == set(today["user_id"]) & set(earlier["user_id"])
    assert len(held.history) == len(held.relevant) == len(held.exclude) == len(held)
    assert list(held.user_features.index) == held.users


def test_held_out_samples_at_most_max_users_the_same_way_each_time(model_world):
    settings, store = model_world
    events = read_events(settings.validated_dir)
    day = pd.to_datetime(events["timestamp"], utc=True).max().floor("D")
    everyone = held_out(settings, store, day, day + pd.Timedelta(days=1))
    n = len(everyone) // 2
    sample = held_out(settings, store, day, day + pd.Timedelta(days=1), max_users=n)
    again = held_out(settings, store, day, day + pd.Timedelta(days=1), max_users=n)
    assert len(sample) == n and sample.users == again.users == sorted(sample.users)
    assert set(sample.users) < set(everyone.users)
    rows = {u: i for i, u in enumerate(everyone.users)}
    for i, user in enumerate(sample.users):  # each sampled user keeps their own history and targets
        assert list(sample.history[i]) == list(everyone.history[rows[user]])
        assert list(sample.relevant[i]) == list(everyone.relevant[rows[user]])
    assert list(sample.user_features.index) == sample.users


def test_a_subset_of_held_out_users_keeps_every_field_aligned(model_world):
    settings, store = model_world
    events = read_events(settings.validated_dir)
    day = pd.to_datetime(events["timestamp"], utc=True).max().floor("D")
    held = held_out(settings, store, day, day + pd.Timedelta(days=1))
    assert held.bought is not None and len(held.bought) == len(held)
    rows = list(range(len(held)))[::2]
    part = held.subset(rows)
    assert part.users == [held.users[i] for i in rows]
    for field in ("history", "exclude", "relevant", "regions", "bought"):
        assert len(getattr(part, field)) == len(rows), field
    assert part.bought == [held.bought[i] for i in rows]
    cold = held.subset(rows, with_history=False)
    assert cold.users == part.users and cold.relevant == part.relevant
    assert all(h == [] for h in cold.history) and all(b == [] for b in cold.bought)
