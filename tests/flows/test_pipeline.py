"""The whole pipeline as users run it: `recflow run` end to end, and a corrupted batch that stops it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from recflow.data.sources import land_batches

pytestmark = pytest.mark.slow


def test_recflow_run_end_to_end(tmp_path):
    """`recflow run --summary` on the tiny profile: every stage runs and the summary has the contract's keys."""
    home, summary_path = tmp_path / "home", tmp_path / "summary.json"
    # the dashboards' history: the newest 7 of the 8 days (monitoring.history_days)
    env = os.environ | {
        "RECFLOW_HOME": str(home),
        "RECFLOW_PROFILE": "tiny",
        "RECFLOW_MONITORING__HISTORY_DAYS": "7",
    }
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "recflow.cli", "run", "--summary", str(summary_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "ok"
    assert summary["validation"]["success"] is True
    for who in ("model", "popularity"):
        for metric in ("recall@10", "ndcg@10"):
            assert 0.0 <= summary["metrics"][who][metric] <= 1.0
    assert summary["bento"].startswith("recflow")
    assert 0.0 <= summary["drift"]["share"] <= 1.0 and isinstance(summary["drift"]["detected"], bool)
    assert os.path.exists(summary["validation"]["data_docs"])
    assert os.path.exists(summary["drift"]["report"])
    # the dashboards: the newest 7 days' drift, and their quality (someone came back on each: the first
    # day, when nobody can, is the one left out)
    assert summary["dashboards"]["days"] == 7 and summary["dashboards"]["quality_days"] == 7
    assert len(list((home / "evidently").glob("*/snapshots/*.json"))) == 7 + 7
    assert "recflow run: ok" in proc.stdout  # the closing table


@pytest.fixture(scope="module")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_corrupted_batch_is_quarantined_and_nothing_is_trained(prefect_harness, tiny_settings):
    from flows.pipeline import recflow_pipeline

    batches = land_batches(tiny_settings)
    bad = batches[4]
    events = bad.read("events")
    events["event_type"] = "clicked"  # the source delivers a broken day
    events.to_parquet(bad.table("events"), index=False)

    summary = recflow_pipeline(tiny_settings)

    assert summary["status"] == "failed"
    assert summary["validation"]["success"] is False
    assert summary["validation"]["batches_quarantined"] == [bad.day.isoformat()]
    assert "event_type" in summary["error"]
    quarantined = tiny_settings.quarantine_dir / bad.day.isoformat()
    assert (quarantined / "report.json").exists()
    assert len(pd.read_parquet(quarantined / "events.parquet")) == len(events)  # nothing lost
    assert not tiny_settings.models_dir.exists() or not any(tiny_settings.models_dir.iterdir())
    assert not (tiny_settings.bentoml_home / "champion.json").exists()
    assert "metrics" not in summary and "bento" not in summary
