"""Next-basket benchmark: the Reality Check metrics by hand, the splits, the baselines, TIFU-KNN, the command."""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import pytest
from completejourney_data import write_completejourney_folder
from typer.testing import CliRunner

from benchmarks.next_basket import (
    METRICS,
    Baskets,
    Split,
    g_topfreq,
    gp_topfreq,
    last_basket_splits,
    neighbour_order,
    p_topfreq,
    read_baskets,
    run_next_basket_bench,
    temporal_splits,
    tifu_knn,
    tifu_lists,
    tifu_vectors,
)
from models.evaluate import basket_metrics

A = np.array


def _split(histories, targets=None, n_items=20) -> Split:
    days = [[date(2017, 1, 1) + timedelta(days=i) for i in range(len(h))] for h in histories]
    return Split(
        "toy",
        [f"u{i}" for i in range(len(histories))],
        histories,
        days,
        [date(2017, 2, 1)] * len(histories),
        targets,
        n_items,
    )


def test_metrics_follow_the_reality_check_definitions():
    lists = A([[1, 2, 3, -1], [7, 8, 9, 5]])
    targets = [A([2, 4]), A([5, 6, 7, 11, 12])]
    histories = [[A([2, 3])], [A([7]), A([8])]]
    m = basket_metrics(lists, targets, histories, k=4)
    # user 0: hit 2 at rank 2 of basket {2, 4}; user 1: hits 7 (rank 1) and 5 (rank 4) of 5 items
    assert m["recall@4"] == pytest.approx((1 / 2 + 2 / 5) / 2)
    idcg0 = 1 + 1 / np.log2(3)
    idcg1 = sum(1 / np.log2(i + 2) for i in range(5))  # the ideal runs over the whole basket, not only K=4
    assert m["ndcg@4"] == pytest.approx(((1 / np.log2(3)) / idcg0 + (1 + 1 / np.log2(5)) / idcg1) / 2)
    assert m["phr@4"] == 1.0
    # repeat items: user 0 {2}, user 1 {7}; explore: user 0 {4}, user 1 {5, 6, 11, 12}
    assert m["repeat_recall@4"] == pytest.approx(1.0)
    assert m["explore_recall@4"] == pytest.approx((0 + 1 / 4) / 2)
    assert (m["repeat_users"], m["explore_users"]) == (2, 2)


def test_last_basket_and_temporal_splits():
    d = date(2017, 11, 28)
    data = Baskets(
        users=["a", "b", "c"],
        baskets=[[A([1]), A([2]), A([3]), A([4])], [A([5]), A([6])], [A([7]), A([8]), A([9])]],
        days=[
            [d, d + timedelta(1), d + timedelta(3), d + timedelta(5)],
            [d, d + timedelta(4)],
            [d, d + timedelta(1), d + timedelta(2)],
        ],
        items=[str(i) for i in range(10)],
    )
    valid, test = last_basket_splits(data)
    assert test.users == ["a", "c"]  # b has two baskets only
    assert [t.tolist() for t in test.targets] == [[4], [9]] and [t.tolist() for t in valid.targets] == [
        [3],
        [8],
    ]
    assert [len(h) for h in test.histories] == [3, 2] and [len(h) for h in valid.histories] == [2, 1]
    t_valid, t_test = temporal_splits(data, date(2017, 12, 1))
    assert t_test.users == ["a"]  # b: one basket before the cut; c: none after
    assert t_test.targets[0].tolist() == [3] and len(t_test.histories[0]) == 2
    assert t_valid.targets[0].tolist() == [2] and len(t_valid.histories[0]) == 1


def test_topfreq_baselines():
    histories = [[A([1, 2]), A([2, 3]), A([4])], [A([2, 5]), A([5])], [A([6])]]
    test = _split(histories)
    g, _ = g_topfreq(test, test, 4)
    assert g[0].tolist() == [2, 5, 1, 3]  # 2 in 3 baskets, 5 in 2, then 1 / 3 / 4 / 6 by index
    p, _ = p_topfreq(test, test, 4)
    assert p[0].tolist() == [2, 4, 3, 1]  # 2 twice; ties: bought last first
    assert p[2].tolist() == [6, -1, -1, -1]  # never more than the household's own items
    gp, _ = gp_topfreq(test, test, 4)
    assert gp[2].tolist() == [6, 2, 5, 1]  # filled with the popular items it has not bought
    assert gp[0].tolist() == p[0].tolist()


def test_tifu_vectors_by_hand():
    history = [A([0]), A([1]), A([0, 2])]  # 3 baskets, 2 groups: [b0], [b1, b2]
    v = tifu_vectors([history], 3, within_decay=0.5, group_decay=0.8, groups=2).toarray()[0]
    # basket weights 0.25, 0.5, 1; group 0 = b0 * 0.25, group 1 = (b1 * 0.5 + b2 * 1) / 2
    expected = (0.8 * np.array([0.25, 0, 0]) + np.array([0.5, 0.25, 0.5])) / 2
    np.testing.assert_allclose(v, expected)


