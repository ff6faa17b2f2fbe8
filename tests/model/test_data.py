"""Training data: time split, labels, padding, and point-in-time features from Feast."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.config import ModelConfig
from models.data import build_vocabulary, first_interactions, pad_sequences, ranking_labels, split_by_time


def _events(rows: list[tuple[str, str, str, str, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "timestamp", "session_id"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame


def test_split_by_time_holds_out_the_newest_days():
    events = _events(
        [
            ("u1", "a", "view", "2026-01-01 10:00", "s1"),
            ("u1", "b", "view", "2026-01-02 23:59", "s2"),
            ("u2", "c", "view", "2026-01-03 00:00", "s3"),
            ("u2", "d", "view", "2026-01-04 12:00", "s4"),
        ]
    )
    train, holdout, split = split_by_time(events, holdout_days=2)
    assert split == pd.Timestamp("2026-01-03", tz="UTC")
    assert list(train["item_id"]) == ["a", "b"] and list(holdout["item_id"]) == ["c", "d"]
    with pytest.raises(ValueError, match="holdout_days=4"):
        split_by_time(events, holdout_days=4)


def test_labels_and_interactions_by_hand():
    events = _events(
        [
            ("u1", "a", "view", "2026-01-01 10:00", "s1"),
            ("u1", "a", "view", "2026-01-01 10:01", "s1"),  # repeat view
            ("u1", "a", "add_to_cart", "2026-01-01 10:02", "s1"),
            ("u1", "b", "view", "2026-01-01 10:03", "s1"),
            ("u1", "b", "add_to_cart", "2026-01-02 10:00", "s2"),  # other session: no label for s1
        ]
    )
    labels = ranking_labels(events)
    assert list(zip(labels["item_id"], labels["label"], strict=True)) == [("a", 1.0), ("b", 0.0)]
    assert list(first_interactions(events)["item_id"]) == ["a", "b", "b"]


def test_pad_sequences_left_pads_and_keeps_the_newest():
    out = pad_sequences(pd.Series([["a", "b"], None, ["a", "b", "c", "d"], []], dtype=object), 3)
    assert out.tolist() == [["", "a", "b"], ["", "", ""], ["b", "c", "d"], ["", "", ""]]


def test_training_data_is_point_in_time_and_never_sees_the_holdout(model_world, tiny_data):
    settings, _ = model_world
    data = tiny_data
    assert (pd.to_datetime(data.retrieval["event_timestamp"], utc=True) < data.split).all()
    assert (pd.to_datetime(data.ranking["event_timestamp"], utc=True) < data.split).all()
    assert data.window[1] < data.split.date()
    assert len(data.retrieval) == len(first_interactions(data.train_events))

    # recent_items as Feast returns them == the user's items strictly before the row, newest last
    events = data.train_events.sort_values("timestamp", kind="stable")
    n = settings.features.sequence_length
    checked = 0
    for row in data.retrieval.sample(40, random_state=0).itertuples():
        before = events[(events["user_id"] == row.user_id) & (events["timestamp"] <= row.event_timestamp)]
        expected = before["item_id"].astype(str).tolist()[-n:]
        got = list(row.recent_items) if isinstance(row.recent_items, list | np.ndarray) else []
        assert got == expected
        checked += bool(expected)
    assert checked > 0

    # the evaluated users' queries see their whole training history, nothing of the holdout
    first = data.eval_queries.iloc[0]
    history = events[events["user_id"] == first["user_id"]]["item_id"].astype(str).tolist()[-n:]
    assert list(first["recent_items"]) == history
    assert set(data.relevant) <= set(data.train_events["user_id"])


def test_vocabulary_comes_from_the_training_window(tiny_data):
    config = ModelConfig(ranking_numeric=tiny_data.ranking_numeric)
    vocab = build_vocabulary(tiny_data, config)
    assert set(vocab.user_id) == set(tiny_data.retrieval["user_id"].astype(str))
    assert set(vocab.user_id) <= set(tiny_data.train_events["user_id"].astype(str))
    assert vocab.price_boundaries == sorted(vocab.price_boundaries)
    assert len(vocab.numeric_mean) == len(config.ranking_numeric) > 5
    assert "views_7d" in config.ranking_numeric and "item_conversion_7d" in config.ranking_numeric
    assert np.isfinite(vocab.numeric_std).all()
