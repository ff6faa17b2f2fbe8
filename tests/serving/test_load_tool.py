"""The serving benchmark's load comes from Locust, against the real server."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def test_locust_drives_the_real_service_at_the_asked_rate(private_settings, tmp_path):
    from benchmarks.serving import locust_run, request_users
    from serving.server import running_server

    users = request_users(private_settings, n=200)
    users_file = tmp_path / "users.json"
    users_file.write_text(json.dumps(users))
    with running_server(private_settings) as url:
        locust_run(url, users_file, {}, tmp_path, rate=5, duration=3)  # warm-up: first requests trace graphs
        stats = locust_run(url, users_file, {}, tmp_path, rate=20, duration=4)
    assert stats["errors"] == 0
    assert 40 <= stats["requests"] <= 120, stats  # about 20 req/s for 4 s
    assert 0 < stats["p50_ms"] <= stats["p95_ms"] <= stats["p99_ms"] < 1000
