"""The served mode: Prefect deployments with schedules and the drift event that triggers retraining.

Four deployments, served by one `prefect.serve` process (`recflow up`):

* `daily-ingest-validate-drift` (cron, daily): lands and validates new batches, checks the newest one
  for drift against the champion's training window, logs to the Evidently workspace and, on drift,
  emits the Prefect event `recflow.drift.detected`;
* `weekly-retrain` (cron, weekly): retrains and gates the challenger;
* `daily-experiment-readout` (cron, daily): the readout of the running online experiment
  (`flows/readout.py`), when one runs;
* `retrain-on-drift`: the same retraining flow, started by a `DeploymentEventTrigger` (an automation)
  on `recflow.drift.detected`.

Flow parameters are plain strings (profile, home) so that runs started by schedules and automations
load the same settings as the serving process.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.events import DeploymentEventTrigger, emit_event

from flows.readout import daily_experiment_readout
from recflow.settings import Settings, load_settings

DRIFT_EVENT = "recflow.drift.detected"
DAILY_CRON = "0 2 * * *"
WEEKLY_CRON = "0 3 * * 1"
READOUT_CRON = "30 2 * * *"


def _settings(profile: str | None, home: str | None) -> Settings:
    overrides = {"home": Path(home)} if home else {}
    return load_settings(profile, **overrides)  # type: ignore[arg-type]


def champion_window(settings: Settings, days: list[date]) -> list[date]:
    """The validated days the serving champion trained on (from its metadata), else all but the newest."""
    from serving.package import champion_tag, model_info

    tag = champion_tag(settings)
    if tag is not None:
        window = model_info(settings, tag)[1].get("data_window") or {}
        if window.get("start") and window.get("end"):
            start, end = date.fromisoformat(window["start"][:10]), date.fromisoformat(window["end"][:10])
            chosen = [d for d in days if start <= d <= end]
            if len(chosen) >= 2:
                return chosen
    return days[:-1]


@flow(name="recflow-daily-monitoring", log_prints=True)
def daily_monitoring(profile: str | None = None, home: str | None = None) -> dict:
    """Land and validate new batches, check the newest for drift, emit the drift event when it alarms."""
    from flows.pipeline import land, validate
    from monitoring.drift import detect_drift
    from monitoring.frames import frames_for_days
    from monitoring.workspace import log_batch
    from recflow.data.batches import list_batches

    settings = _settings(profile, home)
    batches = land(settings)
    validated = {b.day for b in list_batches(settings.validated_dir)}
    outcomes, _docs = validate(settings, [b for b in batches if b.day not in validated])
    days = [b.day for b in list_batches(settings.validated_dir)]
    if len(days) < 3:
        return {"validated": len(outcomes), "drift": None, "reason": f"only {len(days)} validated day(s)"}
    newest = days[-1]
    reference, current = frames_for_days(settings, champion_window(settings, days), [newest])
    when = datetime.combine(newest, datetime.min.time(), tzinfo=UTC)
    drift = detect_drift(
        reference, current, settings, settings.reports_dir / "drift" / newest.isoformat(), when
    )
    log_batch(settings, drift, timestamp=when, name=newest.isoformat())
    print(f"{newest}: {drift.share:.0%} of columns drifted ({', '.join(drift.drifted_columns) or 'none'})")
    if drift.detected:
        emit_event(
            event=DRIFT_EVENT,
            resource={
                "prefect.resource.id": f"recflow.batch.{newest.isoformat()}",
                "prefect.resource.name": "batch",
            },
            payload={
                "day": newest.isoformat(),
                "share": drift.share,
                "drifted_columns": drift.drifted_columns,
            },
        )
    return {"validated": len(outcomes), "day": newest.isoformat(), "drift": drift.to_dict()}


@flow(name="recflow-retrain", log_prints=True)
def retrain(profile: str | None = None, home: str | None = None, reason: str = "manual") -> dict:
    """Retrain on the validated store, then gate the challenger against the champion before promoting.

    The gate compares hit rates on the newest validated day (held out from the challenger's training;
    the champion trained earlier) and on the golden day, fixed at the first promotion
    (`<home>/monitoring/golden.json`). The challenger stays in the model store either way.
    """
    from features.store import prepare_feature_store
    from flows.promotion import gate_and_promote
    from models.train import train_models

    settings = _settings(profile, home)
    trained = train_models(settings, prepare_feature_store(settings), verbose=0)
    result = gate_and_promote(settings, trained.bundle_path, {"retrain_reason": reason})
    get_run_logger().info("retrain (%s): %s", reason, result["reason"])
    return {"promoted": result["promoted"], "tag": result["tag"], "reason": result["reason"]}


def build_deployments(settings: Settings) -> list:
    """The four deployments, parameterised with this process's profile and home."""
    params = {"profile": settings.profile, "home": str(settings.home.resolve())}
    on_drift = DeploymentEventTrigger(
        name="retrain when drift is detected",
        expect={DRIFT_EVENT},
        match={"prefect.resource.id": "recflow.batch.*"},
        parameters={**params, "reason": "drift"},
    )
    return [
        daily_monitoring.to_deployment(
            name="daily-ingest-validate-drift", cron=DAILY_CRON, parameters=params, tags=["recflow", "daily"]
        ),
        retrain.to_deployment(
            name="weekly-retrain",
            cron=WEEKLY_CRON,
            parameters={**params, "reason": "weekly"},
            tags=["recflow"],
        ),
        retrain.to_deployment(
            name="retrain-on-drift", triggers=[on_drift], parameters=params, tags=["recflow"]
        ),
        daily_experiment_readout.to_deployment(
            name="daily-experiment-readout", cron=READOUT_CRON, parameters=params, tags=["recflow", "daily"]
        ),
    ]


