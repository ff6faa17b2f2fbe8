"""The Feast store of a recflow home: build it, materialize it batch by batch, read training frames from it."""

from __future__ import annotations

import contextlib
import io
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import yaml
from feast import FeatureStore, RepoConfig

from features.compute import TIMESTAMP, compute_features, table_path
from features.definitions import feature_definitions
from recflow.data.batches import list_batches
from recflow.settings import Settings

log = logging.getLogger(__name__)
PASSWORD_ENV = "RECFLOW_FEATURES__REDIS_PASSWORD"
ROW = "__recflow_row"
WRITE_LATEST: tuple[str, ...] = ("user_sequence",)
"""Views materialized by `_write_latest` instead of `FeatureStore.materialize` (see there)."""


def repo_config(settings: Settings, reveal_secrets: bool = False) -> dict:
    """The `feature_store.yaml` content for `settings` as a dict (absolute paths).

    Provider local, parquet files read by the DuckDB offline store, registry and SQLite online store in the repo
    folder, or Redis when `settings.features.online_store == "redis"`. Feast keys every Redis entry
    with the project name, so `settings.features.project` isolates stores sharing one Redis.
    Unless `reveal_secrets`, the Redis password is written as `${RECFLOW_FEATURES__REDIS_PASSWORD}`,
    which Feast expands from the environment when it reads the file.
    """
    cfg = settings.features
    repo = settings.feature_repo_dir.resolve()
    if cfg.online_store == "redis":
        parts = [f"{cfg.redis_host}:{cfg.redis_port}", f"db={cfg.redis_db}"]
        if cfg.redis_password is not None:
            secret = cfg.redis_password.get_secret_value() if reveal_secrets else f"${{{PASSWORD_ENV}}}"
            parts.append(f"password={secret}")
        online = {"type": "redis", "connection_string": ",".join(parts)}
    else:
        online = {"type": "sqlite", "path": str(repo / "online.db")}
    return {
        "project": cfg.project,
        "registry": {"path": str(repo / "registry.db"), "cache_ttl_seconds": 0},
        "provider": "local",
        # DuckDB reads the same parquet files; its point-in-time join is 30-80x faster than the
        # Dask-based "file" store here (150k rows: ~30 s instead of hours), and it nulls only the
        # views that are out of TTL for a row instead of dropping the row.
        "offline_store": {"type": "duckdb"},
        "online_store": online,
        "entity_key_serialization_version": 3,
        "auth": {"type": "no_auth"},
    }


def write_feature_store_yaml(settings: Settings) -> Path:
    """Render `feature_store.yaml` into `settings.feature_repo_dir`; return its path."""
    repo = settings.feature_repo_dir
    repo.mkdir(parents=True, exist_ok=True)
    path = repo / "feature_store.yaml"
    path.write_text(
        "# Rendered by features.store from recflow settings; edit the settings, not this file.\n"
        + yaml.safe_dump(repo_config(settings), sort_keys=False)
    )
    return path


def open_store(settings: Settings) -> FeatureStore:
    """The Feast store of `settings` (already prepared), without computing or applying anything."""
    config = RepoConfig(**repo_config(settings, reveal_secrets=True))
    config.repo_path = settings.feature_repo_dir.resolve()
    return FeatureStore(config=config)


def prepare_feature_store(settings: Settings, newest_days: int | None = None) -> FeatureStore:
    """Compute the feature tables from the validated store, render the repo config, apply the definitions.

    Safe to call again after new batches: the tables are recomputed and `apply` updates the registry.
    `newest_days`: only the newest days' daily rows (see `features.compute.compute_features`), for a
    store that answers lookups as of the newest day's start only.

    Returns:
        The ready FeatureStore (nothing materialized yet: call `materialize`).
    """
    tables = compute_features(settings, newest_days)
    log.info("feature tables: %s", tables.rows)
    write_feature_store_yaml(settings)
    store = open_store(settings)
    definitions = feature_definitions(settings.feature_repo_dir / "data", settings.features.sequence_length)
    store.apply(definitions.objects())
    return store


def materialize(
    settings: Settings, store: FeatureStore, end: datetime | None = None, start: datetime | None = None
) -> dict[str, tuple[datetime, datetime]]:
    """Load feature values with timestamps in [start, end] into the online store.

    `end` defaults to the end of the newest validated batch (00:00 UTC of the next day), which
    covers every row of the feature tables.

    Incremental and idempotent: without `start`, each feature view continues from the end of its
    last materialization (or from the first validated batch), so materializing once per batch moves
    the window forward; materializing the same window again writes the same latest values.

    Returns:
        The window materialized per feature view.
    """
    first = _first_day(settings)
    end = _utc(end) if end is not None else _last_day_end(settings)
    windows: dict[str, tuple[datetime, datetime]] = {}
    for fv in store.list_feature_views():
        if start is not None:
            begin = _utc(start)
        else:
            done = [_utc(e) for _, e in fv.materialization_intervals]
            begin = min(max(done), end) if done else first
        windows[fv.name] = (begin, end)
    for begin in sorted(set(w[0] for w in windows.values())):
        names = [name for name, w in windows.items() if w[0] == begin and name not in WRITE_LATEST]
        if names:
            printed = io.StringIO()  # Feast prints its progress to stdout: into the log, not the terminal
            with contextlib.redirect_stdout(printed):
                store.materialize(start_date=begin, end_date=end, feature_views=names)
            log.debug("feast materialize: %s", printed.getvalue().strip())
    for name in WRITE_LATEST:
        if name in windows:
            _write_latest(settings, store, name, *windows[name])
    return windows


