"""`recflow bench champion-age`: one package served on later days of a small dated log, in its variants."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
from completejourney_data import COMPLETEJOURNEY_FIRST_DAY, write_completejourney_folder
from typer.testing import CliRunner

from recflow.cli import app


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_champion_age_serves_one_package_on_later_days(tmp_path):
    folder = tmp_path / "cj"
    write_completejourney_folder(folder, households=30, days=14)
    first = date.fromisoformat(COMPLETEJOURNEY_FIRST_DAY)
    trained_on = first + timedelta(days=7)
    days = [first + timedelta(days=9), first + timedelta(days=12)]
    out = tmp_path / "age.json"
    args = ["bench", "champion-age", "--data", f"completejourney:{folder}", "--profile", "tiny"]
    args += ["--home", str(tmp_path / "home"), "--json", str(out), "--train-days", "7"]
    args += ["--holdout-days", "2"]
    args += ["--trained-on", trained_on.isoformat(), "--days", ",".join(d.isoformat() for d in days)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())
    assert written["trained_on"] == trained_on.isoformat() and written["window"][1] == trained_on.isoformat()
    assert [r["day"] for r in written["days"]] == [d.isoformat() for d in days]
    assert [r["age_days"] for r in written["days"]] == [2, 5]
    for row in written["days"]:
        assert row["users"] > 0
        figures = row["ndcg@10"]
        assert set(figures) == {"package", "unclipped", "without_ranker"}
        assert all(v is not None and 0.0 <= v <= 1.0 for v in figures.values())
        if not written["ranker_serving"]:  # one package, three names: the same lists
            assert len(set(figures.values())) == 1
    assert (
        out.with_suffix(".md").read_text().count("| 20") == 2 and out.with_suffix(".png").stat().st_size > 0
    )

    # a day the package learned is refused with what was wrong, before anything trains
    bad = [*args[:-2], "--days", trained_on.isoformat()]
    refused = CliRunner().invoke(app, bad)
    assert refused.exit_code != 0 and "learned them" in refused.output
