"""The simulated market: the readout's A/A false-positive rate stays near alpha, A/B finds the right winner."""

from __future__ import annotations

import json

from benchmarks.experiments import Market, planned_days, run_bench


def test_planned_days_grow_as_the_effect_shrinks():
    market = Market()
    assert planned_days(market, 0.20, 0.26, 0.05) < planned_days(market, 0.20, 0.23, 0.05)


def test_aa_rejects_rarely_and_ab_finds_the_good_model(tmp_path):
    result = run_bench(tmp_path / "bench.json", runs=30, samples=20_000)
    assert json.loads((tmp_path / "bench.json").read_text()) == result
    assert set(result) == {"alpha", "aa", "ab"} and result["aa"]["runs"] == 30
    # 30 A/A runs at alpha 0.05: more than 6 rejections has probability < 0.2%
    assert result["aa"]["false_positive_rate"] <= 6 / 30
    # planned for 80% power: fewer than half the runs finding it has probability < 0.1%
    assert result["ab"]["power"] >= 0.5 and result["ab"]["wrong_winner_rate"] == 0.0
    assert result["ab"]["true_conversion"]["challenger"] > result["ab"]["true_conversion"]["champion"]