def _write_latest(settings: Settings, store: FeatureStore, name: str, start: datetime, end: datetime) -> int:
    """Materialize one view as Feast does (latest row per entity in [start, end]) with pandas.

    Used for `user_sequence`: Feast's Dask file-offline path pickles its list column while hashing
    the graph (about 100 s for 175k rows); reading the parquet with a time filter takes a second.
    The interval is recorded in the registry like `store.materialize` records it.
    """
    fv = store.get_feature_view(name)
    key = fv.entity_columns[0].name
    table = pq.read_table(
        table_path(settings, name),
        filters=[(TIMESTAMP, ">=", pd.Timestamp(start)), (TIMESTAMP, "<=", pd.Timestamp(end))],
    ).to_pandas()
    latest = table.sort_values(TIMESTAMP, kind="stable").drop_duplicates(key, keep="last")
    if len(latest):
        store.write_to_online_store(name, latest, allow_registry_cache=False)
    store.registry.apply_materialization(fv, store.project, start, end, commit=True)
    log.info("materialized %s: %d entities in [%s, %s]", name, len(latest), start, end)
    return len(latest)


def get_training_frame(store: FeatureStore, entity_df: pd.DataFrame, service_name: str) -> pd.DataFrame:
    """Point-in-time correct features of a feature service for each entity row.

    Args:
        store: the Feast store.
        entity_df: `user_id` and/or `item_id` plus `event_timestamp` (UTC); for rows built from a
            label event use `features.compute.training_timestamps(label_ts)` so the label is not in
            its own `recent_items`.
        service_name: e.g. `retrieval_v1` or `ranking_v1`.

    Returns:
        `entity_df`'s rows (same order, fresh index) and columns plus the service's features; a
        value stamped after a row's timestamp never reaches that row, and one older than the
        view's TTL is null.
    """
    return historical_features(store, entity_df, store.get_feature_service(service_name))


def historical_features(store: FeatureStore, entity_df: pd.DataFrame, features) -> pd.DataFrame:
    """Point-in-time correct `features` (a FeatureService or `view:feature` refs) for each entity row.

    Same contract as `get_training_frame`: every input row comes back, in order, with nulls where
    no value was known at the row's time.
    """
    if "event_timestamp" not in entity_df.columns:
        raise ValueError(f"entity_df needs an 'event_timestamp' column; got {list(entity_df.columns)}")
    frame = entity_df.reset_index(drop=True)
    frame = frame.assign(
        event_timestamp=pd.to_datetime(frame["event_timestamp"], utc=True, cache=False),
        **{key: frame[key].astype("string") for key in ("user_id", "item_id") if key in frame.columns},
        **{ROW: np.arange(len(frame))},
    )
    out = store.get_historical_features(entity_df=frame, features=features).to_df()
    # Some Feast offline stores drop an entity row when none of a view's rows for that entity
    # falls in [row time - TTL, row time]; put every row back, in order, with missing features.
    out = out.drop_duplicates(ROW).set_index(ROW).reindex(np.arange(len(frame)))
    columns = [c for c in out.columns if c not in frame.columns]
    restored = frame.drop(columns=ROW).reset_index(drop=True)
    return pd.concat([restored, out[columns].reset_index(drop=True)], axis=1)


NUMERIC_TYPES: frozenset[str] = frozenset({"Int32", "Int64", "Float32", "Float64"})
RANKER_SERVICE = "ranking_v1"
NOT_RANKER_FEATURES: frozenset[str] = frozenset({"last_event_unix_s"})
"""Raw timestamps are no ranking signal (`days_since_last_event` is their useful form)."""


def ranker_features(store: FeatureStore, service_name: str = RANKER_SERVICE) -> dict[str, list[str]]:
    """The numeric features of a feature service, split by entity: `{"user": [refs], "item": [refs]}`.

    These are the online features the ranker reads next to the candidate sources' scores, as
    `view:feature` references (on-demand views, which need request data, are left out).
    """
    out: dict[str, list[str]] = {"user": [], "item": []}
    for projection in store.get_feature_service(service_name).feature_view_projections:
        try:
            view = store.get_feature_view(projection.name)
        except Exception:  # an on-demand view: computed at request time, not stored per entity
            continue
        entity = "user" if "user_id" in view.join_keys else "item" if "item_id" in view.join_keys else None
        if entity is None:
            continue
        for feature in projection.features:
            if str(feature.dtype) in NUMERIC_TYPES and feature.name not in NOT_RANKER_FEATURES:
                out[entity].append(f"{view.name}:{feature.name}")
    return out


def _first_day(settings: Settings) -> datetime:
    batches = list_batches(settings.validated_dir)
    day = batches[0].day if batches else settings.data.start_date
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC)


def _last_day_end(settings: Settings) -> datetime:
    batches = list_batches(settings.validated_dir)
    if not batches:
        raise FileNotFoundError(
            f"no validated batches under {settings.validated_dir}: nothing to materialize"
        )
    return datetime.combine(batches[-1].day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
