"""`recflow up --replay` end to end on the tiny profile: days land as deployment runs, drift retrains."""

from __future__ import annotations

import signal
import time

import httpx
import pytest
from platform_up import free_ports, start_up

from benchmarks.replay_watch import evidently_snapshots, prefect_runs
from flows.lifecycle import port_free
from flows.replay import ReplayOptions, replay_settings
from recflow.settings import load_settings

pytestmark = pytest.mark.slow


def test_replay_settings_reach_the_replay_world(tmp_path):
    base = load_settings("tiny", home=tmp_path / "home")
    replay = replay_settings(base, ReplayOptions(drift_day=5))
    assert replay.home == tmp_path / "home" / "replay"
    assert replay.data.drift_day == 5 and replay.data.holdout_days == 1 and replay.profile == "tiny"


@pytest.mark.timeout(1500)
def test_replay_lands_days_as_deployment_runs_and_a_drift_alarm_promotes(tmp_path):
    home, log = tmp_path / "home", tmp_path / "up.log"
    ports = free_ports()
    days = {"RECFLOW_DATA__N_DAYS": "10"}
    options = ("--replay", "--day-seconds", "1", "--drift-day", "8")
    up = start_up(home, ports, log, *options, env=days)
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
            runner = (home / "replay" / "logs" / "deployments.log").read_text()[-6000:]
            assert time.monotonic() < deadline, (dict(runs), model, log.read_text()[-2000:], runner)
            time.sleep(3)
        lines = [line for line in log.read_text().splitlines() if line.startswith("2026-01-")]
        assert [line.split()[0] for line in lines] == ["2026-01-08", "2026-01-09", "2026-01-10"]
        assert "ALARM" not in lines[0] and "ALARM" in lines[1]  # day 8 (0-based) is the first drifted day
        assert runs[("daily-ingest-validate-drift", "COMPLETED")] >= 4  # the warm-up and three days
        # no cron runs: the replay is the clock (a 02:00 run would land every day at once)
        assert not [key for key in runs if key[1] == "SCHEDULED"], runs
        assert evidently_snapshots(home / "replay") >= 4
    finally:
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=15) == 0
    assert all(port_free(p) for p in ports.values())
