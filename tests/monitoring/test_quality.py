"""Recommendation quality from feedback, and prediction drift on served scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.quality import basket_figures, prediction_drift, recommendation_quality


def _served() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2", "u2", "u3", "u3"],
            "item_id": ["a", "b", "a", "c", "a", "b"],
            "rank": [1, 2, 1, 2, 1, 2],
        }
    )


def test_quality_figures_by_hand():
    feedback = pd.DataFrame({"user_id": ["u1", "u2", "u2"], "item_id": ["b", "d", "d"]})  # u3 silent
    training = pd.DataFrame({"item_id": ["a"] * 6 + ["b"] * 2 + ["c"]})
    catalogue = pd.Series(["a", "b", "c", "d"])
    q = recommendation_quality(_served(), feedback, training, catalogue, k=2)

    assert q.users == 2  # u3 gave no feedback: not judged
    assert q.hit_rate == pytest.approx(0.5)  # u1 clicked b; u2 clicked nothing served
    assert q.coverage == pytest.approx(3 / 4)  # a, b, c of a, b, c, d
    # popularity percentiles: d 0.25, c 0.5, b 0.75, a 1.0; served a,b,a,c,a,b
    assert q.popularity_bias == pytest.approx((1 + 0.75 + 1 + 0.5 + 1 + 0.75) / 6)
    p = {"a": 7 / 13, "b": 3 / 13, "c": 2 / 13}
    expected = np.mean([-np.log2(p[i]) for i in ["a", "b", "a", "c", "a", "b"]])
    assert q.novelty == pytest.approx(expected)
    assert q.to_dict()["hit_rate@2"] == pytest.approx(0.5)


def test_cut_off_ignores_lower_ranks():
    feedback = pd.DataFrame({"user_id": ["u1"], "item_id": ["b"]})
    q = recommendation_quality(
        _served(), feedback, pd.DataFrame({"item_id": ["a"]}), pd.Series(["a", "b"]), k=1
    )
    assert q.hit_rate == 0.0
    assert q.coverage == pytest.approx(0.5)


def test_served_frame_must_have_ranks():
    with pytest.raises(ValueError, match="rank"):
        recommendation_quality(_served().drop(columns="rank"), _served(), _served(), pd.Series(["a"]), k=2)


def test_prediction_drift_on_scores(tiny_settings, tmp_path):
    rng = np.random.default_rng(0)
    reference = rng.normal(0.5, 0.1, 2000)
    same = prediction_drift(reference, rng.normal(0.5, 0.1, 3000), tiny_settings)
    shifted = prediction_drift(reference, rng.normal(0.7, 0.1, 3000), tiny_settings, out_dir=tmp_path)

    assert not same.detected
    assert shifted.detected
    assert shifted.score > same.score
    assert shifted.html_path is not None and shifted.html_path.exists()


def test_basket_figures_take_each_users_items_of_the_day_as_one_basket():
    from types import SimpleNamespace

    # u1 bought {b, d} (b at rank 2: hit), u2 bought {x} (no hit); ranks come unsorted
    served = pd.DataFrame(
        {"user_id": ["u1", "u2", "u1", "u2"], "item_id": ["b", "a", "a", "c"], "rank": [2, 1, 1, 2]}
    )
    held = SimpleNamespace(users=["u1", "u2"], relevant=[["b", "d"], ["x"]], history=[["b", "q"], ["a"]])
    figures = basket_figures(served, held, k=2)
    assert figures["recall@2"] == pytest.approx((1 / 2 + 0) / 2)
    ideal = 1 + 1 / np.log2(3)  # over the whole basket of two
    assert figures["ndcg@2"] == pytest.approx(((1 / np.log2(3)) / ideal + 0) / 2)
    assert figures["repeat_recall@2"] == pytest.approx(1.0)  # u1's repeat item b was recommended
    assert figures["explore_recall@2"] == pytest.approx(0.0)
