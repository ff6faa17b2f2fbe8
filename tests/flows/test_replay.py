"""`recflow up --replay` end to end on the tiny profile: days land as deployment runs, drift retrains."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from benchmarks.replay_watch import evidently_snapshots, prefect_runs
from flows.lifecycle import port_free
from flows.replay import ReplayOptions, replay_settings
from recflow.settings import load_settings

pytestmark = pytest.mark.slow


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_replay_settings_reach_the_replay_world(tmp_path):
    base = load_settings("tiny", home=tmp_path / "home")
    replay = replay_settings(base, ReplayOptions(drift_day=5))
    assert replay.home == tmp_path / "home" / "replay"
    assert replay.data.drift_day == 5 and replay.data.holdout_days == 1 and replay.profile == "tiny"


@pytest.mark.timeout(1500)
def test_replay_lands_days_as_deployment_runs_and_a_drift_alarm_promotes(tmp_path):
    home, log = tmp_path / "home", tmp_path / "up.log"
    ports = {name: _free_port() for name in ("prefect", "serving", "evidently")}
    env = os.environ | {"RECFLOW_DATA__N_DAYS": "10", "RECFLOW_SERVING__ACCESS_LOG": "false"}
    env.pop("PREFECT_API_URL", None)
    command = [
        sys.executable,
        "-m",
        "recflow.cli",
        "up",
        "--replay",
        "--profile",
        "tiny",
        "--home",
        str(home),
    ]
    command += ["--day-seconds", "1", "--drift-day", "8"]
    command += [f"--{name}-port={port}" for name, port in ports.items()]
    up = subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{ports['prefect']}/api"
    service = f"http://127.0.0.1:{ports['serving']}"
    try:
        deadline = time.monotonic() + 1200
        while "replay: all 10 days landed" not in log.read_text():
            assert up.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, log.read_text()[-4000:]
            time.sleep(2)
        first = log.read_text().split("replay: first model trained (Completed): ")[1].split()[0]
        while True:  # the retraining the alarm started, and its promotion into the running service
            runs = prefect_runs(api)
            model = httpx.get(f"{service}/metadata", timeout=10).json()["model"]
            if runs[("retrain-on-drift", "COMPLETED")] >= 1 and model != first:
                break
            assert time.monotonic() < deadline, (runs, model, log.read_text()[-4000:])
            time.sleep(3)
        lines = [line for line in log.read_text().splitlines() if line.startswith("2026-01-")]
        assert [line.split()[0] for line in lines] == ["2026-01-08", "2026-01-09", "2026-01-10"]
        assert "ALARM" not in lines[0] and "ALARM" in lines[1]  # day 8 (0-based) is the first drifted day
        assert runs[("daily-ingest-validate-drift", "COMPLETED")] >= 4  # the warm-up and three days
        assert evidently_snapshots(home / "replay") >= 4
    finally:
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=15) == 0
    assert all(port_free(p) for p in ports.values())
