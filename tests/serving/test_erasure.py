"""Erasure end to end: a tiny home built by the pipeline and the live service, one user erased, no trace left.

The search looks for the id in every file under the home three ways: the raw bytes, every text value of
every parquet file (decoded: dictionary and snappy encodings would hide bytes) and every row of every
SQLite file (dumped). Before erasure the same search must find the id in each kind of store, so a search
that sees nothing cannot pass by accident.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pyarrow.parquet as pq
import pytest

from recflow.data.batches import list_batches, read_events
from recflow.data.sources import land_batches
from recflow.erasure import audit_hashes, forget_user, user_hash
from recflow.settings import load_settings

ADMIN = {"Authorization": "Bearer erasure-admin-5e1f"}


def traces(home: Path, user_id: str) -> set[str]:
    """Every file under `home` (relative paths) in which `user_id` occurs, raw or decoded."""
    needle, found = user_id.encode(), set()
    for path in home.rglob("*"):
        if not path.is_file():
            continue
        rel = str(path.relative_to(home))
        raw = path.read_bytes()
        if needle in raw:
            found.add(rel)
        elif path.suffix == ".parquet":
            frame = pq.read_table(path).to_pandas()
            text = frame.select_dtypes(include=["object", "string", "category"]).astype(str)
            if text.apply(lambda c: c.str.contains(user_id, regex=False)).to_numpy().any():
                found.add(rel)
        elif raw.startswith(b"SQLite format 3\x00"):
            with sqlite3.connect(path) as db:
                if any(user_id in line for line in db.iterdump()):
                    found.add(rel)
    return found


@pytest.mark.slow
def test_forget_removes_a_user_from_every_store_under_the_home(tmp_path):
    home = tmp_path / "home"
    settings = load_settings(
        "tiny",
        home=home,
        serving={"api_keys": {ADMIN["Authorization"][7:]: "admin"}, "reload_interval_s": 0.3},
    )
    batches = land_batches(settings)
    events = read_events(settings.raw_dir)
    user = events["user_id"].value_counts().index[0]  # u + 6 digits: no other value contains it
    other = events["user_id"].value_counts().index[1]
    # one broken event of the user: validation keeps it in the batch quarantine, the rest goes on
    day = next(b for b in batches if (b.read("events")["user_id"] == user).any())
    frame = day.read("events")
    frame.loc[frame.index[frame["user_id"] == user][0], "event_type"] = "clicked"
    frame.to_parquet(day.table("events"), index=False)

    env = os.environ | {"RECFLOW_HOME": str(home), "RECFLOW_PROFILE": "tiny"}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "recflow.cli", "run"], env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    from serving.server import running_server

    with running_server(settings) as url:
        known = httpx.post(f"{url}/recommend", json={"user_id": user, "k": 5}, headers=ADMIN).json()
        assert known["fallback"] is False
        item = events["item_id"].iloc[0]
        sent = [
            {"user_id": user, "item_id": item, "event_type": "purchase"},
            {"user_id": user, "item_id": "no-such-item", "event_type": "view"},  # -> live quarantine
            {"user_id": other, "item_id": item, "event_type": "view"},
        ]
        r = httpx.post(f"{url}/events", json={"events": sent}, headers=ADMIN)
        assert r.status_code == 200 and r.json()["accepted"] == 2, r.text

        time.sleep(3 * settings.experiments.flush_interval_s)  # the service writes its answer logs
        before = traces(home, user)
        for store in ("raw/", "validated/", "quarantine/2", "quarantine/live/", "incoming/", "feature_repo/"):
            assert any(p.startswith(store) for p in before), (store, sorted(before))
        assert any(p.endswith("online.db") for p in before)

        r = httpx.delete(f"{url}/users/{user}", headers=ADMIN)
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["removed"] > 0 and answer["unhandled"] == [] and user not in r.text
        time.sleep(3 * settings.experiments.flush_interval_s)  # any buffered row of the user would be written
        assert traces(home, user) == set()
        assert any(p.startswith("experiments/") for p in before)  # the answers logged for the user went too

        after = httpx.post(f"{url}/recommend", json={"user_id": user, "k": 5}, headers=ADMIN).json()
        assert after["fallback"] is True  # answered as a new user at once
        still = httpx.post(f"{url}/recommend", json={"user_id": other, "k": 5}, headers=ADMIN).json()
        assert still["fallback"] is False  # the others are untouched

    # the user's new request after erasure is new activity, logged as a new user's would be
    assert traces(home, user) <= {"experiments/experiments.db", "experiments/experiments.db-wal"}
    assert audit_hashes(settings) == [user_hash(settings, user)]
    audit = (home / "audit" / "erasures.jsonl").read_text()
    assert user not in audit and json.loads(audit)["source"] == "api"

    # everything else is kept: the other user's rows, every batch, the live log
    assert len(list_batches(settings.raw_dir)) == settings.data.n_days
    assert (read_events(settings.raw_dir)["user_id"] == other).sum() == (events["user_id"] == other).sum()
    assert other in "".join(p.read_text() for p in (home / "incoming").rglob("*.jsonl"))

    # the next training set never sees the user
    from features.compute import compute_features

    tables = compute_features(settings)
    for name, path in tables.paths.items():
        table = pd.read_parquet(path)
        if "user_id" in table:
            assert user not in set(table["user_id"]), name
    assert user not in set(read_events(settings.validated_dir)["user_id"])


def test_an_id_too_short_to_erase_safely_is_refused(tiny_settings):
    with pytest.raises(ValueError, match="expected 3-64"):
        forget_user(tiny_settings, "u1")
    assert not (tiny_settings.home / "audit" / "erasures.jsonl").exists()
