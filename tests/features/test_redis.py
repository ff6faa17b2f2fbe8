"""The Feast store on the real Redis (127.0.0.1:6379), one project (key suffix) per test."""

from __future__ import annotations

import pandas as pd
import pytest
import redis

from features.compute import table_path
from features.online import OnlineFeatures, push_user_events
from features.store import materialize, open_store, prepare_feature_store

pytestmark = pytest.mark.redis


def _keys(settings) -> list[bytes]:
    client = redis.Redis(host=settings.features.redis_host, port=settings.features.redis_port)
    return list(client.scan_iter(match=f"*{settings.features.project}"))


def _latest(settings, name: str, key: str) -> pd.DataFrame:
    table = pd.read_parquet(table_path(settings, name)).sort_values("event_timestamp")
    return table.drop_duplicates(key, keep="last").set_index(key)


def test_redis_online_lookup_is_idempotent_and_isolated(redis_settings):
    store = prepare_feature_store(redis_settings)
    assert store.config.online_store.type == "redis"
    materialize(redis_settings, store)
    keys = _keys(redis_settings)
    n_users = len(_latest(redis_settings, "user_profile", "user_id"))
    n_items = len(_latest(redis_settings, "item_attributes", "item_id"))
    assert len(keys) == n_users + n_items  # one hash per entity, suffixed with this test's project

    online = OnlineFeatures(store, redis_settings)
    activity = _latest(redis_settings, "user_activity", "user_id")
    user_id = activity.index[-1]
    user = online.user(user_id)
    assert user["views_7d"] == activity.loc[user_id, "views_7d"]
    assert user["days_since_last_event"] == pytest.approx(activity.loc[user_id, "days_since_last_event"])
    popularity = _latest(redis_settings, "item_popularity", "item_id")
    ids = list(popularity.index[:100])
    items = online.items(ids)
    assert items["item_purchases_30d"].tolist() == popularity.loc[ids, "item_purchases_30d"].tolist()

    client = redis.Redis(host=redis_settings.features.redis_host, port=redis_settings.features.redis_port)
    first = {key: client.hgetall(key) for key in keys}
    start, end = store.get_feature_view("user_activity").materialization_intervals[-1]
    materialize(redis_settings, store, end=end, start=start)
    assert {
        key: client.hgetall(key) for key in _keys(redis_settings)
    } == first  # same window: nothing changes
    assert online.user(user_id) == user

    open_store(redis_settings).teardown()
    assert _keys(redis_settings) == []


def test_redis_push_updates_recent_items(redis_settings):
    store = prepare_feature_store(redis_settings)
    materialize(redis_settings, store)
    online = OnlineFeatures(store, redis_settings)
    user_id = _latest(redis_settings, "user_sequence", "user_id").index[0]
    before = online.user(user_id)["recent_items"]
    now = pd.Timestamp("2026-03-01 12:00", tz="UTC")
    pushed = push_user_events(
        store, pd.DataFrame({"user_id": [user_id], "item_id": ["i000003"], "timestamp": [now]})
    )
    assert pushed["recent_items"].iloc[0][-1] == "i000003"
    after = online.user(user_id)["recent_items"]
    assert after == (before + ["i000003"])[-redis_settings.features.sequence_length :]
