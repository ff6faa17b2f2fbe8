"""The row-level contract (features/contract.py) gives Great Expectations' verdict, row by row, in far less time."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from features.contract import row_violations
from features.validation import Validator, events_parameters, load_suite_spec
from recflow.data.schema import conform

START = datetime(2026, 1, 5, tzinfo=UTC)
END = START + timedelta(days=1)


def _events() -> pd.DataFrame:
    """One clean row, then one row for each way an event can break the suite."""
    ok = {"user_id": "u1", "item_id": "i1", "event_type": "view", "timestamp": START, "session_id": "s"}
    rows = [
        ok,
        {**ok, "item_id": "zzz"},  # unknown item
        {**ok, "user_id": "stranger"},  # unknown user
        {**ok, "item_id": None},  # null item
        {**ok, "event_type": "refund"},  # not an event type
        {**ok, "timestamp": START - timedelta(seconds=1)},  # before the window
        {**ok, "timestamp": END},  # the window's end is excluded (strict_max)
        {**ok, "timestamp": datetime(2999, 1, 1, tzinfo=UTC)},  # far future
        {**ok, "timestamp": None},  # no time
        {**ok, "user_id": None, "item_id": "zzz"},  # two rules at once
        {**ok, "timestamp": END - timedelta(microseconds=1)},  # last instant inside: valid
    ]
    frame = pd.DataFrame(rows)
    frame.insert(0, "event_id", [f"e{i}" for i in range(len(rows))])
    frame.loc[len(frame)] = {**ok, "event_id": "e0"}  # a duplicate event id (with row 0)
    return conform(frame, "events")


PARAMS = events_parameters(["u1"], ["i1", "i2"], START, END)


def _great_expectations_verdict(settings, frame) -> dict[int, set[str]]:
    report = Validator(settings).validate("events", frame, PARAMS)[0]
    verdict: dict[int, set[str]] = {}
    for exp in report["expectations"]:
        for i in (exp.get("result") or {}).get("unexpected_index_list") or []:
            verdict.setdefault(int(i), set()).add(f"{exp['expectation_type']}({exp['kwargs']['column']})")
    return verdict


def test_the_same_rows_break_the_same_rules_as_in_great_expectations(tiny_settings):
    frame = _events()
    ours = {i: {v.rule for v in vs} for i, vs in row_violations("events", frame, PARAMS).items()}
    assert ours == _great_expectations_verdict(tiny_settings, frame)
    assert 10 not in ours  # the clean row
    unique = {"expect_column_values_to_be_unique(event_id)"}
    assert ours[0] == ours[11] == unique  # both copies of a duplicated id, as Great Expectations flags them
    assert set(ours) == set(range(0, 10)) | {11}


def test_reasons_name_the_field_the_value_and_the_bound():
    found = row_violations("events", _events(), PARAMS)
    (item,) = found[1]
    assert (item.field, item.reason) == ("item_id", "item_id 'zzz' is not in known_item_ids")
    (future,) = found[7]
    assert future.field == "timestamp"
    assert future.reason.startswith("timestamp 2999-01-01T00:00:00+00:00 is after window_end (2026-01-06")
    (past,) = found[5]
    assert "is before window_start (2026-01-05T00:00:00+00:00)" in past.reason


def test_a_rule_it_cannot_evaluate_fails_loudly():
    spec = load_suite_spec("events")
    spec["expectations"].append({"type": "expect_column_values_to_match_regex", "kwargs": {"column": "x"}})
    with pytest.raises(ValueError, match="expect_column_values_to_match_regex has no row-level"):
        row_violations("events", _events(), PARAMS, suite=spec)
    with pytest.raises(ValueError, match="parameter 'known_item_ids'"):
        row_violations("events", _events(), {"known_user_ids": ["u1"]})


def test_a_small_request_is_checked_in_well_under_a_millisecond_per_row():
    frame = _events().iloc[:5]
    params = events_parameters(["u1"], {f"i{i}" for i in range(50_000)}, START, END)
    row_violations("events", frame, params)
    started = time.perf_counter()
    for _ in range(20):
        row_violations("events", frame, params)
    per_call = (time.perf_counter() - started) / 20
    assert per_call < 0.05, f"{per_call * 1000:.1f} ms per 5-event check"
