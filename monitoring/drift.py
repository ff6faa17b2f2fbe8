"""Data drift between the training window and a new batch: an Evidently report and a calibrated decision.

Why distances, not p-values: with thousands of events per day a Kolmogorov-Smirnov or chi-square test
flags every column on every day, drift or not (any tiny shift is "significant"). We therefore score
each column with an effect size that does not grow with the sample: the normed Wasserstein distance
(numerical columns, in units of the reference standard deviation) and the Jensen-Shannon distance
(categorical columns). A column drifts when its distance reaches its threshold; the batch drifts when
the share of drifted columns reaches `monitoring.drift_share_threshold`.

How the thresholds were calibrated: `benchmarks.drift_calibration.calibration_table` replays simulated days
without injected drift (and, for contrast, with it) and records every column's distance per day. The
thresholds in `MonitoringSettings` sit above the largest no-drift distance seen with a safety margin,
and the share threshold asks for several columns at once, so one noisy column never alarms alone.
`docs/monitoring.md` lists the figures and the command that produced them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from monitoring.frames import CATEGORICAL_COLUMNS, NUMERICAL_COLUMNS
from recflow.settings import MonitoringSettings, Settings


@dataclass(frozen=True)
class DriftResult:
    """The drift decision for one batch and where its report lies.

    Attributes:
        share: share of monitored columns whose distance reached its threshold.
        detected: whether `share` reached `monitoring.drift_share_threshold`.
        drifted_columns: the columns that drifted.
        n_columns: number of monitored columns.
        html_path: the Evidently HTML report.
        json_path: the decision and per-column scores as JSON.
        scores: per-column drift distance.
        thresholds: per-column threshold the distance was compared with.
        snapshot: the Evidently run itself (for a workspace); not serialised.
    """

    share: float
    detected: bool
    drifted_columns: list[str]
    n_columns: int
    html_path: Path
    json_path: Path
    scores: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    snapshot: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        """JSON-ready view (paths as strings, without the snapshot)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "snapshot"}
        out["html_path"], out["json_path"] = str(self.html_path), str(self.json_path)
        return out


def column_thresholds(cfg: MonitoringSettings, columns: list[str]) -> dict[str, float]:
    """The drift threshold of each column: per-column override, else the numerical / categorical default."""
    out = {}
    for col in columns:
        default = cfg.num_threshold if col in NUMERICAL_COLUMNS else cfg.cat_threshold
        out[col] = float(cfg.per_column_threshold.get(col, default))
    return out


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    cfg: MonitoringSettings,
    timestamp: datetime | None = None,
    detailed: bool = True,
):
    """Run Evidently's `DataDriftPreset` on the monitored columns present in both frames.

    Args:
        reference: per-event table of the reference window (`monitoring.frames`).
        current: per-event table of the batch to check.
        cfg: the monitoring settings (methods, thresholds, drift share).
        timestamp: the snapshot's time (now if None).
        detailed: False runs the metrics the preset generates (`DriftedColumnsCount` and one
            `ValueDrift` per column: the same figures, tests and decision) without the preset's
            rendering, which recomputes every column's distributions for its HTML table and costs
            three times the metrics themselves. For snapshots logged in bulk (the dashboards' history).

    Returns:
        The Evidently `Snapshot` (the run), ready to save as HTML or add to a workspace.

    Raises:
        ValueError: if a frame is empty or no monitored column is present.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import DriftedColumnsCount, ValueDrift
    from evidently.presets import DataDriftPreset

    if reference.empty or current.empty:
        raise ValueError(
            f"Cannot check drift on an empty frame (reference rows={len(reference)}, current rows={len(current)})"
        )
    num = [c for c in NUMERICAL_COLUMNS if c in reference and c in current]
    cat = [c for c in CATEGORICAL_COLUMNS if c in reference and c in current]
    if not num + cat:
        raise ValueError(
            f"No monitored column in the frames; expected some of {NUMERICAL_COLUMNS + CATEGORICAL_COLUMNS}"
        )
    definition = DataDefinition(numerical_columns=num, categorical_columns=cat)
    thresholds = column_thresholds(cfg, num + cat)
    options = {
        "drift_share": cfg.drift_share_threshold,
        "num_method": cfg.num_stattest,
        "cat_method": cfg.cat_stattest,
        "per_column_threshold": thresholds,
    }
    if detailed:
        metrics: list = [DataDriftPreset(columns=num + cat, **options)]
    else:  # what DataDriftPreset.generate_metrics makes of the same options
        metrics = [DriftedColumnsCount(columns=num + cat, **options)] + [
            ValueDrift(
                column=c, method=cfg.num_stattest if c in num else cfg.cat_stattest, threshold=thresholds[c]
            )
            for c in num + cat
        ]
    report = Report(metrics, include_tests=True)
    return report.run(
        Dataset.from_pandas(current[num + cat], data_definition=definition),
        Dataset.from_pandas(reference[num + cat], data_definition=definition),
        timestamp=timestamp,
        tags=["drift"],
    )


def column_scores(run) -> dict[str, float]:
    """Per-column drift distances from an Evidently run of `drift_report`."""
    scores = {}
    for metric in run.dict()["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith(":ValueDrift"):
            scores[config["column"]] = float(metric["value"])
    return scores


def drifted_columns(run) -> list[str]:
    """Columns whose Evidently value-drift test failed (distance over threshold, or p-value under it)."""
    out = []
    for test in run.dict()["tests"]:
        params = test.get("metric_config", {}).get("params", {})
        if (
            params.get("type", "").endswith(":ValueDrift")
            and getattr(test["status"], "value", test["status"]) == "FAIL"
        ):
            out.append(params["column"])
    return out


def detect_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    settings: Settings,
    out_dir: Path,
    timestamp: datetime | None = None,
    detailed: bool = True,
) -> DriftResult:
    """Compare `current` with `reference`, save the Evidently HTML and a JSON decision under `out_dir`.

    Args:
        reference: per-event table of the training window (see `monitoring.frames`).
        current: per-event table of the new batch.
        settings: platform settings (reads `settings.monitoring`).
        out_dir: folder for `drift.html` and `drift.json` (created if missing), usually a subfolder of
            `settings.reports_dir`.
        timestamp: when the current batch happened (the snapshot's time on dashboards); now if None.
        detailed: the preset's HTML table of every column's distributions (see `drift_report`).

    Returns:
        The decision with the per-column scores and the report paths.
    """
    cfg = settings.monitoring
    run = drift_report(reference, current, cfg, timestamp, detailed)
    scores = column_scores(run)
    thresholds = column_thresholds(cfg, list(scores))
    drifted = drifted_columns(run)
    share = len(drifted) / len(scores)
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path, json_path = out_dir / "drift.html", out_dir / "drift.json"
    run.save_html(str(html_path))
    result = DriftResult(
        share=share,
        detected=share >= cfg.drift_share_threshold,
        drifted_columns=drifted,
        n_columns=len(scores),
        html_path=html_path,
        json_path=json_path,
        scores=scores,
        thresholds=thresholds,
        snapshot=run,
    )
    json_path.write_text(json.dumps(result.to_dict(), indent=2))
    return result
