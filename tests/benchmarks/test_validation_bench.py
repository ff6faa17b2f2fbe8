"""`recflow bench validation`: rows/s per table from the platform's own validation, before/after table."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from recflow.cli import app


def test_validation_bench_on_a_small_grocery_folder(completejourney_folder, tmp_path):
    out, before = tmp_path / "after.json", tmp_path / "before.json"
    args = [
        "bench",
        "validation",
        "--data",
        f"completejourney:{completejourney_folder}",
        "--home",
        str(tmp_path / "h"),
    ]
    result = CliRunner().invoke(app, [*args, "--days-per-run", "1", "--json", str(before)])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, [*args, "--profile", "--baseline", str(before), "--json", str(out)])
    assert result.exit_code == 0, result.output
    one_by_one, pooled = json.loads(before.read_text()), json.loads(out.read_text())
    assert pooled["batches"] == one_by_one["batches"] == 24
    assert pooled["tables"]["events"]["rows"] == one_by_one["tables"]["events"]["rows"] > 500
    assert pooled["rows_quarantined"] == one_by_one["rows_quarantined"] >= 1  # the unknown product
    assert pooled["statuses"] == one_by_one["statuses"]
    assert one_by_one["tables"]["events"]["gx_runs"] == 24 > pooled["tables"]["events"]["gx_runs"]
    assert pooled["profile_top"][0]["cumulative_s"] > 0
    assert "--days-per-run 1" in one_by_one["command"]
    table = out.with_suffix(".md").read_text()
    assert table.count("| 1 | 24 |") == 1 and table.count("| 2 | 24 |") == 1 and "--baseline" in table
