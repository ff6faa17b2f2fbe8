"""The served mode: deployments with schedules and a drift trigger; flows on a PostgreSQL-backed server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import date
from pathlib import Path

import pytest
from prefect.utilities.callables import parameter_schema

from flows.deployments import (
    AGE_EVENT,
    DRIFT_EVENT,
    _settings,
    build_deployments,
    days_since_training,
    main,
    prefect_env,
    retrain,
    runner_command,
    wait_for_http,
)
from recflow.settings import load_settings


def test_three_deployments_with_schedules_and_the_drift_trigger(tiny_settings):
    deployments = {d.name: d for d in build_deployments(tiny_settings)}
    assert set(deployments) == {
        "daily-ingest-validate-drift",
        "weekly-retrain",
        "retrain-on-drift",
        "daily-experiment-readout",
    }
    assert deployments["daily-experiment-readout"].schedules[0].schedule.cron == "30 2 * * *"
    assert deployments["daily-ingest-validate-drift"].schedules[0].schedule.cron == "0 2 * * *"
    assert deployments["weekly-retrain"].schedules[0].schedule.cron == "0 3 * * 1"
    drift, age = deployments["retrain-on-drift"].triggers
    assert (drift.expect, age.expect) == ({DRIFT_EVENT}, {AGE_EVENT})
    assert (drift.parameters["reason"], age.parameters["reason"]) == ("drift", "age")
    assert drift.parameters["home"] == age.parameters["home"] == str(tiny_settings.home.resolve())
    assert not deployments["retrain-on-drift"].schedules
    # the live replay's runner: no cron (its clock lands the days), the same runs on demand and triggers
    command = runner_command(tiny_settings, schedules=False)
    assert command[-1] == "--no-schedules" and "--no-schedules" not in runner_command(tiny_settings)
    served, schedules = main(command[3:])
    assert schedules is False and main(runner_command(tiny_settings)[3:])[1] is True
    replayed = {d.name: d for d in build_deployments(served, schedules)}
    assert set(replayed) == set(deployments) and not any(d.schedules for d in replayed.values())
    assert [t.expect for t in replayed["retrain-on-drift"].triggers] == [{DRIFT_EVENT}, {AGE_EVENT}]


def test_days_since_training_counts_from_the_newest_stored_model_promoted_or_not(tiny_settings, tmp_path):
    from serving.package import promote, save_to_model_store

    day = date(2026, 2, 1)
    assert days_since_training(tiny_settings, day) is None  # nothing stored yet
    bundle = tmp_path / "bundle"
    bundle.mkdir()

    def stored(end: str) -> str:
        return save_to_model_store(
            tiny_settings, bundle, {"data_window": {"start": "2026-01-01", "end": end}}
        )

    promote(tiny_settings, stored("2026-01-05"))
    assert days_since_training(tiny_settings, day) == 27
    stored("2026-01-20")  # a retrain the gate kept out: the clock restarts all the same
    assert days_since_training(tiny_settings, day) == 12


def test_require_online_win_reaches_the_retraining_deployments(tiny_settings):
    assert "--require-online-win" not in runner_command(tiny_settings)
    assert build_deployments(tiny_settings)[1].parameters["require_online_win"] is False
    settings = tiny_settings.model_copy(deep=True)
    settings.experiments.require_online_win = True  # what `recflow up --require-online-win` sets
    command = runner_command(settings)
    assert command[1:3] == ["-m", "flows.deployments"] and "--require-online-win" in command
    served, _ = main(command[3:])  # the settings the deployments' process reads from that command line
    assert served.experiments.require_online_win and served.home == settings.home.resolve()
    deployments = {d.name: d for d in build_deployments(served)}
    for name in ("weekly-retrain", "retrain-on-drift"):
        assert deployments[name].parameters["require_online_win"] is True
    # the API checks deployment parameters against the flow's signature (enforce_parameter_schema)
    assert "require_online_win" in parameter_schema(retrain).properties
    triggers = deployments["retrain-on-drift"].triggers
    assert [t.parameters["reason"] for t in triggers] == ["drift", "age"]
    assert all(t.parameters["require_online_win"] is True for t in triggers)
    assert "require_online_win" not in deployments["daily-ingest-validate-drift"].parameters
    # the retrain flow's settings, as a run of those deployments loads them
    home = str(settings.home)
    assert _settings("tiny", home, require_online_win=True).experiments.require_online_win
    assert not _settings("tiny", home).experiments.require_online_win


def test_require_online_win_flag_of_run_and_up(tiny_settings, monkeypatch):
    import typer.main

    from recflow.cli import app, cli_settings

    commands = typer.main.get_command(app).commands
    for name in ("run", "up"):
        context = commands[name].make_context(name, ["--require-online-win"])
        assert context.params["require_online_win"] is True
        assert commands[name].make_context(name, []).params["require_online_win"] is False
    home = tiny_settings.home
    assert cli_settings("tiny", home, require_online_win=True).experiments.require_online_win
    assert not cli_settings("tiny", home).experiments.require_online_win
    monkeypatch.setenv("RECFLOW_EXPERIMENTS__REQUIRE_ONLINE_WIN", "true")  # the setting alone still holds
    assert cli_settings("tiny", home).experiments.require_online_win


def test_postgres_url_reaches_the_prefect_server(tiny_settings):
    env = prefect_env(tiny_settings, 4321)
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:4321/api"
    assert "PREFECT_API_DATABASE_CONNECTION_URL" not in env  # SQLite by default
    url = "postgresql+asyncpg://postgres@127.0.0.1:5432/x"
    configured = load_settings("tiny", home=tiny_settings.home, prefect_database_url=url)
    assert prefect_env(configured, 4321)["PREFECT_API_DATABASE_CONNECTION_URL"] == url


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _events(conn, event: str, wait: float = 60.0) -> list:
    """The resource ids of the server's `event`s, once the first has been written (at most `wait` s)."""
    deadline, events = time.monotonic() + wait, []
    while time.monotonic() < deadline and not events:
        events = conn.execute("SELECT resource_id FROM events WHERE event = %s", (event,)).fetchall()
        time.sleep(2)
    return events


