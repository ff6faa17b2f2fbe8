"""Served next-basket quality from outside: the platform on the baskets before a cut, the real service over
HTTP, scored on each household's first basket after it beside the baselines."""

from __future__ import annotations

import json
from datetime import date

import pandas as pd
import pytest
from completejourney_data import write_completejourney_folder

from benchmarks.next_basket import gp_topfreq, p_topfreq, read_baskets, temporal_splits
from benchmarks.served_next_basket import as_indices, run_served_next_basket_bench, write_history_folder

CUT = date(2017, 12, 1)


@pytest.fixture(scope="module")
def december_folder(tmp_path_factory):
    """40 households over 30 days that cross 2017-12-01 (some late evenings fall on the next UTC day)."""
    return write_completejourney_folder(
        tmp_path_factory.mktemp("cj") / "cj", households=40, days=30, first_day="2017-11-10"
    )


def test_the_history_folder_keeps_the_lines_before_the_cut_in_the_shop_s_time(december_folder, tmp_path):
    kept = write_history_folder(f"completejourney:{december_folder}", CUT, tmp_path / "rest")
    every = pd.read_parquet(december_folder / "transactions.parquet")
    rest = pd.read_parquet(tmp_path / "rest" / "transactions.parquet")
    local = every["transaction_timestamp"].dt.tz_localize("UTC").dt.tz_convert("America/New_York")
    before = every[local.dt.date < CUT]
    assert kept == len(rest) == len(before) and 0 < kept < len(every)
    # 30 November's late evening is 1 December in UTC, and it is kept; 1 December's morning is not
    assert (before["transaction_timestamp"] >= pd.Timestamp("2017-12-01")).any()
    assert set(rest["basket_id"]) == set(before["basket_id"])
    assert rest.dtypes.to_dict() == every.dtypes.to_dict()
    for name in ("products", "promotions", "demographics"):
        assert (tmp_path / "rest" / f"{name}.parquet").read_bytes() == (
            december_folder / f"{name}.parquet"
        ).read_bytes()


def test_answers_become_item_indices_and_unknown_items_cannot_hit():
    rows = as_indices({"a": ["x", "nope", "z"], "b": []}, ["a", "b", "c"], ["x", "y", "z"], k=4)
    assert rows.tolist() == [[0, -1, 2, -1], [-1, -1, -1, -1], [-1, -1, -1, -1]]


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_served_next_baskets_end_to_end(december_folder, tmp_path, tiny_settings):
    source = f"completejourney:{december_folder}"
    out, doc = tmp_path / "served.json", tmp_path / "grocery.md"
    doc.write_text(
        "# figures\n<!-- bench:served-next-basket:start -->\n<!-- bench:served-next-basket:end -->\n"
    )
    baselines = {"p-topfreq": p_topfreq, "gp-topfreq": gp_topfreq}
    result = run_served_next_basket_bench(
        tiny_settings, source, out, cut=CUT, concurrency=4, doc=doc, baselines=baselines
    )
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result, default=str))
    _, test = temporal_splits(read_baskets(source), CUT)
    assert saved["users"] == len(test.users) > 10 and saved["cut"] == "2017-12-01"
    assert set(saved["models"]) == {"served", "in-process", "p-topfreq", "gp-topfreq"}
    fields = {"kind", "recall@10", "ndcg@10", "phr@10", "repeat_recall@10", "explore_recall@10"}
    assert all(fields <= set(row) for row in saved["models"].values())
    assert saved["failed"] == 0 and saved["fallback"] == 0
    # what the service answers over HTTP is what the batch scorer lists for the same package
    assert saved["details"]["identical_lists"] == saved["users"]
    assert saved["models"]["served"]["ndcg@10"] == saved["models"]["in-process"]["ndcg@10"]
    # households rebuy their favourites: the served lists find them (P-TopFreq's whole strategy)
    assert saved["models"]["served"]["repeat_recall@10"] > 0.3
    assert saved["details"]["clock"] == "data" and saved["details"]["transaction_lines_seen"] > 0
    assert "| served | " in doc.read_text() and out.with_suffix(".png").stat().st_size > 0
