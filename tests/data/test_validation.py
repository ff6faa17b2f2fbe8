"""Great Expectations data contract: every row ends validated or quarantined, with its reasons."""

import json
import shutil

import pandas as pd
import pytest

from features.validation import Validator, validate_batch
from recflow.data.batches import Batch, list_batches
from recflow.data.sources import land_batches


@pytest.fixture
def landed(tiny_settings):
    return land_batches(tiny_settings)


@pytest.fixture
def validator(tiny_settings):
    return Validator(tiny_settings)


def _tampered(batch: Batch, root, **tables) -> Batch:
    """A copy of `batch` under `root` with some tables replaced."""
    path = root / batch.path.name
    shutil.copytree(batch.path, path)
    for name, df in tables.items():
        df.to_parquet(path / f"{name}.parquet", index=False)
    return Batch(batch.day, path)


def _counts(settings, day: str, table: str) -> tuple[int, int]:
    valid = settings.validated_dir / day / f"{table}.parquet"
    quarantined = settings.quarantine_dir / day / f"{table}.parquet"
    n_valid = len(pd.read_parquet(valid)) if valid.exists() else 0
    n_bad = len(pd.read_parquet(quarantined)) if quarantined.exists() else 0
    return n_valid, n_bad


def test_clean_batch_is_fully_validated(landed, validator, tiny_settings):
    outcome = validate_batch(validator, landed[0], tiny_settings)
    assert outcome.status == "valid" and outcome.success
    assert outcome.rows_quarantined == 0 and outcome.rows_valid == outcome.rows_in > 0
    assert _counts(tiny_settings, outcome.day, "events") == (len(landed[0].read("events")), 0)
    assert not (tiny_settings.quarantine_dir / outcome.day).exists()


def test_a_few_bad_rows_are_quarantined_alone(landed, validator, tiny_settings, tmp_path):
    raw = landed[1]
    events = raw.read("events")
    events.loc[0, "item_id"] = "i-unknown"  # not in the catalogue
    events.loc[1, "event_type"] = "click"  # not an allowed type
    events.loc[2, "timestamp"] = events.loc[2, "timestamp"] + pd.Timedelta(days=3)  # outside the day
    outcome = validate_batch(validator, _tampered(raw, tmp_path, events=events), tiny_settings)
    assert outcome.status == "partial" and outcome.success
    assert outcome.tables["events"].rows_quarantined == 3
    n_valid, n_bad = _counts(tiny_settings, outcome.day, "events")
    assert (n_valid, n_bad) == (len(events) - 3, 3)  # every row in exactly one place
    bad = pd.read_parquet(tiny_settings.quarantine_dir / outcome.day / "events.parquet")
    reasons = " ".join(bad["__failed_expectations"])
    assert "item_id" in reasons and "event_type" in reasons and "timestamp" in reasons
    report = json.loads((tiny_settings.quarantine_dir / outcome.day / "report.json").read_text())
    assert report["status"] == "partial" and report["tables"]["events"]["rows_quarantined"] == 3


def test_corrupted_batch_is_quarantined_whole(landed, validator, tiny_settings, tmp_path):
    raw = landed[2]
    items = raw.read("items")
    items["price"] = -1.0  # every price broken: far beyond max_bad_row_share
    outcome = validate_batch(validator, _tampered(raw, tmp_path, items=items), tiny_settings)
    assert outcome.status == "quarantined" and not outcome.success
    assert "price" in outcome.reason
    assert not (tiny_settings.validated_dir / outcome.day).exists()
    for table in ("events", "items", "users"):
        assert _counts(tiny_settings, outcome.day, table) == (0, len(raw.read(table)))


def test_missing_column_is_a_table_level_failure(landed, validator, tiny_settings, tmp_path):
    raw = landed[3]
    events = raw.read("events").drop(columns=["session_id"])
    outcome = validate_batch(validator, _tampered(raw, tmp_path, events=events), tiny_settings)
    assert outcome.status == "quarantined"
    assert outcome.tables["events"].table_level_failure


def test_string_timestamps_are_rejected(landed, validator, tiny_settings, tmp_path):
    raw = landed[3]
    events = raw.read("events")
    events["timestamp"] = events["timestamp"].astype(str)
    outcome = validate_batch(validator, _tampered(raw, tmp_path, events=events), tiny_settings)
    assert outcome.status == "quarantined"


def test_batch_mode_quarantines_on_one_bad_row(landed, tiny_settings, tmp_path):
    settings = tiny_settings.model_copy(
        update={"data": tiny_settings.data.model_copy(update={"validation": "batch"})}
    )
    raw = landed[1]
    events = raw.read("events")
    events.loc[0, "user_id"] = None
    outcome = validate_batch(Validator(settings), _tampered(raw, tmp_path, events=events), settings)
    assert outcome.status == "quarantined"


def test_revalidation_does_not_duplicate_rows(landed, validator, tiny_settings):
    first = validate_batch(validator, landed[0], tiny_settings)
    second = validate_batch(validator, landed[0], tiny_settings)
    assert first.rows_valid == second.rows_valid
    assert _counts(tiny_settings, first.day, "events")[0] == len(landed[0].read("events"))
    assert len(list_batches(tiny_settings.validated_dir)) == 1


def test_data_docs_are_written(landed, validator, tiny_settings):
    validate_batch(validator, landed[0], tiny_settings)
    index = validator.build_docs()
    assert index.exists() and "html" in index.read_text().lower()
