"""The dashboards' history: a drift and a quality snapshot per day, replaced (not doubled) on a rerun."""

from __future__ import annotations

import shutil

import pytest

from monitoring.history import log_history
from monitoring.workspace import open_project
from recflow.settings import load_settings

pytestmark = pytest.mark.slow


@pytest.mark.timeout(900)
def test_every_day_gets_drift_and_quality_and_a_rerun_replaces_them(tmp_path):
    from features.store import prepare_feature_store
    from models.bundle import ModelBundle
    from models.train import train_models
    from recflow.data.sources import land_batches

    settings = load_settings("tiny", home=tmp_path / "home", data={"drift_day": 6})
    for batch in land_batches(settings):
        shutil.copytree(batch.path, settings.validated_dir / batch.path.name)
    store = prepare_feature_store(settings)
    bundle = ModelBundle.load(train_models(settings, store).bundle_path)
    days = sorted(p.name for p in settings.validated_dir.iterdir())
    from datetime import date

    days = [date.fromisoformat(d) for d in days]
    training = days[:6]

    seen = []
    logged = log_history(settings, store, bundle, training, days, progress=seen.append)

    assert [s.day for s in logged] == days and seen == logged
    assert logged[0].quality is None  # nobody comes back on the first day: no quality point
    assert all(s.quality is not None and s.quality.users > 0 for s in logged[1:])
    assert [s.drift.detected for s in logged[6:]] == [True, True]  # the drifted days alarm
    assert not any(s.drift.detected for s in logged[:6])  # the training days do not
    workspace, project = open_project(settings)
    expected = 2 * len(days) - 1
    assert len(workspace.list_runs(project.id)) == expected
    stamps = sorted(
        {workspace.get_run(project.id, r).timestamp.date() for r in workspace.list_runs(project.id)}
    )
    assert stamps == days  # one point per day on the dashboards' time axis

    settings.monitoring.history_users = 3  # a busy shop's days: a sample of their returning users
    again = log_history(settings, store, bundle, training, days)
    assert len(workspace.list_runs(project.id)) == expected  # the rerun replaced its day's snapshots
    assert all(0 < s.quality.users <= 3 for s in again[1:])
    assert max(s.quality.users for s in logged[1:]) > 3