def serve_deployments(settings: Settings) -> None:
    """Register the deployments with the Prefect server (PREFECT_API_URL) and run them as they come due."""
    from prefect import serve

    serve(*build_deployments(settings))


# ---------------------------------------------------------------- `recflow up`


def prefect_env(settings: Settings, port: int) -> dict[str, str]:
    """Environment for the Prefect server and its clients: API URL, database (PostgreSQL when set)."""
    env = {
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_HOME": str((settings.home / "prefect").resolve()),
    }
    if settings.prefect_database_url is not None:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = settings.prefect_database_url.get_secret_value()
    return env


def wait_for_http(url: str, timeout: float = 120.0) -> None:
    """Poll `url` until it answers 200.

    Raises:
        TimeoutError: if it does not within `timeout` seconds.
    """
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s")


def platform_up(settings: Settings, prefect_port: int = 4200, evidently_port: int = 8000) -> None:
    """Start the Prefect server, the BentoML service and the Evidently UI, then serve the deployments.

    Blocks until interrupted; stops what it started on the way out.
    """
    import os
    import subprocess
    import sys

    from monitoring.workspace import open_project, workspace_dir

    env = {**os.environ, **prefect_env(settings, prefect_port)}
    Path(env["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    open_project(settings)  # the workspace and its dashboards exist before the UI opens
    home = str(settings.home.resolve())
    bin_dir = Path(sys.executable).parent
    commands = {
        "prefect": [
            str(bin_dir / "prefect"),
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(prefect_port),
        ],
        "bentoml": [
            sys.executable,
            "-m",
            "recflow.cli",
            "serve",
            "--profile",
            settings.profile,
            "--home",
            home,
        ],
        "evidently": [
            "evidently",
            "ui",
            "--workspace",
            str(workspace_dir(settings)),
            "--port",
            str(evidently_port),
        ],
    }
    processes = [subprocess.Popen(commands["prefect"], env=env)]
    try:
        wait_for_http(f"http://127.0.0.1:{prefect_port}/api/health")
        processes += [subprocess.Popen(commands[n], env=env) for n in ("bentoml", "evidently")]
        database = "PostgreSQL" if settings.prefect_database_url else "SQLite"
        print(f"Prefect UI       http://127.0.0.1:{prefect_port}  (database: {database})")
        print(f"recommendations  http://{settings.serving.host}:{settings.serving.port}/recommend")
        print(f"Evidently UI     http://127.0.0.1:{evidently_port}")
        print(
            f"deployments      daily ({DAILY_CRON}), weekly retrain ({WEEKLY_CRON}), retrain on {DRIFT_EVENT}"
        )
        serve_cmd = [sys.executable, "-m", "flows.deployments", "--profile", settings.profile, "--home", home]
        subprocess.run(serve_cmd, env=env, check=False)
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Serve recflow's Prefect deployments (PREFECT_API_URL).")
    parser.add_argument("--profile", default=None)
    parser.add_argument("--home", default=None)
    args = parser.parse_args()
    serve_deployments(_settings(args.profile, args.home))
