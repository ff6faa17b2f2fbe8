"""The load of `recflow bench serving`, for Locust: POST /recommend at one request per simulated user per second.

The users to ask for come from the JSON list in `RECFLOW_BENCH_USERS` (known users with a share of
never-seen ones, as `benchmarks.serving.request_users` picks them); `RECFLOW_BENCH_HEADERS` holds extra
headers (the API key). Locust's user count is the request rate.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from locust import FastHttpUser, constant_throughput, task

USERS: list[str] = json.loads(Path(os.environ["RECFLOW_BENCH_USERS"]).read_text())
HEADERS: dict[str, str] = json.loads(os.environ.get("RECFLOW_BENCH_HEADERS", "{}"))


class Shopper(FastHttpUser):
    """A shopper who opens a page with recommendations once a second."""

    wait_time = constant_throughput(1.0)

    @task
    def recommend(self) -> None:
        self.client.post("/recommend", json={"user_id": random.choice(USERS), "k": 10}, headers=HEADERS)
