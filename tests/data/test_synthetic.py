"""The synthetic generator: deterministic, schema-conformant, structured, and drift shows up."""

import numpy as np
import pandas as pd

from recflow.data.schema import EVENT_TYPES, TABLES
from recflow.data.synthetic import build_world, generate_day


def test_same_seed_same_batches(tiny_settings):
    cfg = tiny_settings.data
    a = generate_day(build_world(cfg, 7), cfg, 7, 3)
    b = generate_day(build_world(cfg, 7), cfg, 7, 3)
    c = generate_day(build_world(cfg, 8), cfg, 8, 3)
    pd.testing.assert_frame_equal(a["events"], b["events"])
    assert not a["events"]["item_id"].equals(c["events"]["item_id"])


def test_batches_follow_the_contract(tiny_settings):
    cfg = tiny_settings.data
    world = build_world(cfg, 1)
    batch = generate_day(world, cfg, 1, 2)
    for name, columns in TABLES.items():
        assert list(batch[name].columns) == list(columns)
    ev = batch["events"]
    assert set(ev["event_type"]) <= set(EVENT_TYPES) and (ev["event_type"] == "view").any()
    assert ev["item_id"].isin(batch["items"]["item_id"]).all()
    assert ev["user_id"].isin(batch["users"]["user_id"]).all()
    assert (batch["items"]["price"] > 0).all()
    assert ev["timestamp"].dt.date.eq(cfg.start_date + pd.Timedelta(days=2)).all()


def test_users_concentrate_on_their_cluster_categories(tiny_settings):
    cfg = tiny_settings.data.model_copy(update={"n_users": 400, "n_days": 4})
    world = build_world(cfg, 3)
    ev = pd.concat([generate_day(world, cfg, 3, d)["events"] for d in range(4)])
    user_row = ev["user_id"].str[1:].astype(int).to_numpy()
    item_row = ev["item_id"].str[1:].astype(int).to_numpy()
    in_taste = world.category_cluster[world.item_category[item_row]] == world.user_cluster[user_row]
    # chance level is 1 / n_clusters
    assert in_taste.mean() > 2.0 / cfg.n_clusters


def test_drift_shifts_taste_and_launches_items(tiny_settings):
    cfg = tiny_settings.data.model_copy(update={"n_users": 400, "n_days": 6, "drift_day": 3})
    world = build_world(cfg, 3)
    before = generate_day(world, cfg, 3, 2)
    after = generate_day(world, cfg, 3, 4)
    assert len(after["items"]) > len(before["items"])
    user_row = after["events"]["user_id"].str[1:].astype(int).to_numpy()
    item_row = after["events"]["item_id"].str[1:].astype(int).to_numpy()
    in_old_taste = world.category_cluster[world.item_category[item_row]] == world.user_cluster[user_row]
    user_row_b = before["events"]["user_id"].str[1:].astype(int).to_numpy()
    item_row_b = before["events"]["item_id"].str[1:].astype(int).to_numpy()
    in_old_taste_b = world.category_cluster[world.item_category[item_row_b]] == world.user_cluster[user_row_b]
    assert np.mean(in_old_taste) < np.mean(in_old_taste_b) - 0.2
