"""The Evidently workspace: snapshots accumulate per batch in one project with dashboard panels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from monitoring.drift import detect_drift
from monitoring.frames import frames_for_days
from monitoring.quality import QualityResult
from monitoring.workspace import log_batch, open_project


def test_snapshots_accumulate_per_batch(tiny_settings, tiny_batches, tmp_path):
    days = [b.day for b in tiny_batches]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for n, day in enumerate(days[4:6]):
        reference, current = frames_for_days(tiny_settings, days[:4], [day])
        when = start + timedelta(days=4 + n)
        drift = detect_drift(reference, current, tiny_settings, tmp_path / day.isoformat(), timestamp=when)
        quality = QualityResult(
            k=10, users=5, hit_rate=0.1 * (n + 1), coverage=0.5, popularity_bias=0.7, novelty=6.0
        )
        added = log_batch(tiny_settings, drift, quality, timestamp=when, name=day.isoformat())
        assert len(added) == 2

    workspace, project = open_project(tiny_settings)
    assert len([p for p in workspace.list_projects() if p.name == "recflow"]) == 1  # reopened, not duplicated
    runs = workspace.list_runs(project.id)
    assert len(runs) == 4
    panels = [p.title for p in workspace.get_dashboard(project.id).panels]
    assert "Share of drifted columns per batch" in panels
    assert "hit_rate@10 per day" in panels
    # the quality figure survives the round trip through the workspace
    stored = [workspace.get_run(project.id, r) for r in runs]
    values = [
        m.value
        for s in stored
        for m in s.metric_results.values()
        if "hit_rate@10" in str(getattr(m, "display_name", ""))
    ]
    assert sorted(round(float(v), 6) for v in values) == [0.1, 0.2]
