"""The Feast store on SQLite: repo config, services, point-in-time joins, materialization, online path, push."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
from pydantic import SecretStr

from features.compute import table_path, training_timestamps
from features.definitions import price_bucket
from features.online import OnlineFeatures, push_user_events
from features.store import get_training_frame, materialize, prepare_feature_store, repo_config

USER_REFS = ["user_activity:views_7d", "user_profile:tenure_days", "user_sequence:recent_items"]
ITEM_REFS = ["item_attributes:price", "item_popularity:item_views_7d"]


def _latest(settings, name: str, key: str, until: pd.Timestamp | None = None) -> pd.DataFrame:
    table = pd.read_parquet(table_path(settings, name))
    if until is not None:
        table = table[table["event_timestamp"] <= until]
    return table.sort_values("event_timestamp").drop_duplicates(key, keep="last").set_index(key)


def _online(store, ids: list[str], key: str, refs: list[str]) -> pd.DataFrame:
    frame = store.get_online_features(features=refs, entity_rows=[{key: i} for i in ids]).to_df()
    return frame.set_index(key).sort_index()


def test_repo_config_from_settings(tiny_settings):
    sqlite = repo_config(tiny_settings)
    assert sqlite["online_store"] == {
        "type": "sqlite",
        "path": str(tiny_settings.feature_repo_dir.resolve() / "online.db"),
    }
    assert sqlite["project"] == tiny_settings.features.project
    assert sqlite["provider"] == "local" and sqlite["offline_store"]["type"] == "duckdb"
    redis = tiny_settings.features.model_copy(
        update={
            "online_store": "redis",
            "redis_host": "cache",
            "redis_port": 6380,
            "redis_password": SecretStr("s3cret"),
        }
    )
    on_redis = tiny_settings.model_copy(update={"features": redis})
    written = repo_config(on_redis)["online_store"]["connection_string"]
    assert written == "cache:6380,db=0,password=${RECFLOW_FEATURES__REDIS_PASSWORD}"  # no secret on disk
    assert repo_config(on_redis, reveal_secrets=True)["online_store"]["connection_string"].endswith(
        "password=s3cret"
    )


def test_services_and_ttls(feature_world):
    store = feature_world.store
    retrieval = {p.name for p in store.get_feature_service("retrieval_v1").feature_view_projections}
    ranking = {p.name for p in store.get_feature_service("ranking_v1").feature_view_projections}
    assert retrieval == {"user_profile", "user_sequence", "item_attributes"}
    assert ranking == {
        "user_profile",
        "user_activity",
        "item_attributes",
        "item_popularity",
        "item_price_bucket",
    }
    never_expire = {"item_promotions", "user_demographics"}  # change tables: a row holds until the next
    for fv in store.list_feature_views():
        assert fv.ttl is not None and (fv.ttl.total_seconds() == 0) == (fv.name in never_expire), fv.name
    grocery = {p.name for p in store.get_feature_service("grocery_v1").feature_view_projections}
    assert grocery == never_expire
    assert (feature_world.settings.feature_repo_dir / "feature_store.yaml").exists()


def test_sequence_is_point_in_time_correct(feature_world):
    """A training row at label time - 1 µs sees the sequence before the label event, never the later one."""
    settings, store = feature_world.settings, feature_world.store
    seq = pd.read_parquet(table_path(settings, "user_sequence"))
    user = seq["user_id"].value_counts().index[0]
    rows = seq[seq["user_id"] == user].sort_values("event_timestamp").reset_index(drop=True)
    previous, later = rows["recent_items"].iloc[:-1].map(list), rows["recent_items"].iloc[1:].map(list)
    changed = [i for i in range(1, len(rows)) if list(previous.iloc[i - 1]) != list(later.loc[i])]
    assert len(changed) >= 3, "the case needs a later value that differs from the earlier one"
    entity = pd.DataFrame(
        {"user_id": user, "event_timestamp": training_timestamps(rows["event_timestamp"].iloc[changed])}
    )
    got = store.get_historical_features(entity_df=entity, features=["user_sequence:recent_items"]).to_df()
    got = got.sort_values("event_timestamp")["recent_items"].map(list).tolist()
    assert got == [list(rows["recent_items"].iloc[i - 1]) for i in changed]
    assert all(g != list(rows["recent_items"].iloc[i]) for g, i in zip(got, changed, strict=True))


def test_daily_aggregates_are_point_in_time_correct(feature_world):
    """Just before a snapshot's timestamp the previous day's aggregate is returned; after the TTL, nothing."""
    settings, store = feature_world.settings, feature_world.store
    act = pd.read_parquet(table_path(settings, "user_activity"))
    act = act.sort_values(["user_id", "event_timestamp"])
    act["before"] = act.groupby("user_id")["views_7d"].shift(1)
    case = act[act["before"].notna() & (act["before"] != act["views_7d"])].iloc[0]
    entity = pd.DataFrame(
        {
            "user_id": [case.user_id] * 3,
            "item_id": ["i000001"] * 3,
            "event_timestamp": [
                case.event_timestamp - pd.Timedelta(microseconds=1),
                case.event_timestamp,
                act["event_timestamp"].max() + pd.Timedelta(days=10),
            ],
        }
    )
    got = get_training_frame(store, entity, "ranking_v1")
    assert got["event_timestamp"].tolist() == entity["event_timestamp"].tolist()  # every row, in order
    views = got["views_7d"].tolist()
    assert views[0] == case.before and views[1] == case.views_7d
    assert pd.isna(views[2])  # older than the 3-day TTL


def test_training_frame_of_a_service(feature_world):
    settings, store = feature_world.settings, feature_world.store
    entity = pd.DataFrame(
        {
            "user_id": ["u000001", "u000002"],
            "item_id": ["i000001", "i000003"],
            "event_timestamp": [settings.data.start_date] * 2,
        }
    )
    entity["event_timestamp"] = pd.Timestamp(settings.data.start_date, tz="UTC") + pd.Timedelta(days=4)
    frame = get_training_frame(store, entity, "ranking_v1")
    assert len(frame) == 2
    assert {"views_7d", "region", "price", "item_conversion_7d", "price_bucket"} <= set(frame.columns)
    assert (frame["price_bucket"] == price_bucket(frame["price"])).all()
    with pytest.raises(ValueError, match="event_timestamp"):
        get_training_frame(store, entity.drop(columns="event_timestamp"), "ranking_v1")


def test_materialization_is_incremental_and_idempotent(tiny_settings, tiny_batches):
    store = prepare_feature_store(tiny_settings)
    users = [f"u{u:06d}" for u in range(tiny_settings.data.n_users)]
    items = [f"i{i:06d}" for i in range(tiny_settings.data.n_items)]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    middle = datetime(2026, 1, 5, tzinfo=UTC)
    materialize(tiny_settings, store, end=middle)
    first = _online(store, users, "user_id", USER_REFS), _online(store, items, "item_id", ITEM_REFS)
    expected = _latest(tiny_settings, "user_activity", "user_id", pd.Timestamp(middle))["views_7d"]
    assert first[0]["views_7d"].dropna().astype(int).to_dict() == expected.astype(int).to_dict()

    materialize(tiny_settings, store, end=middle, start=start)  # the same window again
    again = _online(store, users, "user_id", USER_REFS), _online(store, items, "item_id", ITEM_REFS)
    pd.testing.assert_frame_equal(first[0], again[0])
    pd.testing.assert_frame_equal(first[1], again[1])

    windows = materialize(tiny_settings, store)  # next batches: continues where the last window ended
    assert all(begin == middle for begin, _ in windows.values())
    latest = _latest(tiny_settings, "user_activity", "user_id")["views_7d"]
    now = _online(store, users, "user_id", USER_REFS)["views_7d"].dropna().astype(int)
    assert now.to_dict() == latest.astype(int).to_dict()
    assert now.to_dict() != first[0]["views_7d"].dropna().astype(int).to_dict()


def test_online_features_return_the_materialized_values(feature_world):
    settings, store = feature_world.settings, feature_world.store
    online = OnlineFeatures(store, settings)
    activity = _latest(settings, "user_activity", "user_id")
    user_id = activity.index[0]
    user = online.user(user_id)
    assert user["views_30d"] == activity.loc[user_id, "views_30d"]
    assert user["tenure_days"] == _latest(settings, "user_profile", "user_id").loc[user_id, "tenure_days"]
    assert user["recent_items"] == list(
        _latest(settings, "user_sequence", "user_id").loc[user_id, "recent_items"]
    )
    attributes = _latest(settings, "item_attributes", "item_id")
    popularity = _latest(settings, "item_popularity", "item_id")
    ids = list(attributes.index[:100][::-1])
    user_again, items = online.user_and_items(user_id, [*ids, "no-such-item"])
    assert user_again == user
    assert list(items.index) == [*ids, "no-such-item"]  # request order, unknown ids kept as empty rows
    assert items.loc[ids, "price"].tolist() == attributes.loc[ids, "price"].tolist()
    assert items.loc[ids, "item_views_7d"].tolist() == popularity.loc[ids, "item_views_7d"].tolist()
    assert items.loc[ids, "price_bucket"].tolist() == price_bucket(attributes.loc[ids, "price"]).tolist()
    assert items.loc["no-such-item"].isna().all()
    assert online.user("no-such-user") is None
    assert online.items([]).empty


def test_push_updates_recent_items(tiny_settings, tiny_batches):
    store = prepare_feature_store(tiny_settings)
    materialize(tiny_settings, store)
    online = OnlineFeatures(store, tiny_settings)
    n = tiny_settings.features.sequence_length
    user_id = _latest(tiny_settings, "user_sequence", "user_id").index[0]
    before = online.user(user_id)["recent_items"]
    now = pd.Timestamp("2026-03-01 12:00", tz="UTC")
    events = pd.DataFrame(
        {
            "user_id": [user_id, user_id, "brand-new-user"],
            "item_id": ["i000002", "i000001", "i000005"],
            "timestamp": [now + pd.Timedelta(seconds=2), now, now],
        }
    )
    push_user_events(store, events)
    after = online.user(user_id)["recent_items"]
    assert after[-2:] == ["i000001", "i000002"]  # time order, newest last
    assert after == (before + ["i000001", "i000002"])[-n:]
    assert online.user("brand-new-user")["recent_items"] == ["i000005"]


def test_recency_on_demand_feature_uses_the_request_time(feature_world):
    settings, store = feature_world.settings, feature_world.store
    activity = _latest(settings, "user_activity", "user_id")
    user_id = activity.index[0]
    now = activity.loc[user_id, "last_event_unix_s"] + 2.5 * 86_400
    got = store.get_online_features(
        features=["user_recency:recency_days"], entity_rows=[{"user_id": user_id, "request_unix_s": now}]
    ).to_dict()
    assert got["recency_days"][0] == pytest.approx(2.5)


def test_online_features_before_materialization_are_empty(tiny_settings, tiny_batches):
    store = prepare_feature_store(tiny_settings)
    online = OnlineFeatures(store, tiny_settings)
    assert online.item_ids == []
    assert online.user("u000001") is None
    assert online.items(["i000001"]).loc["i000001"].isna().all()


def test_promotions_are_point_in_time_in_feast(tiny_settings, completejourney_folder):
    """A promotion is known from the start of its week's first day (local time), not one second before."""
    import shutil

    from completejourney_data import COMPLETEJOURNEY_WEEK11_ONLY

    from recflow.data.sources import land_batches

    tiny_settings.data.source = f"completejourney:{completejourney_folder}"
    for batch in land_batches(tiny_settings):
        shutil.copytree(batch.path, tiny_settings.validated_dir / batch.path.name)
    store = prepare_feature_store(tiny_settings)
    monday = pd.Timestamp("2017-03-06 05:00", tz="UTC")  # 00:00 in New York
    entity = pd.DataFrame(
        {
            "item_id": str(COMPLETEJOURNEY_WEEK11_ONLY),
            "user_id": "1",
            "event_timestamp": [monday - pd.Timedelta(seconds=1), monday, monday + pd.Timedelta(days=6)],
        }
    )
    frame = get_training_frame(store, entity, "grocery_v1")
    assert frame["on_promotion"].tolist() == [0, 1, 1]
    assert frame["promo_display_stores"].tolist() == [0, 2, 2]
    assert (frame["household_comp"] == "2 Adults Kids").all()


