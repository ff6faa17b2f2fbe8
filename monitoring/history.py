"""The dashboards' history: one drift and one quality snapshot per validated day, logged in one pass.

`make run` trains on a whole history at once; without this its Evidently project would hold one
snapshot, and the dashboards' lines a single point. `log_history` scores every day the way the daily
deployment scores a new batch: the day's data drift against the training reference
(`monitoring.drift.detect_drift`) and the day's model quality as the package serves it
(`monitoring.quality.day_quality`, the one scorer), stamped with the day. A day inside the training
window is compared with the window without that day: the popularity and category-share columns are
measured against the window's older days (`monitoring.frames`), and a day measured against a profile
that contains it would look drifted (in-sample) when it is not. A day's quality scores at most
`monitoring.history_users` of its returning users (a seeded sample on a busy day: Beauty's days would
otherwise cost 9 s each). Snapshots of the same day
from an earlier run are replaced, so running the pipeline again does not double the points.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from monitoring.drift import DriftResult
from monitoring.quality import QualityResult
from recflow.settings import Settings


@dataclass(frozen=True)
class DaySnapshot:
    """What was logged for one day: its drift and, when users came back that day, its quality."""

    day: date
    drift: DriftResult
    quality: QualityResult | None


def day_timestamp(day: date) -> datetime:
    """The instant a day's snapshots are stamped with (its start, UTC)."""
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC)


def index_path(settings: Settings) -> Path:
    """Where `log_history` records the snapshot ids it logged per day (`<reports>/dashboards.json`)."""
    return settings.reports_dir / "dashboards.json"


def forget_days(settings: Settings, days: Sequence[date], opened: tuple | None = None) -> int:
    """Delete the workspace snapshots an earlier `log_history` logged for `days`; returns how many.

    The ids come from `index_path` (reading every snapshot to find its day would read megabytes).
    `opened` is `(workspace, project)` from `monitoring.workspace.open_project`, when the caller has them.
    """
    from monitoring.workspace import open_project

    path = index_path(settings)
    index = json.loads(path.read_text()) if path.exists() else {}
    workspace, project = opened or open_project(settings)
    existing = {str(s) for s in workspace.list_runs(project.id)}
    removed = 0
    for day in days:
        for snapshot_id in index.pop(day.isoformat(), []):
            if snapshot_id in existing:
                workspace.delete_run(project.id, snapshot_id)
                removed += 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(index, indent=1))
    return removed


def _remember(settings: Settings, day: date, snapshot_ids: list[str]) -> None:
    path = index_path(settings)
    index = json.loads(path.read_text()) if path.exists() else {}
    index[day.isoformat()] = snapshot_ids
    path.write_text(json.dumps(index, indent=1))


def log_history(
    settings: Settings,
    store,
    bundle,
    reference_days: Sequence[date],
    days: Sequence[date],
    progress: Callable[[DaySnapshot], None] | None = None,
) -> list[DaySnapshot]:
    """Log a drift and a quality snapshot for each of `days` into the Evidently workspace.

    Args:
        settings: platform settings (the validated store, the workspace, monitoring thresholds).
        store: the Feast store (online features as of each day's start, for the served lists).
        bundle: the serving package (`models.bundle.ModelBundle`) whose quality is measured.
        reference_days: the training window the drift reference comes from (at least two days).
        days: the validated days to log, oldest first.
        progress: called with each day's result as it is logged.

    Returns:
        One `DaySnapshot` per day. A day with no returning user (the first) has no quality snapshot.
    """
    from models.data import weighted_interactions
    from monitoring.drift import detect_drift
    from monitoring.frames import frames_for_days
    from monitoring.quality import day_quality
    from monitoring.workspace import log_batch, open_project
    from recflow.data.batches import read_events

    opened = open_project(settings)  # once: opening reads every snapshot the workspace holds
    forget_days(settings, days, opened)
    events = read_events(settings.validated_dir)  # read once for every day's quality
    inter = weighted_interactions(events, settings)
    out = []
    for day in days:
        when = day_timestamp(day)
        # a training day is compared with the window without itself: never with a profile it is part of
        window = [d for d in reference_days if d != day]
        reference, current = frames_for_days(settings, window, [day])
        drift = detect_drift(
            reference,
            current,
            settings,
            settings.reports_dir / "drift" / day.isoformat(),
            when,
            detailed=False,
        )
        quality = day_quality(
            settings,
            store,
            bundle,
            day,
            events=events,
            inter=inter,
            max_users=settings.monitoring.history_users,
        )
        quality = quality if quality.users else None
        _remember(settings, day, log_batch(settings, drift, quality, when, day.isoformat(), opened))
        snapshot = DaySnapshot(day, drift, quality)
        out.append(snapshot)
        if progress is not None:
            progress(snapshot)
    return out
