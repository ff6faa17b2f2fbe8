"""The experiment readout as a Prefect flow: read the experiment store, compute, write JSON and a chart.

Run on demand with `recflow experiment readout --json OUT`, and daily by the `daily-experiment-readout`
deployment (`recflow up`); the figures are defined in `monitoring/experiment_readout.py`, and each
readout is also logged to the Evidently workspace's `recflow` project.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from recflow.settings import Settings


@task(retries=2, retry_delay_seconds=5)
def read_experiment(settings: Settings, experiment_id: str | None) -> tuple[Any, dict]:
    """The experiment (the running or last one when no id is given) and its logs."""
    from monitoring.experiment_readout import read_logs
    from recflow.experiments import ExperimentStore, experiments_table

    store = ExperimentStore(settings)
    if experiment_id is None:
        experiment = store.latest()
    else:
        from recflow.experiments import Experiment

        with store.engine.connect() as db:
            row = db.execute(
                experiments_table.select().where(experiments_table.c.id == experiment_id)
            ).first()
        experiment = Experiment(**row._mapping) if row else None
    if experiment is None:
        raise ValueError(
            f"No experiment {experiment_id or ''} in the store: start one with `recflow experiment start`."
        )
    return experiment, read_logs(store, experiment.id)


@task
def compute_readout(settings: Settings, experiment, logs: dict, alpha: float) -> dict:
    from monitoring.experiment_readout import catalogue_prices, readout

    return readout(experiment, logs, catalogue_prices(settings.validated_dir), alpha=alpha)


@task
def write_readout(result: dict, json_out: Path) -> Path:
    from monitoring.experiment_readout import write_chart

    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(result, indent=2))
    chart = json_out.with_suffix(".png")
    write_chart(result, chart)
    return chart


@task
def log_to_evidently(settings: Settings, result: dict) -> str | None:
    from monitoring.experiment_readout import log_experiment

    return log_experiment(settings, result)


@flow(name="experiment-readout")
def experiment_readout(
    settings: Settings, json_out: Path, experiment_id: str | None = None, alpha: float = 0.05
) -> dict:
    """Per-variant users, impressions, CTR, conversion and revenue with intervals, tests, guardrails, winner."""
    experiment, logs = read_experiment(settings, experiment_id)
    result = compute_readout(settings, experiment, logs, alpha)
    chart = write_readout(result, json_out)
    result["evidently_snapshot"] = log_to_evidently(settings, result)
    get_run_logger().info(
        "experiment %s: winner %s; %s and %s", experiment.id, result["winner"], json_out, chart
    )
    return result


@flow(name="recflow-daily-experiment-readout", log_prints=True)
def daily_experiment_readout(profile: str | None = None, home: str | None = None) -> dict:
    """The daily readout of the running experiment, to `<home>/reports/experiments/<id>/<date>.json`."""
    from datetime import UTC, datetime

    from recflow.experiments import ExperimentStore
    from recflow.settings import load_settings

    settings = load_settings(profile, **({"home": Path(home)} if home else {}))  # type: ignore[arg-type]
    running = ExperimentStore(settings).active()
    if running is None:
        print("No experiment is running.")
        return {"experiment": None}
    day = datetime.now(UTC).date().isoformat()
    result = experiment_readout(
        settings, settings.reports_dir / "experiments" / running.id / f"{day}.json", running.id
    )
    print(f"experiment {running.id}: winner {result['winner']}")
    return {"experiment": running.id, "winner": result["winner"]}
