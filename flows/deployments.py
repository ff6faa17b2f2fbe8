"""The served mode: Prefect deployments with schedules and the drift event that triggers retraining.

Four deployments, served by one `prefect.serve` process (`recflow up`):

* `daily-ingest-validate-drift` (cron, daily): lands and validates new batches, checks the newest one
  for drift against the champion's training window, logs to the Evidently workspace and, on drift,
  emits the Prefect event `recflow.drift.detected`; without drift, emits `recflow.champion.aged` when
  the last retrain learned `monitoring.max_champion_age_days` (21) or more days ago;
* `weekly-retrain` (cron, weekly): retrains and gates the challenger;
* `daily-experiment-readout` (cron, daily): the readout of the running online experiment
  (`flows/readout.py`), when one runs;
* `retrain-on-drift`: the same retraining flow, started by a `DeploymentEventTrigger` (an automation)
  on `recflow.drift.detected` (reason `drift`) or `recflow.champion.aged` (reason `age`).

Flow parameters are plain strings (profile, home) so that runs started by schedules and automations
load the same settings as the serving process; the retraining deployments also carry
`require_online_win` (`recflow up --require-online-win`), so a challenger that passes the offline gate
is started as an online experiment instead of being promoted.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from prefect import flow, get_run_logger
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.events import DeploymentEventTrigger, emit_event

from flows.readout import daily_experiment_readout
from recflow.settings import Settings, load_settings

if TYPE_CHECKING:
    from flows.replay import ReplayOptions
    from models.config import PipelineConfig

DRIFT_EVENT = "recflow.drift.detected"
AGE_EVENT = "recflow.champion.aged"
DAILY_CRON = "0 2 * * *"
WEEKLY_CRON = "0 3 * * 1"
READOUT_CRON = "30 2 * * *"


def _settings(profile: str | None, home: str | None, require_online_win: bool = False) -> Settings:
    overrides: dict = {"home": Path(home)} if home else {}
    if require_online_win:  # False leaves the setting as the environment has it
        overrides["experiments"] = {"require_online_win": True}
    return load_settings(profile, **overrides)  # type: ignore[arg-type]


def data_window(settings: Settings, tag: str | None) -> tuple[date, date] | None:
    """The first and last day a stored model trained on (its metadata's `data_window`), or None."""
    from serving.package import model_info

    if tag is None:
        return None
    window = model_info(settings, tag)[1].get("data_window") or {}
    if not (window.get("start") and window.get("end")):
        return None
    return date.fromisoformat(window["start"][:10]), date.fromisoformat(window["end"][:10])


def champion_window(settings: Settings, days: list[date]) -> list[date]:
    """The validated days the serving champion trained on (from its metadata), else all but the newest."""
    from serving.package import champion_tag

    window = data_window(settings, champion_tag(settings))
    if window is not None:
        chosen = [d for d in days if window[0] <= d <= window[1]]
        if len(chosen) >= 2:
            return chosen
    return days[:-1]


def days_since_training(settings: Settings, day: date) -> int | None:
    """Days from the newest stored model's last training day to `day`: how long since the last retrain,
    promoted or not (None: no model with a data window in the store)."""
    from serving.package import latest_tag

    window = data_window(settings, latest_tag(settings))
    return None if window is None else (day - window[1]).days


# log_prints off: Feast serialises on-demand views with dill, which disassembles their functions with
# print() (see flows.pipeline.build_features); the flows log through get_run_logger instead
@flow(name="recflow-daily-monitoring", log_prints=False)
def daily_monitoring(profile: str | None = None, home: str | None = None, until: str | None = None) -> dict:
    """Land and validate new batches, check the newest for drift, emit the drift event when it alarms.

    Without an alarm, emits the age event when the newest stored model trained
    `monitoring.max_champion_age_days` or more days before the newest day (a retrain that lost its gate
    counts: the clock restarts with each retrain). The newest day's drift (against the champion's
    training window) and the champion's quality on it go to the Evidently workspace. `until` (an ISO
    day) lands only the days up to it: the live replay's clock (`flows.replay`); None lands whatever
    the source has.
    """
    from features.store import materialize, prepare_feature_store
    from flows.pipeline import land, validate
    from flows.policies import age_due
    from monitoring.drift import detect_drift
    from monitoring.frames import frames_for_days
    from monitoring.workspace import log_batch
    from recflow.data.batches import list_batches

    settings = _settings(profile, home)
    batches = land(settings, date.fromisoformat(until) if until else None)
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
    store = prepare_feature_store(settings)
    materialize(settings, store)  # today's histories reach the online store the service reads
    quality = champion_quality(settings, store, newest)
    log_batch(settings, drift, quality, timestamp=when, name=newest.isoformat())
    get_run_logger().info(
        "%s: %.0f%% of columns drifted (%s)",
        newest,
        100 * drift.share,
        ", ".join(drift.drifted_columns) or "none",
    )
    batch = {"prefect.resource.id": f"recflow.batch.{newest.isoformat()}", "prefect.resource.name": "batch"}
    age = days_since_training(settings, newest)
    if drift.detected:
        emit_event(
            event=DRIFT_EVENT,
            resource=batch,
            payload={
                "day": newest.isoformat(),
                "share": drift.share,
                "drifted_columns": drift.drifted_columns,
            },
        )
    elif age_due(age, settings.monitoring.max_champion_age_days):
        get_run_logger().info("%s: the last retrain learned up to %d days ago: retrain (age)", newest, age)
        emit_event(
            event=AGE_EVENT, resource=batch, payload={"day": newest.isoformat(), "days_since_training": age}
        )
    return {
        "validated": len(outcomes),
        "day": newest.isoformat(),
        "days_since_training": age,
        "drift": drift.to_dict(),
        "quality": quality.to_dict() if quality else None,
    }


def champion_quality(settings: Settings, store, day: date):
    """The serving champion's quality on `day` (its returning users, the day's events as feedback), or None.

    None when no champion serves yet or nobody came back that day.
    """
    from models.bundle import ModelBundle
    from monitoring.quality import day_quality
    from serving.package import champion_tag, model_info

    tag = champion_tag(settings)
    if tag is None:
        return None
    bundle = ModelBundle.load(model_info(settings, tag)[0])
    quality = day_quality(settings, store, bundle, day)
    return quality if quality.users else None


def champion_config(settings: Settings) -> PipelineConfig | None:
    """The serving champion's `models.config.PipelineConfig` (its searched hyperparameters), or None
    when no champion serves yet."""
    from models.config import PipelineConfig
    from serving.package import champion_tag, model_info

    tag = champion_tag(settings)
    if tag is None:
        return None
    searched = model_info(settings, tag)[1].get("hyperparameters")
    return None if searched is None else PipelineConfig.from_dict(searched)


@flow(name="recflow-retrain", log_prints=False)
def retrain(
    profile: str | None = None,
    home: str | None = None,
    reason: str = "manual",
    require_online_win: bool = False,
) -> dict:
    """Retrain on the validated store, then gate the challenger against the champion before promoting.

    A retrain for a reason in `settings.train.keep_tuning_on` (`age` by default) keeps the champion's
    searched hyperparameters (`models.pipeline.fit_pipeline`'s `tuned`). The gate compares hit rates on
    the newest validated day (held out from the challenger's training;
    the champion trained earlier) and on the golden day, fixed at the first promotion
    (`<home>/monitoring/golden.json`). The challenger stays in the model store either way. With
    `require_online_win` (or the setting), a challenger that passes starts an online experiment
    instead of being promoted (`flows.promotion.gate_and_promote`).
    """
    from features.store import prepare_feature_store
    from flows.promotion import gate_and_promote
    from models.train import train_models

    settings = _settings(profile, home, require_online_win)
    tuned = champion_config(settings) if reason in settings.train.keep_tuning_on else None
    trained = train_models(settings, prepare_feature_store(settings), verbose=0, tuned=tuned)
    result = gate_and_promote(settings, trained.bundle_path, {"retrain_reason": reason})
    get_run_logger().info("retrain (%s): %s", reason, result["reason"])
    return {"promoted": result["promoted"], "tag": result["tag"], "reason": result["reason"]}


def build_deployments(settings: Settings, schedules: bool = True) -> list:
    """The four deployments, parameterised with this process's profile and home (and, for retraining,
    whether a challenger must win online).

    `schedules=False` leaves out the cron schedules (the live replay, whose clock lands the days: a
    02:00 run on the wall clock would land every day of the source at once); the deployments still run
    on demand and the drift and age triggers still retrain.
    """

    def cron(expression: str) -> str | None:
        return expression if schedules else None

    params = {"profile": settings.profile, "home": str(settings.home.resolve())}
    retrain_params = {**params, "require_online_win": settings.experiments.require_online_win}
    on_drift = DeploymentEventTrigger(
        name="retrain when drift is detected",
        expect={DRIFT_EVENT},
        match={"prefect.resource.id": "recflow.batch.*"},
        parameters={**retrain_params, "reason": "drift"},
    )
    on_age = DeploymentEventTrigger(
        name="retrain when the last retrain is too old",
        expect={AGE_EVENT},
        match={"prefect.resource.id": "recflow.batch.*"},
        parameters={**retrain_params, "reason": "age"},
    )
    return [
        daily_monitoring.to_deployment(
            name="daily-ingest-validate-drift",
            cron=cron(DAILY_CRON),
            parameters=params,
            tags=["recflow", "daily"],
        ),
        retrain.to_deployment(
            name="weekly-retrain",
            cron=cron(WEEKLY_CRON),
            parameters={**retrain_params, "reason": "weekly"},
            tags=["recflow"],
        ),
        retrain.to_deployment(
            name="retrain-on-drift",
            triggers=[on_drift, on_age],
            parameters=retrain_params,
            tags=["recflow"],
            # one retraining at a time: alarms while it runs are dropped (it learns those days already)
            concurrency_limit=ConcurrencyLimitConfig(
                limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
            ),
        ),
        daily_experiment_readout.to_deployment(
            name="daily-experiment-readout",
            cron=cron(READOUT_CRON),
            parameters=params,
            tags=["recflow", "daily"],
        ),
    ]


def runner_command(settings: Settings, schedules: bool = True) -> list[str]:
    """The command of the process that serves the deployments (`python -m flows.deployments ...`)."""
    import sys

    command = [sys.executable, "-m", "flows.deployments", "--profile", settings.profile]
    command += ["--home", str(settings.home.resolve())]
    command += ["--require-online-win"] if settings.experiments.require_online_win else []
    return command + ([] if schedules else ["--no-schedules"])


def main(argv: list[str] | None = None) -> tuple[Settings, bool]:
    """The settings of the deployments' process from its command line (`runner_command`), and whether
    its deployments keep their cron schedules."""
    import argparse

    parser = argparse.ArgumentParser(description="Serve recflow's Prefect deployments (PREFECT_API_URL).")
    parser.add_argument("--profile", default=None)
    parser.add_argument("--home", default=None)
    parser.add_argument("--require-online-win", action="store_true", help="experiments.require_online_win")
    parser.add_argument("--no-schedules", action="store_true", help="runs on demand and by trigger only")
    args = parser.parse_args(argv)
    return _settings(args.profile, args.home, args.require_online_win), not args.no_schedules


def serve_deployments(settings: Settings, schedules: bool = True) -> None:
    """Register the deployments with the Prefect server (PREFECT_API_URL) and run them as they come due."""
    from prefect import serve

    serve(*build_deployments(settings, schedules))


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


def platform_up(
    settings: Settings,
    prefect_port: int = 4200,
    evidently_port: int = 8000,
    replay: ReplayOptions | None = None,
) -> int:
    """Start the Prefect server, the BentoML service and the Evidently UI, then serve the deployments.

    Every process starts in its own process group (`flows.lifecycle.Supervisor`); SIGINT or SIGTERM
    stops them all within 10 s and frees their ports. State a crashed run left behind is cleaned first
    (`flows.lifecycle.clean_stale`). With `replay` (a `flows.replay.ReplayOptions`), the next day's
    batch lands every few seconds once everything is up (`flows.replay.replay_days`).

    Blocks until interrupted or until a process it started exits. Returns the exit code.
    """
    import os
    import signal
    import subprocess
    import sys
    import time

    from flows.lifecycle import Stop, Supervisor, clean_stale, stop_on_signals
    from monitoring.workspace import open_project, workspace_dir
    from serving.package import champion_tag, latest_tag, promote
    from serving.server import serve_command, server_env

    serving_port = settings.serving.port
    for line in clean_stale(settings.home, [prefect_port, serving_port, evidently_port]):
        print(f"stale state: {line}")
    env = {**os.environ, **prefect_env(settings, prefect_port)}
    env.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", "2")  # the runner starts a due run within 2 s, not 10
    Path(env["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    open_project(settings)  # the workspace and its dashboards exist before the UI opens
    if champion_tag(settings) is None and (tag := latest_tag(settings)) is not None:
        promote(settings, tag)  # as `recflow serve` does: the newest package serves
    supervisor = Supervisor(settings.home)
    prefect = [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1"]
    evidently = [
        str(Path(sys.executable).parent / "evidently"),
        "ui",
        "--workspace",
        str(workspace_dir(settings)),
        "--port",
        str(evidently_port),
    ]
    runner = runner_command(settings, schedules=replay is None)  # a replay's days come from its clock
    logs = settings.home.resolve() / "logs"  # the children's output: the terminal keeps the platform's lines
    logs.mkdir(parents=True, exist_ok=True)

    def start(name: str, command: list[str], child_env: dict[str, str], port: int | None = None) -> None:
        with (logs / f"{name}.log").open("ab") as log:
            supervisor.start(name, command, child_env, port, stdout=log, stderr=subprocess.STDOUT)

    with stop_on_signals():
        try:
            start("prefect", [*prefect, "--port", str(prefect_port)], env, prefect_port)
            wait_for_http(f"http://127.0.0.1:{prefect_port}/api/health")
            # the service starts without a model too: live, not ready, until a champion is promoted
            serving_env = {**server_env(settings), **prefect_env(settings, prefect_port)}
            start("bentoml", serve_command(settings), serving_env, serving_port)
            start("evidently", evidently, env, evidently_port)
            start("deployments", runner, env)
            database = "PostgreSQL" if settings.prefect_database_url else "SQLite"
            print(f"Prefect UI       http://127.0.0.1:{prefect_port}  (database: {database})")
            print(f"recommendations  http://{settings.serving.host}:{serving_port}/recommend")
            print(f"Evidently UI     http://127.0.0.1:{evidently_port}")
            crons = (
                "daily, weekly retrain (no schedules: the replay lands the days)"
                if replay
                else f"daily ({DAILY_CRON}), weekly retrain ({WEEKLY_CRON})"
            )
            print(f"deployments      {crons}, retrain on {DRIFT_EVENT}")
            print(f"logs             {logs}/{{prefect,bentoml,evidently,deployments}}.log", flush=True)
            if replay is not None:
                from flows.replay import replay_days

                url = f"http://{settings.serving.host}:{serving_port}"
                replay_days(settings, replay, url, prefect_port)
            while not supervisor.exited():
                time.sleep(0.5)
            print(f"stopping: a process exited ({supervisor.exited()})")
            return 1
        except Stop as signal_name:
            print(f"{signal_name}: stopping the platform", flush=True)
            return 0
        finally:
            for name in ("SIGTERM", "SIGINT"):  # a second signal must not cut the stopping short
                signal.signal(getattr(signal, name), signal.SIG_IGN)
            left = supervisor.stop()
            if left:
                print(f"still running after 10 s: {', '.join(left)}")


if __name__ == "__main__":
    serve_deployments(*main())
