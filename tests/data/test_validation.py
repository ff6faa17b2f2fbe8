"""Great Expectations data contract: every row ends validated or quarantined, with its reasons."""

import json
import shutil

import pandas as pd
import pytest

from features.validation import KNOWN, Validator, load_suite_spec, validate_batch, validate_batches
from recflow.data.batches import Batch, day_bounds, list_batches
from recflow.data.schema import KEYS, conform
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


def _validated_keys(settings, table: str, before) -> set[str]:
    files = [b.table(table) for b in list_batches(settings.validated_dir) if b.day < before]
    return set(pd.concat([pd.read_parquet(f) for f in files])[KEYS[table]].dropna())


def test_known_ids_follow_a_day_validated_again(landed, validator, tiny_settings, tmp_path):
    validate_batches(validator, landed[:3], tiny_settings)
    day = landed[3].day
    kept = validator.known_ids("items", day)
    assert kept == _validated_keys(tiny_settings, "items", day) and kept
    assert validator.known_ids("items", day) == kept  # answered again from what it keeps
    items = landed[1].read("items")  # the second day again, with one more item
    items = pd.concat([items, items.iloc[:1].assign(item_id="newcomer")], ignore_index=True)
    outcome = validate_batch(validator, _tampered(landed[1], tmp_path, items=items), tiny_settings)
    assert outcome.status == "valid"
    again = validator.known_ids("items", day)
    assert again == _validated_keys(tiny_settings, "items", day) == kept | {"newcomer"}


def test_data_docs_are_written(landed, validator, tiny_settings):
    validate_batch(validator, landed[0], tiny_settings)
    index = validator.build_docs()
    assert index.exists() and "html" in index.read_text().lower()


# ---------------------------------------------------------------- several days per Great Expectations run


def _tampered_year(settings, folder, root) -> list[Batch]:
    """The small Complete Journey days, landed, with bad rows of every kind copied under `root`."""
    settings.data.source = f"completejourney:{folder}"
    landed = land_batches(settings)
    root.mkdir()
    out = []
    for n, batch in enumerate(landed):
        path = root / batch.path.name
        shutil.copytree(batch.path, path)
        events, users = batch.read("events"), batch.read("users")
        if n == 2:
            events.loc[0, "user_id"] = None  # null
            events.loc[1, "event_id"] = events.loc[2, "event_id"]  # duplicate within the day
        if n in (3, 4):
            events.loc[0, "event_id"] = "same-id-on-two-days"  # not a duplicate: batches are days
        if n == 5:
            events.loc[0, "timestamp"] += pd.Timedelta(days=1)  # outside its day
        if n == 7:  # a new household arrives on a batch that is quarantined whole
            users = pd.concat([users, users.iloc[:0]], ignore_index=True)
            newbie = pd.DataFrame(
                {"user_id": ["newbie"], "signup_date": [pd.Timestamp("2017-03-01", tz="UTC")]}
            )
            users = conform(pd.concat([users, newbie.assign(region="unknown", age_band="unknown")]), "users")
            events.loc[: len(events) // 2, "item_id"] = None
        if n == 9:  # (day 8 is the shop's closed day: no events)
            events.loc[0, "user_id"] = "newbie"  # unknown: the batch that brought it was quarantined
        if n == 10:
            events.loc[0, "user_id"] = KNOWN  # an id spelled like the token is still unknown
        events.to_parquet(path / "events.parquet", index=False)
        users.to_parquet(path / "users.parquet", index=False)
        out.append(Batch(batch.day, path))
    return out


def _row_results(report: dict, table: str) -> list[tuple]:
    return [
        (
            e["expectation_type"],
            e["success"],
            (e.get("result") or {}).get("unexpected_index_list"),
            (e.get("result") or {}).get("unexpected_list"),
        )
        for e in report["validation_results"][table]["expectations"]
    ]


def test_pooled_days_give_the_verdicts_of_one_day_at_a_time(tiny_settings, completejourney_folder, tmp_path):
    batches = _tampered_year(tiny_settings, completejourney_folder, tmp_path / "tampered")
    homes = {}
    for name, per_run in (("alone", 1), ("pooled", 31)):
        settings = tiny_settings.model_copy(
            update={
                "home": tmp_path / name,
                "data": tiny_settings.data.model_copy(update={"validation_days_per_run": per_run}),
            }
        )
        validator = Validator(settings)
        homes[name] = (settings, validate_batches(validator, batches, settings), validator.runs["events"])
    (alone, alone_out, alone_runs), (pooled, pooled_out, pooled_runs) = homes["alone"], homes["pooled"]
    assert pooled_runs < alone_runs // 3  # far fewer Great Expectations runs
    assert [o.to_dict() for o in pooled_out] == [o.to_dict() for o in alone_out]
    statuses = [o.status for o in alone_out]
    assert statuses[7] == "quarantined" and statuses[9] == "partial"  # day 9 validated after day 7
    for outcome in alone_out:
        for table in ("events", "items", "users"):
            for root in ("validated_dir", "quarantine_dir"):
                a, p = (getattr(s, root) / outcome.day / f"{table}.parquet" for s in (alone, pooled))
                assert a.exists() == p.exists(), (outcome.day, table, root)
                if a.exists():
                    pd.testing.assert_frame_equal(pd.read_parquet(a), pd.read_parquet(p))
        report = alone.quarantine_dir / outcome.day / "report.json"
        if report.exists():
            a, p = (
                json.loads((s.quarantine_dir / outcome.day / "report.json").read_text())
                for s in (alone, pooled)
            )
            for table in ("events", "items", "users"):
                assert _row_results(p, table) == _row_results(a, table), (outcome.day, table)
    bad = pd.concat(
        [pd.read_parquet(f) for f in alone.quarantine_dir.glob("*/events.parquet")], ignore_index=True
    )
    reasons = " ".join(bad["__failed_expectations"])
    assert (
        "unique(event_id)" in reasons
        and "not_be_null(user_id)" in reasons
        and "between(timestamp)" in reasons
    )
    assert {"newbie", KNOWN} <= set(bad["user_id"].dropna())
    assert "same-id-on-two-days" not in set(bad["event_id"])


def test_great_expectations_still_copies_an_expectations_kwargs_per_kwarg(landed, validator, tiny_settings):
    """Why known ids reach Great Expectations as one token (`features.validation._known_tokens`): GX 1.24
    rebuilds `Expectation.configuration` (a pydantic `.dict()` of every kwarg, value set included) many
    times per expectation and run. When this fails, GX stopped doing so and the token can go."""
    import cProfile
    import pstats

    events = landed[0].read("events")
    start, end = day_bounds(landed[0].day)
    params = {"known_user_ids": ["x"], "known_item_ids": ["x"], "window_start": start, "window_end": end}
    profile = cProfile.Profile()
    profile.runcall(validator.validate, "events", events, params)
    calls = sum(
        stat[1]
        for (path, _, name), stat in pstats.Stats(profile).stats.items()
        if name == "configuration" and path.endswith("great_expectations/expectations/expectation.py")
    )
    expectations = len(load_suite_spec("events")["expectations"])
    assert calls > 20 * expectations, calls
