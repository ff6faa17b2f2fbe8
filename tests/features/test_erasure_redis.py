"""Erasure on the real Redis online store: the user's keys go, every other key of the project stays."""

from __future__ import annotations

import pytest

from recflow.data.batches import read_events
from recflow.erasure import forget_user


@pytest.mark.redis
def test_forget_deletes_the_users_online_keys_in_redis(redis_settings):
    import redis

    from features.online import OnlineFeatures
    from features.store import materialize, prepare_feature_store

    store = prepare_feature_store(redis_settings)
    materialize(redis_settings, store)
    cfg = redis_settings.features
    client = redis.Redis(host=cfg.redis_host, port=cfg.redis_port)
    user = read_events(redis_settings.validated_dir)["user_id"].value_counts().index[0]
    other = read_events(redis_settings.validated_dir)["user_id"].value_counts().index[1]
    mine = [k for k in client.scan_iter(match=f"*{cfg.project}") if user.encode() in k]
    total = len(list(client.scan_iter(match=f"*{cfg.project}")))
    assert mine

    report = forget_user(redis_settings, user)
    assert report.redis_keys == len(mine) and report.unhandled == []
    assert not [k for k in client.scan_iter(match="*") if user.encode() in k]
    assert len(list(client.scan_iter(match=f"*{cfg.project}"))) == total - len(mine)
    assert OnlineFeatures(store, redis_settings).user(user) is None
    assert OnlineFeatures(store, redis_settings).user(other) is not None
