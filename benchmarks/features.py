"""Online feature latency benchmark: the serving path (one user + 100 candidate items) on SQLite and Redis."""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from features.compute import table_path
from features.online import OnlineFeatures
from features.store import materialize, prepare_feature_store
from recflow.data.batches import list_batches
from recflow.settings import Settings

BACKENDS: tuple[str, ...] = ("sqlite", "redis")
CANDIDATES = 100
WARMUP = 200
SDK_LOOKUPS = 500
"""Lookups of the plain-SDK comparison (tens of ms each; it is a reference, not the measured path)."""


def run_feature_bench(settings: Settings, json_out: Path, lookups: int = 2000) -> dict:
    """Measure online feature lookups on SQLite and Redis and write `{"sqlite": {...}, "redis": {...}}`.

    Builds a store on the configured synthetic data (default size unless `RECFLOW_DATA__*` say
    otherwise) under `<home>/bench/features`, then, per backend, after `WARMUP` lookups, times
    `lookups` calls of `OnlineFeatures.user` and of `OnlineFeatures.user_and_items` with 100
    random candidates (the path serving uses: the user from Feast, the items from the cache
    refreshed on materialization), and, for reference, `SDK_LOOKUPS` of the same request through
    two plain `get_online_features` calls.

    Returns:
        The figures per backend, in milliseconds.
    """
    bench = _bench_settings(settings)
    rng = np.random.default_rng(settings.seed)
    results: dict = {}
    for backend in BACKENDS:
        cfg = bench.model_copy(
            update={
                "features": bench.features.model_copy(
                    update={
                        "online_store": backend,
                        "project": f"{settings.features.project}_bench_{backend}",
                    }
                )
            }
        )
        results[backend] = _measure(cfg, rng, lookups)
    results["meta"] = {
        "lookups": lookups,
        "candidates": CANDIDATES,
        "warmup": WARMUP,
        "n_users": bench.data.n_users,
        "n_items": bench.data.n_items,
        "n_days": bench.data.n_days,
        "sdk_lookups": min(lookups, SDK_LOOKUPS),
        "cpus": os.cpu_count(),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(results, indent=2))
    print_table(results)
    return results


def _bench_settings(settings: Settings) -> Settings:
    """Settings over `<home>/bench/features` with landed, validated (copied) synthetic batches."""
    from recflow.data.sources import land_batches

    bench = settings.model_copy(update={"home": settings.home / "bench" / "features"})
    if len(list_batches(bench.validated_dir)) < bench.data.n_days:
        for batch in land_batches(bench):
            target = bench.validated_dir / batch.path.name
            if not target.exists():
                shutil.copytree(batch.path, target)
    return bench


def _measure(settings: Settings, rng: np.random.Generator, lookups: int) -> dict:
    start = time.perf_counter()
    store = prepare_feature_store(settings)
    materialize(settings, store)
    build_s = time.perf_counter() - start
    online = OnlineFeatures(store, settings)
    users = pd.read_parquet(table_path(settings, "user_profile"), columns=["user_id"])["user_id"].unique()
    items = np.array(online.item_ids)
    user_ids = rng.choice(users, WARMUP + lookups)
    candidates = [list(rng.choice(items, CANDIDATES, replace=False)) for _ in range(64)]
    item_refs = [*online.item_refs, "item_price_bucket:price_bucket"]

    def naive(i: int) -> None:
        store.get_online_features(features=online.user_refs, entity_rows=[{"user_id": user_ids[i]}])
        store.get_online_features(
            features=item_refs, entity_rows=[{"item_id": c} for c in candidates[i % len(candidates)]]
        )

    user = _timed(lambda i: online.user(user_ids[i]), lookups)
    both = _timed(lambda i: online.user_and_items(user_ids[i], candidates[i % len(candidates)]), lookups)
    plain = _timed(naive, min(lookups, SDK_LOOKUPS))
    if settings.features.online_store == "redis":
        _drop_redis_keys(settings)  # the shared Redis keeps no bench keys
    return {
        "user_p50_ms": user[0],
        "user_p99_ms": user[1],
        "user_plus_100_items_p50_ms": both[0],
        "user_plus_100_items_p99_ms": both[1],
        "feast_sdk_user_plus_100_items_p50_ms": plain[0],
        "feast_sdk_user_plus_100_items_p99_ms": plain[1],
        "build_and_materialize_s": round(build_s, 1),
    }


def _drop_redis_keys(settings: Settings) -> int:
    """Delete the bench project's keys (Feast suffixes every key with the project name).

    `FeatureStore.teardown` would also delete the registry file that the SQLite run shares.
    """
    import redis

    cfg = settings.features
    password = cfg.redis_password.get_secret_value() if cfg.redis_password else None
    client = redis.Redis(host=cfg.redis_host, port=cfg.redis_port, db=cfg.redis_db, password=password)
    keys = list(client.scan_iter(match=f"*{cfg.project}", count=1000))
    for i in range(0, len(keys), 1000):
        client.delete(*keys[i : i + 1000])
    return len(keys)


def _timed(call: Callable[[int], object], lookups: int) -> tuple[float, float]:
    """p50 and p99 in ms of `lookups` calls after `WARMUP` untimed ones."""
    for i in range(WARMUP):
        call(i)
    times = np.empty(lookups)
    for i in range(lookups):
        t = time.perf_counter()
        call(WARMUP + i)
        times[i] = time.perf_counter() - t
    p50, p99 = np.percentile(times * 1000.0, [50, 99])
    return round(float(p50), 3), round(float(p99), 3)


def print_table(results: dict) -> None:
    """Print the figures as a table (the one in docs/features.md)."""
    meta = results["meta"]
    table = Table(
        title=f"online features, ms over {meta['lookups']} lookups after warm-up "
        f"(SDK x2: {meta['sdk_lookups']}); {meta['cpus']} CPUs, load {meta['load_average_1m_at_end']}"
    )
    table.add_column("backend")
    for column in (
        "user p50",
        "user p99",
        "user+100 items p50",
        "user+100 items p99",
        "SDK x2 p50",
        "SDK x2 p99",
    ):
        table.add_column(column, justify="right")
    for backend in BACKENDS:
        r = results[backend]
        table.add_row(
            backend,
            *(
                f"{r[k]:.2f}"
                for k in (
                    "user_p50_ms",
                    "user_p99_ms",
                    "user_plus_100_items_p50_ms",
                    "user_plus_100_items_p99_ms",
                    "feast_sdk_user_plus_100_items_p50_ms",
                    "feast_sdk_user_plus_100_items_p99_ms",
                )
            ),
        )
    Console(width=120).print(table)
