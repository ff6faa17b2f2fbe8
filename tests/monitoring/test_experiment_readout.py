"""The experiment readout on logs with a known effect: the right winner, intervals, SRM and latency guardrails."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from monitoring.experiment_readout import readout
from recflow.experiments import Experiment, ExperimentStore


def logs(
    experiment: Experiment, n_users: int, conversion: dict[str, float], latency: dict[str, float], seed=0
):
    """Assignments by the experiment's hash, 5 items shown per user, purchases at the given rates."""
    rng = np.random.default_rng(seed)
    assignments, impressions, outcomes = [], [], []
    for u in range(n_users):
        user = f"user-{u:05d}"
        variant = experiment.variant(user)
        assignments.append(
            {"experiment_id": experiment.id, "user_id": user, "variant": variant, "assigned_at": "t"}
        )
        request = f"r{u:05d}"
        for position in range(5):
            impressions.append(
                {
                    "request_id": request,
                    "position": position,
                    "item_id": f"i{position}",
                    "user_id": user,
                    "experiment_id": experiment.id,
                    "variant": variant,
                    "model": variant,
                    "shown_at": "t",
                    "latency_ms": latency[variant] * (1 + 0.1 * rng.random()),
                }
            )
        if rng.random() < conversion[variant]:
            outcomes.append(
                {
                    "request_id": request,
                    "user_id": user,
                    "item_id": "i1",
                    "event_type": "purchase",
                    "experiment_id": experiment.id,
                    "variant": variant,
                    "position": 1,
                    "at": "t",
                }
            )
        if rng.random() < 0.3:
            outcomes.append(
                {
                    "request_id": request,
                    "user_id": user,
                    "item_id": "i0",
                    "event_type": "view",
                    "experiment_id": experiment.id,
                    "variant": variant,
                    "position": 0,
                    "at": "t",
                }
            )
    return {"assignments": assignments, "impressions": impressions, "outcomes": outcomes}


def frames(rows):
    return {name: pd.DataFrame(r) for name, r in rows.items()}


EXPERIMENT = Experiment("e-readout", "challenger:tag", "champion:tag", 0.5, False, "readout-salt", "t")
SAME_LATENCY = {"champion": 10.0, "challenger": 10.0}


def test_a_better_challenger_wins_with_intervals_that_hold_the_rates():
    rows = logs(EXPERIMENT, 4000, {"champion": 0.05, "challenger": 0.10}, SAME_LATENCY)
    result = readout(EXPERIMENT, frames(rows), prices={"i1": 20.0})
    a, b = result["variants"]["champion"], result["variants"]["challenger"]
    assert result["winner"] == "challenger" and result["tests"]["conversion"]["p_value"] < 1e-6
    assert (
        a["conversion_ci"][0] < 0.05 < a["conversion_ci"][1]
        and b["conversion_ci"][0] < 0.10 < b["conversion_ci"][1]
    )
    assert a["users"] + b["users"] == 4000 and not result["guardrails"]["sample_ratio"]["mismatch"]
    assert b["revenue_per_user"] == pytest.approx(20.0 * b["buyers"] / b["users"])
    assert b["impressions"] == 5 * b["users"] and 0.04 < b["ctr"] < 0.08  # 30% of users click one of 5


def test_no_difference_means_no_winner():
    rows = logs(EXPERIMENT, 4000, {"champion": 0.08, "challenger": 0.08}, SAME_LATENCY, seed=3)
    result = readout(EXPERIMENT, frames(rows))
    assert result["winner"] == "none" and result["tests"]["conversion"]["p_value"] > 0.05


def test_guardrails_stop_a_winner():
    rows = frames(
        logs(EXPERIMENT, 4000, {"champion": 0.05, "challenger": 0.10}, {"champion": 10.0, "challenger": 30.0})
    )
    slow = readout(EXPERIMENT, rows)
    assert not slow["guardrails"]["latency"]["ok"] and slow["winner"] == "none"

    lopsided = frames(logs(EXPERIMENT, 4000, {"champion": 0.05, "challenger": 0.10}, SAME_LATENCY))
    champion_users = lopsided["assignments"]["variant"] == "champion"
    lopsided["assignments"] = lopsided["assignments"][
        ~champion_users | (np.arange(len(champion_users)) % 2 == 0)
    ]
    broken = readout(EXPERIMENT, lopsided)  # half the champion's users lost: the logging is broken
    assert broken["guardrails"]["sample_ratio"]["mismatch"] and broken["winner"] == "none"


@pytest.fixture(scope="module")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_the_readout_flow_writes_json_and_a_chart(prefect_harness, tiny_settings, tmp_path):
    from flows.readout import experiment_readout

    store = ExperimentStore(tiny_settings)
    experiment = store.start("challenger:tag", 0.5, False, "champion:tag")
    store.write(logs(experiment, 600, {"champion": 0.05, "challenger": 0.30}, SAME_LATENCY))
    result = experiment_readout(tiny_settings, tmp_path / "readout.json")
    written = json.loads((tmp_path / "readout.json").read_text())
    assert written["winner"] == result["winner"] == "challenger"
    assert written["experiment"]["id"] == experiment.id and "salt" not in written["experiment"]
    assert (tmp_path / "readout.png").read_bytes()[:4] == b"\x89PNG"
    assert result["evidently_snapshot"]  # logged to the workspace project
    assert list((tiny_settings.evidently_dir).rglob("*.json"))
