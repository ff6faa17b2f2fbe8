"""The live replay of `recflow up --replay`: a day's batch lands every few seconds and the loop closes.

Once the platform is up (`flows.deployments.platform_up`), `replay_days`:

1. warms up: runs the daily deployment over the first `warmup_days` days of the source (land,
   validate, features), then the weekly-retrain deployment once, which promotes the first champion;
2. every `day_seconds` lands the next day: a run of the daily deployment on the Prefect server with
   `until=<day>` (the replay's clock), exactly the run the 02:00 schedule starts. It validates the
   day, checks its drift against the champion's training window, logs the drift and the champion's
   quality on that day to the Evidently workspace, and on an alarm emits `recflow.drift.detected`,
   whose trigger runs the retrain-on-drift deployment; its gate promotes into the running service;
3. prints one line per day: the day, the drift share, the alarm, the model serving (`GET /metadata`).

The replay's world lives in its own home (`<home>/replay`, see `replay_settings`): the synthetic shop
with drift from `drift_day` by default, or any `--data` source. Its settings reach every process
through `RECFLOW_*` environment variables, so flow runs started by the runner or by the drift trigger
read the same world. A restart continues from the next day not yet landed; delete the folder to
start over.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from recflow.settings import Settings, load_settings

DAILY = "recflow-daily-monitoring/daily-ingest-validate-drift"
WEEKLY = "recflow-retrain/weekly-retrain"


@dataclass(frozen=True)
class ReplayOptions:
    """How the replay runs.

    Attributes:
        day_seconds: seconds between two landed days (a day whose flow run takes longer lands the
            next one as soon as it completes).
        drift_day: first drifted day (0-based) of the synthetic shop; ignored for other sources.
        data: the data source (`synthetic`, `amazon:PATH`, `completejourney[:DIR]`).
        warmup_days: days landed before the first champion is trained.
        holdout_days: days a retraining holds out for its validation package and the gate; one, so a
            challenger trained after an alarm has learned the days before it (as `recflow simulate`).
    """

    day_seconds: float = 20.0
    drift_day: int = 10
    data: str = "synthetic"
    warmup_days: int = 7
    holdout_days: int = 1


def replay_environment(settings: Settings, options: ReplayOptions) -> dict[str, str]:
    """The `RECFLOW_*` variables that make every process of the platform read the replay's world."""
    env = {
        "RECFLOW_HOME": str((settings.home / "replay").resolve()),
        "RECFLOW_PROFILE": settings.profile,
        "RECFLOW_DATA__SOURCE": options.data,
        "RECFLOW_DATA__HOLDOUT_DAYS": str(options.holdout_days),
    }
    if options.data == "synthetic":
        env["RECFLOW_DATA__DRIFT_DAY"] = str(options.drift_day)
    return env


def replay_settings(settings: Settings, options: ReplayOptions) -> Settings:
    """The replay's settings: home `<home>/replay`, its data source, drift day and holdout."""
    data: dict = {"source": options.data, "holdout_days": options.holdout_days}
    if options.data == "synthetic":
        data["drift_day"] = options.drift_day
    return load_settings(settings.profile, home=settings.home / "replay", data=data)


def _wait_for_deployments(names: list[str], timeout: float = 300.0) -> None:
    """Block until the runner has registered `names` with the server."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        for name in names:
            while True:
                try:
                    client.read_deployment_by_name(name)
                    break
                except ObjectNotFound:
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"deployment {name!r} was not registered within {timeout:.0f}s"
                        ) from None
                    time.sleep(1.0)


def _run(name: str, parameters: dict, run_name: str) -> str:
    """Run a deployment on the server and wait for it; returns the final state's name."""
    from prefect.deployments import run_deployment

    flow_run = run_deployment(
        name, parameters=parameters, flow_run_name=run_name, poll_interval=1.0, as_subflow=False
    )
    return flow_run.state.name if flow_run.state else "unknown"


def _serving_model(url: str) -> str:
    import httpx

    try:
        answer = httpx.get(f"{url}/metadata", timeout=5.0)
    except httpx.HTTPError:
        return "(service not answering)"
    return (
        answer.json().get("model", "?") if answer.status_code == 200 else f"(none yet: {answer.status_code})"
    )


def _drift(settings: Settings, day: date) -> dict:
    path = settings.reports_dir / "drift" / day.isoformat() / "drift.json"
    return json.loads(path.read_text()) if path.exists() else {}


def replay_days(settings: Settings, options: ReplayOptions, service_url: str, prefect_port: int) -> int:
    """Warm up, then land one day every `options.day_seconds` until the source runs out.

    Args:
        settings: the replay's settings (`replay_settings`); the processes read the same world.
        options: the replay's pace and world.
        service_url: the BentoML service (`/metadata` names the model serving).
        prefect_port: the Prefect server's port (its API is where the deployments run).

    Returns:
        The number of days replayed after the warm-up.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from recflow.data.batches import list_batches
    from recflow.data.sources import source_days

    days = source_days(settings)
    if len(days) <= options.warmup_days:
        raise ValueError(f"the source has {len(days)} days: the replay needs more than {options.warmup_days}")
    params = {"profile": settings.profile, "home": str(Path(settings.home).resolve())}
    with temporary_settings(updates={PREFECT_API_URL: f"http://127.0.0.1:{prefect_port}/api"}):
        _wait_for_deployments([DAILY, WEEKLY])
        landed = {b.day for b in list_batches(settings.raw_dir)}
        warm = days[options.warmup_days - 1]
        if warm not in landed:
            print(f"replay: warming up on {days[0]}..{warm}", flush=True)
            state = _run(DAILY, {**params, "until": warm.isoformat()}, f"replay warm-up {warm}")
            print(f"replay: warm-up days landed and validated ({state})", flush=True)
        from serving.package import champion_tag

        if champion_tag(settings) is None:
            state = _run(WEEKLY, {**params, "reason": "replay warm-up"}, "replay first model")
            print(f"replay: first model trained ({state}): {champion_tag(settings)}", flush=True)
        todo = [d for d in days[options.warmup_days :] if d not in landed]
        print(f"replay: {len(todo)} days to land, one every {options.day_seconds:g} s", flush=True)
        print(
            f"{'day':<12}{'drift share':>12}  {'alarm':<6} {'model serving':<40}{'flow run':>10}", flush=True
        )
        for day in todo:
            started = time.monotonic()
            state = _run(DAILY, {**params, "until": day.isoformat()}, f"replay {day}")
            drift = _drift(settings, day)
            share = f"{drift['share']:.2f}" if "share" in drift else "-"
            alarm = "ALARM" if drift.get("detected") else ""
            print(
                f"{day.isoformat():<12}{share:>12}  {alarm:<6} {_serving_model(service_url):<40}{state:>10}",
                flush=True,
            )
            time.sleep(max(0.0, options.day_seconds - (time.monotonic() - started)))
    print(f"replay: all {len(days)} days landed; the platform keeps running (Ctrl-C stops it)", flush=True)
    return len(todo)
