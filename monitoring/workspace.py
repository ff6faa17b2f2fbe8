"""The Evidently workspace: one project whose snapshots accumulate per batch, with dashboards over time.

Every checked batch adds a drift snapshot (Evidently's `DataDriftPreset`) and, when feedback exists, a
quality snapshot (hit rate, coverage, popularity bias, novelty as one-row `MeanValue`s), both stamped
with the batch's day. Open it with `evidently ui --workspace <home>/evidently` (`recflow up` does).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd

from monitoring.drift import DriftResult
from monitoring.quality import QualityResult
from recflow.settings import Settings

PROJECT_NAME = "recflow"
QUALITY_METRICS: tuple[str, ...] = ("hit_rate", "coverage", "popularity_bias", "novelty")


def workspace_dir(settings: Settings) -> Path:
    """Where the local Evidently workspace lives: `settings.evidently_dir` (`<home>/evidently`)."""
    return settings.evidently_dir


def open_project(settings: Settings):
    """Open (or create) the workspace and its `recflow` project with the dashboard panels.

    Returns:
        `(workspace, project)`, Evidently's local `Workspace` and `Project`.
    """
    from evidently.ui.workspace import Workspace

    path = workspace_dir(settings)
    path.mkdir(parents=True, exist_ok=True)
    workspace = Workspace(str(path))
    found = [p for p in workspace.list_projects() if p.name == PROJECT_NAME]
    if found:
        return workspace, found[0]
    project = workspace.create_project(PROJECT_NAME, description="Daily drift and recommendation quality")
    _add_panels(project, settings.train.k)
    project.save()
    return workspace, project


def _add_panels(project, k: int) -> None:
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel

    dash = project.dashboard
    share = PanelMetric(
        legend="drifted columns (share)",
        metric="evidently:metric_v2:DriftedColumnsCount",
        metric_labels={"value_type": "share"},
        tags=["drift"],
    )
    # no counter panel of the latest share: Evidently UI 0.7.23 shows a counter whose value is 0 (a
    # quiet day) as "no value"; the line's last point says the same thing
    dash.add_panel(line_plot_panel("Share of drifted columns per batch", [share], size="full"), tab="Drift")
    dash.add_panel(
        line_plot_panel(
            "Key column drift distances",
            [
                PanelMetric(
                    legend=column,
                    metric="evidently:metric_v2:ValueDrift",
                    metric_labels={"column": column},
                    tags=["drift"],
                )
                for column in ("user_category_share", "item_popularity_rank", "item_age_days", "price")
            ],
        ),
        tab="Drift",
    )
    for name in QUALITY_METRICS:
        metric = f"{name}@{k}"
        dash.add_panel(
            line_plot_panel(
                f"{metric} per day",
                [
                    PanelMetric(
                        legend=metric,
                        metric="evidently:metric_v2:MeanValue",
                        metric_labels={"column": metric},
                        tags=["quality"],
                    )
                ],
                size="half",
            ),
            tab="Quality",
        )


def quality_snapshot(
    quality: QualityResult, timestamp: datetime | None = None, tags: list[str] | None = None
):
    """An Evidently snapshot carrying the quality figures (one-row dataset, one `MeanValue` each)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import MeanValue

    values = {k: v for k, v in quality.to_dict().items() if "@" in k}
    frame = pd.DataFrame([values])
    definition = DataDefinition(numerical_columns=list(values))
    report = Report([MeanValue(column=c) for c in values])
    return report.run(
        Dataset.from_pandas(frame, data_definition=definition),
        None,
        timestamp=timestamp,
        tags=["quality", *(tags or [])],
    )


def log_batch(
    settings: Settings,
    drift: DriftResult | None = None,
    quality: QualityResult | None = None,
    timestamp: datetime | None = None,
    name: str | None = None,
    opened: tuple | None = None,
) -> list[str]:
    """Add this batch's drift and quality snapshots to the workspace project.

    Args:
        settings: platform settings (the workspace lives under `settings.home`).
        drift: result of `detect_drift` (its Evidently snapshot is stored).
        quality: result of `recommendation_quality`, if feedback exists.
        timestamp: the batch's time (for the quality snapshot; the drift snapshot has its own).
        name: snapshot name, e.g. the batch day.
        opened: `(workspace, project)` from `open_project`, for a caller logging many batches (opening
            the workspace reads every snapshot in it, which grows with each batch).

    Returns:
        The ids of the snapshots added.

    Raises:
        ValueError: if `drift` carries no snapshot (it was not produced by `detect_drift`).
    """
    workspace, project = opened or open_project(settings)
    added = []
    if drift is not None:
        if drift.snapshot is None:
            raise ValueError(
                "DriftResult has no Evidently snapshot: produce it with monitoring.drift.detect_drift"
            )
        added.append(str(workspace.add_run(project.id, drift.snapshot, name=name and f"drift {name}").id))
    if quality is not None:
        snap = quality_snapshot(quality, timestamp)
        added.append(str(workspace.add_run(project.id, snap, name=name and f"quality {name}").id))
    return added
