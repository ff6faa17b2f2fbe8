"""The main flow, stage by stage: land -> validate -> features -> train -> package -> drift check.

`recflow run` (and `make run`) is one run of `recflow_pipeline`. Without `PREFECT_API_URL` Prefect starts
a temporary local server for the run; with it, the run shows up in that server's UI.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from rich.console import Console
from rich.table import Table

from recflow.data.batches import Batch
from recflow.settings import Settings

console = Console(stderr=True)


@dataclass
class StageResult:
    """One line of the run summary."""

    stage: str
    result: str
    where: str = ""
    seconds: float = 0.0


@dataclass
class RunReport:
    """Everything a run produced, as handed from stage to stage and written to the summary."""

    status: str = "running"
    stages: list[StageResult] = field(default_factory=list)
    summary: dict = field(default_factory=dict)

    def add(self, stage: str, result: str, where: str = "", seconds: float = 0.0) -> None:
        self.stages.append(StageResult(stage, result, where, round(seconds, 1)))
        console.print(f"[bold green]✓[/] {stage}: {result}" + (f"  [dim]{where}[/]" if where else ""))


# ---------------------------------------------------------------- stages (tasks)


@task(name="land raw batches", retries=2, retry_delay_seconds=5)
def land(settings: Settings, until: date | None = None) -> list[Batch]:
    """Write the daily raw batches that are not on disk yet, up to `until` (raw data is never modified)."""
    from recflow.data.sources import land_batches

    return land_batches(settings, until)


@task(name="validate batches")
def validate(settings: Settings, batches: list[Batch]) -> tuple[list, Path]:
    """Great Expectations on every batch: valid rows to the validated store, the rest to quarantine."""
    from features.validation import Validator, validate_batches

    validator = Validator(settings)
    outcomes = validate_batches(validator, batches, settings)
    for outcome in outcomes:
        if not outcome.success:
            get_run_logger().error("batch %s quarantined: %s", outcome.day, outcome.reason)
    return outcomes, validator.build_docs()


# log_prints off: Feast serialises on-demand views with dill, which disassembles their functions with
# print() while capturing sys.stdout; the flow's log_prints would log each bytecode line instead
@task(name="build features", cache_policy=NO_CACHE, log_prints=False)
def build_features(settings: Settings):
    """Feast: compute feature tables from validated data, apply the repo, materialize to the online store."""
    from features.store import materialize, prepare_feature_store

    store = prepare_feature_store(settings)
    materialize(settings, store)
    return store


@task(name="train models", cache_policy=NO_CACHE)  # the Feast store is no cache key
def train(settings: Settings, store):
    """The model family (two-tower, co-occurrence, ranker): chosen and reported on the held-out days, then
    refit on everything; the report compares it with popularity on users no choice saw."""
    from models.train import train_models

    return train_models(settings, store, progress=lambda line: console.print(f"  [dim]{line}[/]"))


@task(name="package and promote")
def package(settings: Settings, trained) -> dict:
    """Save the bundle in the BentoML model store, promote it only if it beats the champion, build the bento."""
    from flows.promotion import gate_and_promote
    from serving.package import build_bento

    run = {"pipeline": "recflow-pipeline", "data_source": settings.data.source, "seed": settings.seed}
    result = gate_and_promote(settings, trained.bundle_path, run)
    return result | {"bento": build_bento(settings)}


@task(name="check drift")
def check_drift(settings: Settings, training_days: list[date], newest_day: date):
    """Evidently: the training window (reference) against the newest validated batch (current)."""
    from monitoring.drift import detect_drift
    from monitoring.frames import frames_for_days

    reference, current = frames_for_days(settings, training_days, [newest_day])
    return detect_drift(reference, current, settings, settings.reports_dir)


@task(name="log dashboards", cache_policy=NO_CACHE)  # the Feast store is no cache key
def log_dashboards(settings: Settings, store, training_days: list[date], days: list[date]) -> list:
    """Evidently: a drift and a quality snapshot per day, so the dashboards show the whole history."""
    from models.bundle import ModelBundle
    from monitoring.history import log_history
    from serving.package import champion_tag, model_info

    champion = ModelBundle.load(model_info(settings, champion_tag(settings))[0])
    t0, k = time.perf_counter(), settings.train.k

    def progress(snapshot) -> None:  # a line every 5 days and at the last one
        done = days.index(snapshot.day) + 1
        if done % 5 and done != len(days):
            return
        quality = f", NDCG@{k} {snapshot.quality.ndcg:.4f}" if snapshot.quality is not None else ""
        console.print(
            f"  dashboards: {done}/{len(days)} days logged ({snapshot.day}: drift "
            f"{snapshot.drift.share:.0%}{quality}) ({time.perf_counter() - t0:.0f}s)"
        )

    return log_history(settings, store, champion, training_days, days, progress)


# ---------------------------------------------------------------- the flow


@flow(name="recflow-pipeline", log_prints=True)
def recflow_pipeline(settings: Settings) -> dict:
    """Run every stage once, in order; stop before training if a batch was quarantined."""
    report = RunReport()
    t0 = time.perf_counter()

    t = time.perf_counter()
    batches = land(settings)
    report.add(
        "land",
        f"{len(batches)} daily batches ({settings.data.source})",
        str(settings.raw_dir),
        time.perf_counter() - t,
    )

    t = time.perf_counter()
    outcomes, docs = validate(settings, batches)
    rows_in = sum(o.rows_in for o in outcomes)
    rows_bad = sum(o.rows_quarantined for o in outcomes)
    failed = [o for o in outcomes if not o.success]
    report.summary["validation"] = {
        "success": not failed,
        "batches": len(outcomes),
        "batches_quarantined": [o.day for o in failed],
        "batches_partial": [o.day for o in outcomes if o.status == "partial"],
        "rows_in": rows_in,
        "rows_valid": sum(o.rows_valid for o in outcomes),
        "rows_quarantined": rows_bad,
        "suite_version": outcomes[0].suite_version if outcomes else None,
        "data_docs": str(docs),
        "quarantine": str(settings.quarantine_dir),
        "failures": {o.day: o.reason for o in outcomes if o.reason},
    }
    verdict = f"{len(outcomes) - len(failed)}/{len(outcomes)} batches valid, {rows_bad} of {rows_in} rows quarantined"
    report.add("validate", verdict, str(docs), time.perf_counter() - t)
    if failed:
        report.status = "failed"
        reasons = "; ".join(f"{o.day}: {o.reason}" for o in failed)
        report.summary["error"] = f"validation failed, nothing trained or promoted. {reasons}"
        console.print(f"[bold red]✗ stopped before training[/]: {reasons}")
        console.print(f"  quarantined data and reports: {settings.quarantine_dir}")
        return _finish(report, settings, t0)

    t = time.perf_counter()
    store = build_features(settings)
    report.add(
        "features",
        "Feast repo applied, online store materialized",
        str(settings.feature_repo_dir),
        time.perf_counter() - t,
    )

    t = time.perf_counter()
    trained = train(settings, store)
    m, p = trained.metrics["model"], trained.metrics["popularity"]
    k = settings.train.k
    report.summary["metrics"] = trained.metrics
    report.summary["stages_served"] = trained.stages
    report.summary["training"] = {
        "device": trained.device,
        "seconds": round(trained.seconds, 1),
        "bundle": str(trained.bundle_path),
    }
    ranker = "with ranker" if trained.stages.get("ranker", {}).get("serving") else "without ranker"
    report.add(
        "train",
        f"Recall@{k} {m[f'recall@{k}']:.4f} vs popularity {p[f'recall@{k}']:.4f}; "
        f"NDCG@{k} {m[f'ndcg@{k}']:.4f} vs {p[f'ndcg@{k}']:.4f} ({ranker}, on {trained.device})",
        str(trained.bundle_path),
        time.perf_counter() - t,
    )

    t = time.perf_counter()
    packaged = package(settings, trained)
    report.summary["bento"] = packaged["bento"]
    report.summary["model"] = {k: packaged[k] for k in ("tag", "promoted", "reason", "gate")}
    promoted = "promoted to champion" if packaged["promoted"] else f"NOT promoted ({packaged['reason']})"
    report.add(
        "package",
        f"{packaged['tag']} {promoted}; bento {packaged['bento']}",
        "make serve",
        time.perf_counter() - t,
    )

    t = time.perf_counter()
    days = [b.day for b in batches]
    training_days = days[: len(days) - settings.data.holdout_days]
    drift = check_drift(settings, training_days, days[-1])
    report.summary["drift"] = {
        "share": drift.share,
        "detected": drift.detected,
        "drifted_columns": list(drift.drifted_columns),
        "report": str(drift.html_path),
    }
    report.add(
        "drift",
        f"{drift.share:.0%} of columns drifted, detected={drift.detected}",
        str(drift.html_path),
        time.perf_counter() - t,
    )

    t = time.perf_counter()
    newest = settings.monitoring.history_days
    logged = log_dashboards(settings, store, training_days, days[-newest:] if newest else days)
    alarms = [s.day.isoformat() for s in logged if s.drift.detected]
    report.summary["dashboards"] = {
        "workspace": str(settings.evidently_dir),
        "days": len(logged),
        "quality_days": sum(s.quality is not None for s in logged),
        "drift_alarms": alarms,
    }
    report.add(
        "dashboards",
        f"{len(logged)} days of drift and quality snapshots, {len(alarms)} drift alarm(s)",
        str(settings.evidently_dir),
        time.perf_counter() - t,
    )
    report.status = "ok"
    return _finish(report, settings, t0)


def _finish(report: RunReport, settings: Settings, t0: float) -> dict:
    report.summary["status"] = report.status
    report.summary["seconds"] = round(time.perf_counter() - t0, 1)
    report.summary["stages"] = [s.__dict__ for s in report.stages]
    report.summary.setdefault("validation", {"success": False})
    return report.summary


def print_summary(summary: dict, settings: Settings) -> None:
    """The closing table: stage, result, where to look."""
    table = Table(title=f"recflow run: {summary['status']} in {summary['seconds']} s")
    for col in ("stage", "result", "where to look", "s"):
        table.add_column(col, overflow="fold")
    for s in summary["stages"]:
        table.add_row(s["stage"], s["result"], s["where"], f"{s['seconds']:.1f}")
    if summary["status"] == "ok":
        table.add_row(
            "serve",
            "make serve",
            f"curl -X POST http://{settings.serving.host}:{settings.serving.port}/recommend",
            "",
        )
    Console(width=max(Console().width, 150)).print(table)


def run_pipeline(settings: Settings, summary_path: Path | None = None) -> dict:
    """Entry point of `recflow run`: one flow run, the closing table, the JSON summary."""
    summary = recflow_pipeline(settings)
    print_summary(summary, settings)
    if summary_path is not None:
        summary_path.parent.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(json.dumps(summary, indent=2, default=str))
        console.print(f"summary written to {summary_path}")
    return summary
