"""The scale benchmark's parts: size settings, the open-loop timer, the index sweep, JSON and curves."""

from __future__ import annotations

import time

import numpy as np
import pytest

from flows.scale import (
    DEFAULT_SIZES,
    SIZES,
    bench_catalogue,
    clustered_embeddings,
    open_loop_latencies,
    plot_curves,
    size_settings,
)


def test_default_sizes_span_ten_times_users_and_items():
    first, last = SIZES[DEFAULT_SIZES[0]], SIZES[DEFAULT_SIZES[-1]]
    assert len(DEFAULT_SIZES) >= 3
    assert last["n_users"] >= 10 * first["n_users"] and last["n_items"] >= 10 * first["n_items"]
    assert last["n_days"] == first["n_days"], "events grow with users only if the days stay the same"


def test_size_settings_isolate_home_and_feast_project(tiny_settings, tmp_path):
    s = size_settings(tiny_settings, "s", tmp_path)
    assert s.home == tmp_path / "s" and s.data.n_users == SIZES["s"]["n_users"]
    assert s.features.project != tiny_settings.features.project
    assert tiny_settings.data.n_users != s.data.n_users, "the caller's settings are not modified"
    with pytest.raises(ValueError, match="Unknown size 'huge'"):
        size_settings(tiny_settings, "huge", tmp_path)


def test_open_loop_latency_includes_queueing_when_the_server_is_too_slow():
    queries = np.zeros((20, 4), dtype=np.float32)
    fast = open_loop_latencies(lambda q: None, queries, rate=1000.0)
    slow = open_loop_latencies(lambda q: time.sleep(0.004), queries, rate=1000.0)  # 4 ms work, 1 ms budget
    assert fast.max() < 0.004
    assert slow[-1] > slow[0] + 0.03, "each late request waits for the ones before it"


def test_catalogue_point_uses_the_serving_index(tiny_settings):
    result = bench_catalogue(tiny_settings, n_items=4000, rate=500.0, requests=50)
    ivf = result["ivf"]
    assert result["items"] == 4000 and result["requests"] == 50
    assert ivf["recall_at_10"] >= tiny_settings.serving.min_index_recall
    assert ivf["nlist"] > 1 and ivf["p99_ms"] >= ivf["p50_ms"] > 0
    assert result["flat"]["recall_at_10"] == 1.0


def test_embeddings_share_clusters_between_items_and_queries():
    items, queries = clustered_embeddings(500, 10, dim=8, seed=0, clusters=5)
    assert items.shape == (500, 8) and queries.shape == (10, 8) and items.dtype == np.float32
    best = (queries @ items.T).max(axis=1)
    assert (best > 0.5 * (queries**2).sum(axis=1)).all(), "every query has items in its own cluster"


def test_curves_are_drawn_with_unmeasured_stages(tmp_path):
    def stage(rate):
        return {"measured": True, "rows_per_s": rate, "seconds": 1000 / rate}

    sizes = []
    for events in (1000, 10000):
        sizes.append(
            {
                "events": events,
                **{k: stage(events) for k in ("generation", "validation", "features", "materialization")},
                "training_data": {"measured": False, "reason": "not there"},
                "training": {"measured": True, "seconds_per_epoch": events / 1e4, "examples_per_s": 1e4},
            }
        )
    point = {"p99_ms": 1.0, "build_seconds": 0.1}
    catalogue = [{"items": n, "rate_rps": 200, "ivf": point, "flat": point} for n in (10, 100)]
    path = tmp_path / "curves.png"
    plot_curves({"sizes": sizes, "catalogue": catalogue}, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
