"""`POST /events` in process: the batch contract on every event, quarantine for the rejected, nothing lost."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from serving.server import SETTINGS_ENV, settings_to_env


@pytest.fixture
def service(private_settings, monkeypatch):
    from serving.service import RecflowService

    private_settings.serving.reload_interval_s = 0.2
    monkeypatch.setenv(SETTINGS_ENV, settings_to_env(private_settings))
    svc = RecflowService()
    yield svc
    svc.shutdown()


def _known_item(service) -> str:
    return sorted(service.known_items.ids)[0]


def _quarantined(service) -> list[dict]:
    files = sorted((service.settings.quarantine_dir / "live").rglob("events.jsonl"))
    return [json.loads(line) for f in files for line in f.read_text().splitlines()]


def _logged(service) -> list[dict]:
    files = sorted((service.settings.home / "incoming").rglob("events.jsonl"))
    return [json.loads(line) for f in files for line in f.read_text().splitlines()]


def _recent_items(service, user: str) -> list[str] | None:
    values = service.store.get_online_features(
        features=["user_sequence:recent_items"], entity_rows=[{"user_id": user}]
    ).to_dict()
    return values["recent_items"][0]


def test_the_known_items_are_the_validated_catalogue(service):
    from recflow.data.batches import list_batches

    catalogue = set()
    for batch in list_batches(service.settings.validated_dir):
        catalogue |= set(batch.read("items")["item_id"].astype(str))
    assert service.known_items.ids == catalogue and len(catalogue) > 10


def test_an_unknown_item_and_a_far_future_time_are_rejected_and_quarantined(service):
    user = "u000003"
    before = _recent_items(service, user)
    rows = [
        {"user_id": user, "item_id": "zzz", "event_type": "view"},
        {
            "user_id": user,
            "item_id": _known_item(service),
            "event_type": "view",
            "timestamp": "2999-01-01T00:00:00Z",
        },
    ]
    answer = service.ingest(rows)
    assert (answer.accepted, answer.pushed, answer.rejected) == (0, 0, 2)
    assert answer.error == "All 2 event(s) rejected; see errors."
    assert [(e.index, e.field, e.rule) for e in answer.errors] == [
        (0, "item_id", "expect_column_values_to_be_in_set(item_id)"),
        (1, "timestamp", "expect_column_values_to_be_between(timestamp)"),
    ]
    assert "'zzz' is not in known_item_ids" in answer.errors[0].reason
    assert "2999-01-01T00:00:00+00:00 is after window_end" in answer.errors[1].reason
    kept = _quarantined(service)
    assert [k["event"] for k in kept] == rows  # as sent, with the rule each broke
    assert [k["errors"][0]["rule"] for k in kept] == [e.rule for e in answer.errors]
    assert answer.quarantine_path == str(
        service.settings.quarantine_dir / "live" / datetime.now(UTC).date().isoformat() / "events.jsonl"
    )
    assert _logged(service) == [] and answer.log_path is None  # neither logged for the next batch...
    assert _recent_items(service, user) == before  # ...nor pushed to the online store


def test_a_mixed_request_accepts_the_valid_events_and_lists_the_rejected_ones(service):
    item = _known_item(service)
    now = datetime.now(UTC)
    rows = [
        {"user_id": "brand-new-user", "item_id": item, "event_type": "view"},  # a new user is valid
        {"user_id": "u000004", "item_id": item, "event_type": "refund"},  # malformed: not an event type
        5,  # not an event at all
        {
            "user_id": "u000004",
            "item_id": item,
            "event_type": "view",
            "timestamp": (now - timedelta(days=31)).isoformat(),
        },
        {
            "user_id": "u000004",
            "item_id": item,
            "event_type": "view",
            "timestamp": (now + timedelta(minutes=1)).isoformat(),
        },
        {
            "user_id": "u000004",
            "item_id": item,
            "event_type": "view",
            "timestamp": (now + timedelta(minutes=10)).isoformat(),
        },
        {"user_id": "u000004", "item_id": item, "event_type": "purchase", "shop": "extra field"},
    ]
    answer = service.ingest(rows)
    assert (answer.accepted, answer.pushed, answer.rejected) == (2, 2, 5) and answer.error is None
    assert [(e.index, e.field, e.rule) for e in answer.errors] == [
        (1, "event_type", "schema:literal_error"),
        (2, None, "schema:model_type"),
        (3, "timestamp", "expect_column_values_to_be_between(timestamp)"),
        (5, "timestamp", "expect_column_values_to_be_between(timestamp)"),
        (6, "shop", "schema:extra_forbidden"),
    ]
    assert "before window_start" in answer.errors[2].reason and "after window_end" in answer.errors[3].reason
    logged = _logged(service)
    assert [(e["user_id"], e["event_type"]) for e in logged] == [
        ("brand-new-user", "view"),
        ("u000004", "view"),
    ]
    assert [k["index"] for k in _quarantined(service)] == [1, 2, 3, 5, 6]  # 7 sent = 2 logged + 5 kept
    assert _recent_items(service, "brand-new-user") == [item]


def test_an_item_validated_after_start_becomes_known_on_refresh(service):
    from recflow.data.batches import list_batches

    newest = list_batches(service.settings.validated_dir)[-1]
    day = (newest.day + timedelta(days=1)).isoformat()
    folder = service.settings.validated_dir / day
    shutil.copytree(newest.path, folder)
    items = pd.read_parquet(folder / "items.parquet")
    items.loc[0, "item_id"] = "i-launched-today"
    items.to_parquet(folder / "items.parquet", index=False)
    row = {"user_id": "u000005", "item_id": "i-launched-today", "event_type": "view"}
    assert service.ingest([row]).accepted == 0
    assert service.known_items.refresh() == 1  # the watcher calls this every reload_interval_s
    assert service.ingest([row]).accepted == 1