def test_a_store_of_the_newest_days_answers_as_of_the_newest_day_as_the_whole_one(
    tiny_settings, completejourney_folder, tmp_path
):
    """The replay's serving store keeps the newest days' daily rows: lookups at the newest day's start agree."""
    import shutil

    from features.store import RANKER_SERVICE, historical_features, ranker_features
    from recflow.data.batches import day_bounds, list_batches, read_events
    from recflow.data.sources import land_batches
    from recflow.settings import load_settings

    tiny_settings.data.source = f"completejourney:{completejourney_folder}"
    for batch in land_batches(tiny_settings):
        shutil.copytree(batch.path, tiny_settings.validated_dir / batch.path.name)
    newest = load_settings("tiny", home=tmp_path / "newest")
    newest.data.source = tiny_settings.data.source
    shutil.copytree(tiny_settings.validated_dir, newest.validated_dir)
    whole_store = prepare_feature_store(tiny_settings)
    newest_store = prepare_feature_store(newest, newest_days=2)
    whole_rows = compute_rows(tiny_settings)
    newest_rows = compute_rows(newest)
    for table in ("item_attributes", "item_popularity", "user_activity", "user_profile"):
        assert newest_rows[table] < whole_rows[table], table
    last = list_batches(tiny_settings.validated_dir)[-1].day
    cut = day_bounds(last, tiny_settings.data.shop_timezone)[0]
    events = read_events(tiny_settings.validated_dir)
    refs = ranker_features(whole_store, RANKER_SERVICE)
    assert refs["user"] and refs["item"]
    for key, entity in (("user_id", "user"), ("item_id", "item")):
        ids = sorted(events[key].astype(str).unique())
        entity_df = pd.DataFrame({key: ids, "event_timestamp": cut})
        whole = historical_features(whole_store, entity_df, refs[entity])
        mine = historical_features(newest_store, entity_df, refs[entity])
        assert whole[key].notna().all() and len(whole) == len(ids)
        values = whole.drop(columns=[key, "event_timestamp"])
        assert values.notna().all(axis=1).mean() > 0.5, values.isna().mean()  # most are known at the cut
        pd.testing.assert_frame_equal(mine, whole, check_dtype=False)
    with pytest.raises(ValueError, match="at least 2"):
        prepare_feature_store(newest, newest_days=1)


def compute_rows(settings) -> dict[str, int]:
    """Rows of each feature table written under `settings`."""
    import pyarrow.parquet as pq

    from features.compute import TABLE_NAMES, table_path

    return {name: pq.read_metadata(table_path(settings, name)).num_rows for name in TABLE_NAMES}
