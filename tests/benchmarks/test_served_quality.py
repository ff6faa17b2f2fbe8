"""Served quality from outside: hold back, `recflow run`, the real service over HTTP, scored like in process."""

from __future__ import annotations

import json

import pytest
from test_quality_bench import _toy_dataset

from benchmarks.served_quality import hold_back_last_items, run_served_quality_bench
from recflow.data.amazon import read_amazon_sequences


def test_hold_back_writes_every_sequence_but_its_last_item(tmp_path):
    folder = _toy_dataset(tmp_path / "toy", n_users=20)
    held = hold_back_last_items(folder, tmp_path / "rest")
    before, after = read_amazon_sequences(folder), read_amazon_sequences(tmp_path / "rest")
    assert after.users == before.users and len(held) == 20
    for user, full, rest in zip(before.users, before.sequences, after.sequences, strict=True):
        assert rest == full[:-1] and held[user] == full[-1]
    assert after.attributes == before.attributes


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_served_quality_end_to_end_on_a_toy_dataset(tmp_path, tiny_settings):
    folder = _toy_dataset(tmp_path / "toy", n_users=150, n_items=40)
    out = tmp_path / "served.json"
    doc = tmp_path / "models.md"
    doc.write_text("# figures\n<!-- bench:served-quality:start -->\n<!-- bench:served-quality:end -->\n")
    result = run_served_quality_bench(tiny_settings, folder, out, concurrency=4, doc=doc)
    assert f"| served over HTTP | {result['hr@10']:.4f} |" in doc.read_text()
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result))
    fields = {"dataset", "users", "hr@10", "ndcg@10", "failed", "fallback", "train_seconds"}
    fields |= {"requests_per_second", "p50_ms", "p99_ms", "in_process"}
    assert fields <= set(saved)
    assert saved["users"] == 150 and saved["failed"] == 0 and saved["fallback"] == 0
    # what the service answers over HTTP is what the batch scorer lists for the same package
    assert saved["details"]["identical_lists"] == 150
    assert (
        saved["hr@10"] == saved["in_process"]["hr@10"] and saved["ndcg@10"] == saved["in_process"]["ndcg@10"]
    )
    assert saved["hr@10"] > 0.5  # consecutive-item walks: the next item is learnable
    assert out.with_suffix(".png").stat().st_size > 0
