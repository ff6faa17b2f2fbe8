"""Calibrating the drift thresholds: per-column distances on simulated days with and without drift.

`recflow bench drift-calibration` (or `calibration_table` directly) generates a synthetic history,
takes the first half as the training window and scores every later day against it. On a history
without injected drift every score is day-to-day noise; the thresholds must sit above all of them.
On a history with `data.drift_day` the days from the drift day on must alarm.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from monitoring.drift import column_scores, column_thresholds, drift_report, drifted_columns
from monitoring.frames import frames_for_days
from recflow.data.batches import list_batches
from recflow.settings import Settings


def land_validated(settings: Settings) -> None:
    """Land synthetic raw batches and copy them into the validated store (synthetic data is valid)."""
    from recflow.data.sources import land_batches

    for batch in land_batches(settings):
        target = settings.validated_dir / batch.path.name
        if not target.exists():
            shutil.copytree(batch.path, target)


def calibration_table(settings: Settings, train_share: float = 0.5) -> pd.DataFrame:
    """Drift distance of every monitored column for each day after the training window.

    Args:
        settings: settings of a synthetic history (`data.drift_day` set or not); batches are landed
            under `settings.home` if missing.
        train_share: share of the days used as the training window (reference).

    Returns:
        One row per checked day: `day`, `drift` (whether the generator injected drift that day),
        one column per monitored feature (its distance), `drifted` (columns over threshold) and `share`.
    """
    land_validated(settings)
    days = [b.day for b in list_batches(settings.validated_dir)]
    n_train = max(2, int(len(days) * train_share))
    train, later = days[:n_train], days[n_train:]
    rows = []
    for i, day in enumerate(later, start=n_train):
        reference, current = frames_for_days(settings, train, [day])
        run = drift_report(reference, current, settings.monitoring)
        scores, drifted = column_scores(run), drifted_columns(run)
        drift_day = settings.data.drift_day
        rows.append(
            {
                "day": i,
                "drift": drift_day is not None and i >= drift_day,
                **scores,
                "drifted": len(drifted),
                "share": len(drifted) / len(scores),
            }
        )
    return pd.DataFrame(rows)


def calibration_summary(tables: dict[str, pd.DataFrame], settings: Settings) -> dict:
    """Largest no-drift and smallest drift distance per column, next to the configured thresholds."""
    frames = [t.assign(run=name) for name, t in tables.items()]
    df = pd.concat(frames, ignore_index=True)
    columns = [c for c in df.columns if c not in {"day", "drift", "drifted", "share", "run"}]
    thresholds = column_thresholds(settings.monitoring, columns)
    quiet, drifted = df[~df["drift"]], df[df["drift"]]
    return {
        "columns": {
            c: {
                "max_no_drift": float(quiet[c].max()) if len(quiet) else None,
                "min_drift": float(drifted[c].min()) if len(drifted) else None,
                "threshold": thresholds[c],
            }
            for c in columns
        },
        "max_share_no_drift": float(quiet["share"].max()) if len(quiet) else None,
        "min_share_drift": float(drifted["share"].min()) if len(drifted) else None,
        "drift_share_threshold": settings.monitoring.drift_share_threshold,
        "false_alarms": int((quiet["share"] >= settings.monitoring.drift_share_threshold).sum()),
        "missed_drift_days": int((drifted["share"] < settings.monitoring.drift_share_threshold).sum()),
    }


def write_calibration(summary: dict, tables: dict[str, pd.DataFrame], path: Path) -> None:
    """Write the summary and the per-day tables as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"summary": summary, "days": {k: t.to_dict(orient="records") for k, t in tables.items()}}
    path.write_text(json.dumps(payload, indent=2, default=str))


def calibration_markdown(summary: dict, command: str) -> str:
    """The calibration figures as a Markdown table, with the command that measured them."""
    lines = [
        f"Measured by `{command}`.",
        "",
        "| column | largest distance, no-drift days | smallest distance, drift days | threshold |",
        "|---|---|---|---|",
    ]
    for col, row in summary["columns"].items():
        cells = [
            f"{row[k]:.3f}" if row[k] is not None else "-" for k in ("max_no_drift", "min_drift", "threshold")
        ]
        lines.append(f"| {col} | {' | '.join(cells)} |")
    lines += [
        "",
        f"Drifted-column share: at most {summary['max_share_no_drift']:.3f} on no-drift days, at least "
        f"{summary['min_share_drift']:.3f} on drift days; alarm at {summary['drift_share_threshold']:.3f}. "
        f"False alarms: {summary['false_alarms']}; missed drift days: {summary['missed_drift_days']}.",
    ]
    return "\n".join(lines) + "\n"


def run_calibration(settings: Settings, json_out: Path, drift_day: int, command: str = "") -> dict:
    """Score a no-drift history and one with drift from `drift_day`, print and write the figures.

    Writes `json_out` (summary + per-day tables) and a Markdown table beside it (`.md`).
    """
    from rich.console import Console
    from rich.table import Table

    base = settings.model_dump()
    tables = {}
    for name, day in (("no_drift", None), ("drift", drift_day)):
        cfg = settings.model_validate(
            {**base, "home": settings.home / "calibration" / name, "data": {**base["data"], "drift_day": day}}
        )
        tables[name] = calibration_table(cfg)
    summary = calibration_summary(tables, settings)
    write_calibration(summary, tables, json_out)
    json_out.with_suffix(".md").write_text(calibration_markdown(summary, command))
    table = Table(title=f"Drift calibration ({settings.profile} profile, drift from day {drift_day})")
    for header in ("column", "max no-drift", "min drift", "threshold"):
        table.add_column(header)
    for col, row in summary["columns"].items():
        table.add_row(col, *(f"{row[k]:.3f}" if row[k] is not None else "-" for k in row))
    Console().print(table)
    print(f"false alarms: {summary['false_alarms']}, missed drift days: {summary['missed_drift_days']}")
    return summary