def test_tifu_lists_equal_the_dense_definition():
    rng = np.random.default_rng(1)
    histories = [
        [rng.choice(60, rng.integers(1, 6), replace=False) for _ in range(rng.integers(1, 9))]
        for _ in range(50)
    ]
    vectors = tifu_vectors(histories, 60, 0.9, 0.7, 3)
    order = neighbour_order(vectors)
    assert (order != np.arange(50)[:, None]).all()  # never its own neighbour
    lists = tifu_lists(vectors, order, 7, [0.3, 0.9], 10)
    dense = vectors.toarray()
    for alpha, got in lists.items():
        for u in range(50):
            scores = alpha * dense[u] + (1 - alpha) * dense[order[u, :7]].mean(axis=0)
            best = np.sort(scores[scores > 0])[::-1][:10]
            np.testing.assert_allclose(
                scores[got[u][got[u] >= 0]], best, rtol=1e-9
            )  # same scores, best first


@pytest.fixture(scope="module")
def december_folder(tmp_path_factory):
    """A small Complete Journey folder whose days cross 2017-12-01."""
    return write_completejourney_folder(
        tmp_path_factory.mktemp("cj") / "cj", households=40, days=30, first_day="2017-11-10"
    )


def test_tifu_knn_tunes_on_validation_only(december_folder):
    valid, test = last_basket_splits(read_baskets(f"completejourney:{december_folder}"))
    grid = {
        "within_decay": (1.0,),
        "group_decay": (0.8,),
        "groups": (3,),
        "neighbours": (5, 300),
        "alpha": (0.5, 0.9),
    }
    lists, details = tifu_knn(valid, test.public(), 10, grid=grid)
    assert lists.shape == (len(test.users), 10)
    assert details["trials"] == 4 and details["params"]["alpha"] in (0.5, 0.9)
    m = basket_metrics(lists, test.targets, test.histories)
    assert m["recall@10"] > 0.3  # households here mostly rebuy their favourites


def test_bench_writes_both_protocols_and_the_platform_row(december_folder, tmp_path):
    seen = {}

    def platform(valid, test, k):
        seen["targets"] = test.targets  # a model never sees the test targets
        return gp_topfreq(valid, test, k)[0], {"note": "GP-TopFreq standing in"}

    out = tmp_path / "nb.json"
    result = run_next_basket_bench(
        f"completejourney:{december_folder}", out, platform=platform, command="cmd"
    )
    assert seen["targets"] is None
    saved = json.loads(out.read_text())
    assert set(saved) >= {"dataset", "protocol", "users", "items", "seed", "models", "details"}
    assert list(saved["models"]) == ["g-topfreq", "p-topfreq", "gp-topfreq", "tifu-knn", "platform"]
    for row in [*saved["models"].values(), *saved["details"]["temporal"]["models"].values()]:
        assert set(row) == {"kind", *METRICS, "train_seconds"}
    assert saved["models"]["platform"]["kind"] == "platform"
    assert saved["models"]["platform"]["recall@10"] == saved["models"]["gp-topfreq"]["recall@10"]
    models = result["models"]
    assert models["p-topfreq"]["explore_recall@10"] == 0.0  # it only ever recommends what was bought
    assert (
        models["gp-topfreq"]["recall@10"]
        >= models["p-topfreq"]["recall@10"]
        > models["g-topfreq"]["recall@10"]
    )
    assert saved["details"]["temporal"]["users"] > 0
    assert out.with_suffix(".png").stat().st_size > 0 and "| tifu-knn |" in out.with_suffix(".md").read_text()


def test_the_platform_row_is_the_served_family_fitted_on_each_protocol(december_folder, tmp_path):
    """The real platform row (fit_pipeline + BatchScorer, tiny hyperparameters) in the bench's JSON."""
    from benchmarks.next_basket_platform import PlatformRow
    from recflow.settings import load_settings

    source = f"completejourney:{december_folder}"
    out = tmp_path / "nb.json"
    settings = load_settings("tiny")
    result = run_next_basket_bench(
        source, out, platform_for=lambda data: PlatformRow(source, data.items, settings)
    )
    saved = json.loads(out.read_text())
    for table in (saved["models"], saved["details"]["temporal"]["models"]):
        row = table["platform"]
        assert row["kind"] == "platform" and set(row) == {"kind", *METRICS, "train_seconds"}
        assert 0 < row["recall@10"] <= 1 and 0 < row["ndcg@10"] <= 1
    details = result["details"]["last_basket"]["models"]["platform"]
    assert details["exclude_purchased"] is False  # the grocery source keeps purchases recommendable
    assert details["stages"]["buy-again"]["serving"] is True and details["sources"].get("buy-again", 0) > 0
    # households here mostly rebuy their favourites: the family with its buy-again source sees it
    assert saved["models"]["platform"]["repeat_recall@10"] > 0.5


def test_command_line_names_the_sources_it_reads(tmp_path):
    from recflow.cli import app

    result = CliRunner().invoke(
        app,
        [
            "bench",
            "quality",
            "--dataset",
            str(tmp_path),
            "--protocol",
            "next-basket",
            "--json",
            str(tmp_path / "x.json"),
        ],
    )
    assert result.exit_code != 0 and "completejourney" in result.output
    result = CliRunner().invoke(
        app, ["bench", "quality", "--dataset", str(tmp_path), "--protocol", "nope", "--json", "x"]
    )
    assert result.exit_code != 0 and "unknown protocol" in result.output
