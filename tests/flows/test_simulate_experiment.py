"""`recflow simulate --experiment`: an online experiment on the simulated market, end to end."""

from __future__ import annotations

import json

import pytest

from flows.market import market_flow, run_market
from flows.simulate import simulation_settings
from monitoring.experiment_readout import read_logs
from recflow.data.market import ResponseModel
from recflow.experiments import ExperimentStore
from recflow.settings import load_settings


def test_unknown_experiment_and_short_history_are_refused(tiny_settings):
    with pytest.raises(ValueError, match="Unknown experiment 'ba'"):
        market_flow.fn(tiny_settings, kind="ba", days=6, window=3)
    with pytest.raises(ValueError, match="window"):
        market_flow.fn(tiny_settings, kind="ab", days=3, window=3)


@pytest.mark.timeout(600)
def test_ab_on_the_tiny_shop_names_the_trained_package(tmp_path):
    # the tiny shop with more users and a livelier market: enough users in three days to decide
    settings = load_settings("tiny", home=tmp_path / "home", data={"n_users": 400})
    out = tmp_path / "sim.json"
    result = run_market(
        settings, "ab", days=7, window=3, share=0.5, json_out=out, response=ResponseModel(0.1)
    )

    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    readout = result["readout"]
    assert readout["winner"] == "challenger"
    assert result["variants"]["challenger"]["serves"] == "the trained package"
    assert readout["experiment"]["challenger"] == result["variants"]["challenger"]["tag"]
    assert not readout["guardrails"]["sample_ratio"]["mismatch"]
    assert len(result["days"]) == 4

    sim = simulation_settings(settings, 7, None)
    store = ExperimentStore(sim)
    experiment = store.latest()
    assert experiment.id == readout["experiment"]["id"] and experiment.stopped_at is not None
    logs = read_logs(store, experiment.id)
    assignments, impressions, outcomes = logs["assignments"], logs["impressions"], logs["outcomes"]
    # sticky: one assignment per user, the experiment's hash, the same variant on every day served
    assert assignments["user_id"].is_unique
    assert all(
        experiment.variant(u) == v
        for u, v in zip(assignments["user_id"], assignments["variant"], strict=True)
    )
    per_user = impressions.groupby("user_id").agg(
        variants=("variant", "nunique"), days=("request_id", "nunique")
    )
    assert (per_user["variants"] == 1).all() and (per_user["days"] > 1).any()
    assert set(impressions["model"]) == {v["tag"] for v in result["variants"].values()}
    # attributed: every outcome is an item its request showed, at that position, to that user's variant
    shown = impressions.set_index(["request_id", "position"])
    matched = shown.loc[list(zip(outcomes["request_id"], outcomes["position"], strict=True))]
    assert (matched["item_id"].to_numpy() == outcomes["item_id"].to_numpy()).all()
    assert (matched["variant"].to_numpy() == outcomes["variant"].to_numpy()).all()
    assert (matched["user_id"].to_numpy() == outcomes["user_id"].to_numpy()).all()
    for arm in ("champion", "challenger"):
        figures = readout["variants"][arm]
        assert figures["purchases"] == sum(d[arm]["purchases"] for d in result["days"]) > 0
        assert figures["clicks"] == sum(d[arm]["clicks"] for d in result["days"])
