"""Drift detection on synthetic batches: quiet days stay quiet, injected drift alarms."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from benchmarks.drift_calibration import land_validated
from monitoring.drift import detect_drift
from monitoring.frames import (
    CATEGORICAL_COLUMNS,
    NUMERICAL_COLUMNS,
    build_profile,
    event_frame,
    frames_for_days,
)
from recflow.data.batches import list_batches
from recflow.settings import load_settings


def test_event_frame_has_every_monitored_column(tiny_settings, tiny_batches):
    reference, current = frames_for_days(
        tiny_settings, [b.day for b in tiny_batches[:4]], [tiny_batches[-1].day]
    )
    assert list(reference.columns) == [*NUMERICAL_COLUMNS, *CATEGORICAL_COLUMNS]
    assert len(current) == len(tiny_batches[-1].read("events"))
    assert reference[list(NUMERICAL_COLUMNS)].notna().all().all()
    assert (reference["user_category_share"].between(0, 1)).all()
    assert reference["item_popularity_rank"].min() >= 1


def test_event_frame_names_an_unknown_item(tiny_batches):
    batch = tiny_batches[0]
    events, items, users = batch.read("events"), batch.read("items"), batch.read("users")
    events.loc[0, "item_id"] = "i-does-not-exist"
    with pytest.raises(ValueError, match="i-does-not-exist"):
        event_frame(events, items, users, build_profile(events, items))


def test_frames_need_a_reference_window_of_two_days(tiny_settings, tiny_batches):
    with pytest.raises(ValueError, match="too short"):
        frames_for_days(tiny_settings, [tiny_batches[0].day], [tiny_batches[-1].day])


def test_a_batch_without_drift_does_not_alarm(tiny_settings, tiny_batches, tmp_path):
    days = [b.day for b in tiny_batches]
    reference, current = frames_for_days(tiny_settings, days[:4], [days[-1]])
    result = detect_drift(reference, current, tiny_settings, tmp_path / "report")

    assert not result.detected
    assert result.share < tiny_settings.monitoring.drift_share_threshold
    assert result.n_columns == len(NUMERICAL_COLUMNS) + len(CATEGORICAL_COLUMNS)
    assert "<html" in result.html_path.read_text()[:2000].lower()
    assert json.loads(result.json_path.read_text())["detected"] is False


def test_an_injected_drift_alarms(tmp_path):
    settings = load_settings("tiny", home=tmp_path / "home", data={"drift_day": 5})
    land_validated(settings)
    days = [b.day for b in list_batches(settings.validated_dir)]
    reference, current = frames_for_days(settings, days[:4], [days[6]])
    result = detect_drift(reference, current, settings, tmp_path / "report")

    assert result.detected
    assert result.share >= settings.monitoring.drift_share_threshold
    # users moved to other categories and new items took the stage
    assert {"user_category_share", "item_popularity_rank"} <= set(result.drifted_columns)
    assert json.loads(result.json_path.read_text())["drifted_columns"] == result.drifted_columns

    # the bulk variant (no preset rendering, for the dashboards' history) decides exactly the same
    light = detect_drift(reference, current, settings, tmp_path / "light", detailed=False)
    assert light.scores == result.scores
    assert light.drifted_columns == result.drifted_columns
    assert (light.share, light.detected) == (result.share, result.detected)


def test_a_p_value_test_would_false_alarm_where_distances_do_not(tiny_settings, tiny_batches, tmp_path):
    """Why the calibration exists: the same quiet batch, judged by p-values, flags columns."""
    days = [b.day for b in tiny_batches]
    reference, current = frames_for_days(tiny_settings, days[:4], [days[-1]])
    # duplicate rows: the same distributions, a bigger sample (like a busier shop)
    big_ref, big_cur = pd.concat([reference] * 20), pd.concat([current] * 20)
    naive = tiny_settings.model_copy(deep=True)
    naive.monitoring.num_stattest, naive.monitoring.cat_stattest = "ks", "chisquare"
    naive.monitoring.num_threshold = naive.monitoring.cat_threshold = 0.05
    naive.monitoring.per_column_threshold = {}
    calibrated = detect_drift(big_ref, big_cur, tiny_settings, tmp_path / "calibrated")
    p_values = detect_drift(big_ref, big_cur, naive, tmp_path / "naive")
    assert not calibrated.detected
    assert p_values.share > calibrated.share


def test_frames_read_the_catalogue_as_of_the_day_from_upserts(tiny_settings, tiny_batches):
    """Batches may hold only the day's new or changed catalogue rows: the frames come out the same."""
    days = [b.day for b in tiny_batches]
    from upserts import as_upserts

    expected = frames_for_days(tiny_settings, days[:4], [days[-1]])
    as_upserts(tiny_settings.validated_dir)
    assert len(list_batches(tiny_settings.validated_dir)[-1].read("items")) < len(
        tiny_batches[-1].read("items")
    )
    got = frames_for_days(tiny_settings, days[:4], [days[-1]])
    for a, b in zip(got, expected, strict=True):
        pd.testing.assert_frame_equal(a, b)


def test_ages_that_are_only_the_calendar_are_not_monitored(completejourney_folder, tiny_settings):
    # every product and household of the grocery year is created the day before its first day: their
    # ages grow by a day each day, the same for every row, and would alarm on every later day
    from features.validation import Validator, validate_batches
    from recflow.data.sources import land_batches

    tiny_settings.data.source = f"completejourney:{completejourney_folder}"
    landed = land_batches(tiny_settings)
    validate_batches(Validator(tiny_settings), landed, tiny_settings)
    days = [b.day for b in landed]
    reference, current = frames_for_days(tiny_settings, days[:6], [days[12]])
    assert "item_age_days" not in reference and "user_tenure_days" not in reference
    assert list(reference.columns) == list(current.columns)
    assert {"price", "hour", "category"} <= set(current.columns)
