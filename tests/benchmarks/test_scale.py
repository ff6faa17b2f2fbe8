"""The scale benchmark's parts: size settings, the open-loop timer, the index sweep, JSON and curves."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.scale import (
    BEGIN,
    DEFAULT_SIZES,
    END,
    SIZES,
    STAGES,
    bench_catalogue,
    clustered_embeddings,
    growth_exponents,
    markdown_report,
    open_loop_latencies,
    plot_curves,
    size_settings,
    update_docs,
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
    assert (fast >= 0).all() and np.median(slow) > np.median(fast)
    # 20 requests of 4 ms sent 1 ms apart: the last one waits for the 19 before it (>= 19 * 3 ms)
    assert slow[-1] >= 0.05, "each late request waits for the ones before it"


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


def _sizes_with(seconds_small: float, seconds_large: float) -> list[dict]:
    out = []
    for events, seconds in ((1000, seconds_small), (10000, seconds_large)):
        stage = {"measured": True, "rows_per_s": int(events / seconds), "seconds": seconds}
        out.append(
            {
                "size": f"e{events}",
                "data": {"n_users": events // 10, "n_items": events // 20},
                "events": events,
                **{k: dict(stage) for k, _ in STAGES},
                "training": {"measured": True, "seconds_per_epoch": seconds, "examples_per_s": 100},
                "faiss": {"measured": False, "reason": "no model"},
            }
        )
    return out


def test_growth_exponent_is_the_log_log_slope():
    exps = growth_exponents(_sizes_with(1.0, 100.0))  # 10x events, 100x seconds: quadratic
    assert exps["validation"] == pytest.approx(2.0) and exps["training"] == pytest.approx(2.0)
    assert growth_exponents(_sizes_with(2.0, 2.0))["generation"] == pytest.approx(0.0)


def test_markdown_block_replaces_only_the_generated_part(tmp_path):
    results = {
        "command": "recflow bench scale --json x.json",
        "started": "2026-01-01T00:00:00+00:00",
        "machine": {"cpus": 2, "load_average_at_start": [1.0, 1.0, 1.0]},
        "settings": {"online_store": "sqlite", "feature_engine": "pandas"},
        "seconds_total": 1.0,
        "peak_rss_gib": 0.5,
        "sizes": _sizes_with(1.0, 10.0),
        "catalogue": [],
        "serving_http": {"measured": False, "reason": "no bento"},
    }
    results["growth_exponents"] = growth_exponents(results["sizes"])
    block = markdown_report(results, Path("scaling/scale.png"))
    assert "recflow bench scale --json x.json" in block and "not measured" in block
    assert "![cost curves](scaling/scale.png)" in block
    doc = tmp_path / "scaling.md"
    doc.write_text(f"# Title\n\nhand-written\n\n{BEGIN}\nold figures\n{END}\n\nmore prose\n")
    update_docs(doc, block)
    text = doc.read_text()
    assert "old figures" not in text and "hand-written" in text and "more prose" in text
    assert text.count(BEGIN) == 1 and "| 1.00 |" in text