@pytest.fixture
def postgres_database():
    """A throwaway PostgreSQL database on 127.0.0.1:5432, dropped afterwards."""
    psycopg = pytest.importorskip("psycopg")
    name = f"recflow_test_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(
            "postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True, connect_timeout=5
        )
    except psycopg.OperationalError as e:
        pytest.skip(f"PostgreSQL is not reachable on 127.0.0.1:5432: {e}")
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.mark.postgres
@pytest.mark.timeout(600)
def test_daily_flow_on_a_postgres_backed_server_emits_the_drift_and_the_age_events(
    tmp_path, postgres_database
):
    import psycopg

    home = tmp_path / "home"
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{postgres_database}"
    settings = load_settings("tiny", home=home, prefect_database_url=url)
    port = _free_port()
    env = {
        **os.environ,
        **prefect_env(settings, port),
        # a world whose newest day (6) is the first drifted one
        "RECFLOW_DATA__N_DAYS": "7",
        "RECFLOW_DATA__DRIFT_DAY": "6",
    }
    Path(env["PREFECT_HOME"]).mkdir(parents=True)
    prefect = str(Path(sys.executable).parent / "prefect")
    server = subprocess.Popen(
        [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/api/health", timeout=240)
        code = (
            "import json; from flows.deployments import daily_monitoring; "
            f"print(json.dumps(daily_monitoring(profile='tiny', home={str(home)!r})['drift']))"
        )
        run = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=420, check=False
        )
        assert run.returncode == 0, run.stderr[-3000:]
        drift = json.loads(run.stdout.strip().splitlines()[-1])
        assert drift["detected"], drift

        db = f"postgresql://postgres@127.0.0.1:5432/{postgres_database}"
        with psycopg.connect(db) as conn:
            runs = conn.execute(
                "SELECT f.name, r.state_type FROM flow_run r JOIN flow f ON f.id = r.flow_id"
            ).fetchall()
            assert ("recflow-daily-monitoring", "COMPLETED") in runs
            assert _events(conn, DRIFT_EVENT) == [("recflow.batch.2026-01-07",)]

        # a world without drift whose last retrain learned up to 2025-12-01: the age event instead
        from serving.package import save_to_model_store

        quiet_home = tmp_path / "quiet"
        bundle = tmp_path / "bundle"
        bundle.mkdir()
        save_to_model_store(
            load_settings("tiny", home=quiet_home),
            bundle,
            {"data_window": {"start": "2025-11-04", "end": "2025-12-01"}},
        )
        code = (
            "import json; from flows.deployments import daily_monitoring; "
            f"r = daily_monitoring(profile='tiny', home={str(quiet_home)!r}); "
            "print(json.dumps([r['drift']['detected'], r['days_since_training']]))"
        )
        quiet_env = {name: value for name, value in env.items() if name != "RECFLOW_DATA__DRIFT_DAY"}
        run = subprocess.run(
            [sys.executable, "-c", code],
            env=quiet_env,
            capture_output=True,
            text=True,
            timeout=420,
            check=False,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        assert json.loads(run.stdout.strip().splitlines()[-1]) == [False, 37]
        with psycopg.connect(db) as conn:
            assert _events(conn, AGE_EVENT) == [("recflow.batch.2026-01-07",)]
    finally:
        server.terminate()
        server.wait(timeout=60)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_retrain_promotes_the_first_model_and_gates_the_next(tiny_settings, tiny_batches):
    from flows.deployments import retrain
    from serving.package import champion_tag, model_info

    home = str(tiny_settings.home)
    first = retrain(profile="tiny", home=home, reason="test")
    assert first["promoted"] and champion_tag(tiny_settings) == first["tag"]

    second = retrain(profile="tiny", home=home, reason="drift")
    gate = model_info(tiny_settings, second["tag"])[1]["gate"]
    # the same data again: the champion has learned every held-out day, so it stays
    assert not gate["promote"] and "already learned" in gate["reason"]
    assert second["promoted"] == gate["promote"]
    assert champion_tag(tiny_settings) == (second["tag"] if second["promoted"] else first["tag"])
    searched = model_info(tiny_settings, second["tag"])[1]
    assert searched["stages"]["co-occurrence"]["kept"] is False  # a drift retrain searches again

    # an age retrain refreshes the data with the champion's searched hyperparameters
    champion = model_info(tiny_settings, champion_tag(tiny_settings))[1]
    aged = model_info(tiny_settings, retrain(profile="tiny", home=home, reason="age")["tag"])[1]
    assert aged["stages"]["co-occurrence"]["kept"] is True
    assert aged["hyperparameters"]["cooccurrence"] == champion["hyperparameters"]["cooccurrence"]
