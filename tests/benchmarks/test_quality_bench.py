"""Benchmark metrics and masking with hand-computed expectations, and the baselines on toy data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.quality import (
    Split,
    evaluate,
    leave_one_out,
    markdown_table,
    metrics_from_ranks,
    popularity_scores,
    run_quality_bench,
    target_ranks,
    write_benchmark_doc,
)
from models.config import PipelineConfig
from models.cooccurrence import CooccurrenceModel, CooccurrenceParams
from models.evaluate import ranks_in_lists
from models.ranker import RankerConfig
from models.sequential import SequentialConfig


def test_metrics_from_ranks_by_hand():
    ranks = np.array([0, 1, 4, 9, 30])
    m = metrics_from_ranks(ranks, ks=(1, 5, 10))
    assert m["hr@1"] == pytest.approx(1 / 5)
    assert m["hr@5"] == pytest.approx(3 / 5)
    assert m["hr@10"] == pytest.approx(4 / 5)
    expected = (1 / np.log2(2) + 1 / np.log2(3) + 1 / np.log2(6)) / 5
    assert m["ndcg@5"] == pytest.approx(expected)
    assert m["ndcg@10"] == pytest.approx(expected + 1 / np.log2(11) / 5)


def test_history_is_masked_before_ranking():
    scores = np.array([[5.0, 4.0, 3.0, 2.0, 1.0]])
    # without masking the target (item 3) ranks 4th; items 0 and 1 are in the history
    assert target_ranks(scores.copy(), [np.array([], int)], np.array([3])).tolist() == [3]
    assert target_ranks(scores.copy(), [np.array([0, 1])], np.array([3])).tolist() == [1]


def test_leave_one_out_splits_last_two_items():
    train, valid, test = leave_one_out([np.array([1, 2, 3, 4]), np.array([7, 8, 9])])
    assert [t.tolist() for t in train] == [[1, 2], [7]]
    assert valid.targets.tolist() == [3, 8]
    assert [h.tolist() for h in test.histories] == [[1, 2, 3], [7, 8]]
    assert test.targets.tolist() == [4, 9]
    with pytest.raises(ValueError, match="fewer than 3 items"):
        leave_one_out([np.array([1, 2])])


def test_popularity_published_counts_test_items_by_construction():
    # item 4 is every user's test item: counted over all items (test included) it is the most
    # popular and hits at rank 0; counted over the training part only it is never seen
    sequences = [np.array([0, 1, 4]), np.array([2, 1, 4]), np.array([3, 0, 4])]
    _, _, test = leave_one_out(sequences)
    leaky = popularity_scores(sequences, 5)
    honest = popularity_scores([s[:-1] for s in sequences], 5)
    assert evaluate(lambda h, u: np.tile(leaky, (len(u), 1)), test)["hr@5"] == 1.0
    m = evaluate(lambda h, u: np.tile(honest, (len(u), 1)), test, ks=(1,))
    assert m["hr@1"] == 0.0


def test_ranks_from_lists():
    ranked = np.array([[3, 1, 2], [0, 2, 1]])
    assert ranks_in_lists(ranked, np.array([2, 5])).tolist() == [2, 3]


def test_cooccurrence_follows_the_sequence():
    # item 1 is always followed by item 2: a user whose last item is 1 gets item 2 first
    histories = [np.array([0, 1, 2]), np.array([3, 1, 2]), np.array([1, 2, 4])]
    model = CooccurrenceModel(CooccurrenceParams(window=1, backward=0.0, last_n=1), 5).fit(histories)
    scores = model.scores([np.array([3, 1])])
    assert int(np.argmax(scores[0])) == 2
    split = Split("toy", [np.array([3, 1])], np.array([2]))
    assert evaluate(lambda h, u: model.scores(h), split, ks=(1,))["hr@1"] == 1.0


def _toy_dataset(folder, n_users=60, n_items=30, seed=0, name="Toy"):
    rng = np.random.default_rng(seed)
    lines = []
    for u in range(1, n_users + 1):
        start = rng.integers(1, n_items - 8)
        items = [start + k for k in range(rng.integers(5, 9))]  # walks through consecutive items
        lines.append(" ".join(map(str, [u, *items])))
    folder.mkdir()
    (folder / f"{name}.txt").write_text("\n".join(lines) + "\n")
    attrs = {str(i): [1 + i % 3, 10 + i // 10] for i in range(1, n_items + 1)}
    (folder / f"{name}_item2attributes.json").write_text(json.dumps(attrs))
    return folder


def test_quality_bench_end_to_end_on_a_toy_dataset(tmp_path, tiny_settings):
    folder = _toy_dataset(tmp_path / "toy", name="Beauty")  # named Beauty: the published rows join in
    config = PipelineConfig(
        two_tower=SequentialConfig(
            max_len=8, dim=8, heads=1, blocks=1, batch_size=32, max_epochs=2, eval_every=1
        ),
        ranker=RankerConfig(candidates=20, max_epochs=2),
    )
    out = tmp_path / "out" / "toy.json"
    result = run_quality_bench(tiny_settings, folder, out, seed=1, config=config)
    saved = json.loads(out.read_text())
    assert saved["users"] == 60 and saved["seed"] == 1
    assert set(saved) >= {"dataset", "protocol", "users", "items", "seed", "models"}
    kinds = {name: row["kind"] for name, row in saved["models"].items()}
    assert kinds["popularity"] == kinds["cooccurrence"] == "baseline"
    assert kinds["popularity-published"] == "reference" and kinds["SASRec (published)"] == "reference"
    assert kinds["platform"] == "platform" and kinds["two-tower"] == "component"
    stages = saved["details"]["platform"]["stages"]
    assert stages["two-tower"]["serving"] and isinstance(stages["ranker"]["serving"], bool)
    # consecutive-item walks: the served package finds the next item
    assert saved["models"]["platform"]["hr@10"] > 0.8
    for row in saved["models"].values():
        assert all(0.0 <= row[m] <= 1.0 for m in ("hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20"))
        assert row["hr@5"] <= row["hr@10"] <= row["hr@20"]
    # consecutive-item walks: co-occurrence of the last item finds the next one
    assert saved["models"]["cooccurrence"]["hr@5"] > 0.8
    assert out.with_suffix(".png").stat().st_size > 0
    assert result["models"] == saved["models"]
    doc = write_benchmark_doc([out, out], tmp_path / "benchmarks.md", "recflow bench quality ...")
    text = doc.read_text()
    assert "recflow bench quality ..." in text and "| cooccurrence | baseline |" in text
    assert markdown_table([saved]).count("\n") == len(saved["models"]) + 1
    assert "Published rows: S3-Rec" in text
    # another data set has no published table: its doc says so
    saved["models"] = {n: r for n, r in saved["models"].items() if "(published)" not in n}
    saved["details"]["published_source"] = None
    other = tmp_path / "other.json"
    other.write_text(json.dumps(saved))
    assert "No published results" in write_benchmark_doc([other], tmp_path / "o.md", "cmd").read_text()


def test_refit_study_scores_each_variant_on_validation_targets(tmp_path):
    from benchmarks.quality import run_refit_study

    folder = _toy_dataset(tmp_path / "toy")
    config = SequentialConfig(max_len=8, dim=8, heads=1, blocks=1, batch_size=32, max_epochs=2)
    out = tmp_path / "study.json"
    result = run_refit_study(folder, out, refit_epochs=(0, 1), learning_rates=(5e-3, 1e-3), config=config)
    assert json.loads(out.read_text()) == result
    assert [(v["refit_epochs"], v["learning_rate"]) for v in result["variants"]] == [
        (0, 5e-3),
        (1, 5e-3),
        (1, 1e-3),
    ]
    for row in [*result["variants"], result["scratch"]]:
        assert 0.0 <= row["ndcg@10"] <= row["hr@10"] <= 1.0
