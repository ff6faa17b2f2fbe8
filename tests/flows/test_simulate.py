"""The closed-loop simulation: its settings, its outputs and one short replay through the real loop."""

from __future__ import annotations

import json

import pytest

from flows.simulate import simulate_flow, simulation_settings, write_outputs


def test_simulation_lives_in_its_own_home_with_the_drift_knob(tiny_settings):
    sim = simulation_settings(tiny_settings, days=12, drift_day=6)
    assert sim.home == tiny_settings.home / "simulate"
    assert (sim.data.n_days, sim.data.drift_day) == (12, 6)
    assert sim.data.n_users == tiny_settings.data.n_users  # the profile's sizes are kept
    assert tiny_settings.data.drift_day is None  # the caller's settings are untouched


def test_days_must_leave_room_for_a_window_before_the_drift(tiny_settings):
    with pytest.raises(ValueError, match="window"):
        simulate_flow.fn(tiny_settings, days=10, drift_day=3, window=5)


def test_outputs_json_and_chart(tmp_path):
    days = [
        {
            "day": f"2026-01-{d:02d}",
            "drift_share": 0.25 if d >= 5 else 0.0,
            "drift_detected": d >= 5,
            "retrained": d in (5, 6),
            "promoted": d == 6,
            "serving_model": "m:1" if d < 6 else "m:2",
            "champion_hr@10": 0.3,
            "challenger_hr@10": 0.35 if d in (5, 6) else None,
            "gate_reason": None,
        }
        for d in range(3, 9)
    ]
    result = {"drift_day": 4, "window": 2, "days": days, "final": {}}
    png = write_outputs(result, tmp_path / "sim.json", k=10)
    assert json.loads((tmp_path / "sim.json").read_text())["drift_day"] == 4
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_short_replay_through_the_real_loop(tiny_settings):
    result = simulate_flow(tiny_settings, days=7, drift_day=5, window=3)
    days = result["days"]
    assert [d["day"] for d in days] == ["2026-01-04", "2026-01-05", "2026-01-06", "2026-01-07"]
    keys = {"day", "drift_share", "drift_detected", "retrained", "promoted", "serving_model"}
    assert keys | {"champion_hr@10", "challenger_hr@10"} <= set(days[0])
    # serving_model is the model serving at the end of the day: it changes only on promotion days
    for before, after in zip(days, days[1:], strict=False):
        if not after["promoted"]:
            assert after["serving_model"] == before["serving_model"]
    for d in days:
        assert (d["challenger_hr@10"] is not None) == d["retrained"]
        assert 0.0 <= d["champion_hr@10"] <= 1.0
        assert not d["promoted"] or d["retrained"]
        assert d["prediction_drift"] >= 0.0 and isinstance(d["prediction_drift_detected"], bool)
    assert 0.0 <= result["final"]["scratch_hit_rate@10"] <= 1.0
