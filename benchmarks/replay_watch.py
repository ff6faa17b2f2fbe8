"""Watch a running `recflow up --replay` from outside, as a user would: Prefect API, Evidently, the service.

`python -m benchmarks.replay_watch --home .recflow/replay --minutes 5` polls, while the replay runs:

* the Prefect API: flow runs per deployment and state (completed daily runs, retrain runs);
* the Evidently workspace (`<home>/evidently`): the number of snapshots;
* the service: `GET /metadata` (which model serves) and a steady stream of `POST /recommend`
  (every failed call is counted from the moment the first model serves);

prints one line every 10 s and a JSON summary at the end (the issue's "done when" figures).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import threading
import time
from collections import Counter
from pathlib import Path

import httpx


def prefect_runs(api: str) -> Counter:
    """Flow runs per `(deployment name, state type)` on the Prefect server at `api`."""
    deployments = httpx.post(f"{api}/deployments/filter", json={"limit": 200}, timeout=10).json()
    names = {d["id"]: d["name"] for d in deployments}
    runs = httpx.post(f"{api}/flow_runs/filter", json={"limit": 200}, timeout=10).json()
    return Counter((names.get(r["deployment_id"], "(no deployment)"), r["state_type"]) for r in runs)


def evidently_snapshots(home: Path) -> int:
    """Snapshots stored in the Evidently workspace of `home` (all projects)."""
    return len(list((home / "evidently").glob("*/snapshots/*.json")))


class RecommendLoad(threading.Thread):
    """POST /recommend in a loop; counts answers once a model serves (before that 503 is expected)."""

    def __init__(self, url: str, users: int) -> None:
        super().__init__(daemon=True)
        self.url, self.users = url, users
        self.ok = self.failed = 0
        self.failures: list[str] = []
        self.serving = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.stop.is_set():
                body = {"user_id": f"u{random.randrange(self.users):06d}", "k": 10}
                try:
                    answer = client.post(f"{self.url}/recommend", json=body)
                    good, why = answer.status_code == 200, str(answer.status_code)
                except httpx.HTTPError as e:
                    good, why = False, type(e).__name__
                if good:
                    self.serving.set()
                    self.ok += 1
                elif self.serving.is_set():
                    self.failed += 1
                    self.failures.append(why)
                time.sleep(0.05 if self.serving.is_set() else 1.0)  # no model yet: ask once a second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=Path(".recflow/replay"))
    parser.add_argument("--prefect", default="http://127.0.0.1:4200/api")
    parser.add_argument("--service", default="http://127.0.0.1:3000")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--json", type=Path, default=None, help="write the summary here too")
    args = parser.parse_args()

    load = RecommendLoad(args.service, args.users)
    load.start()
    started, models, runs, snapshots = time.monotonic(), [], Counter(), 0
    while time.monotonic() - started < args.minutes * 60:
        with contextlib.suppress(httpx.HTTPError, ValueError):  # the server is busy: next time
            runs = prefect_runs(args.prefect)
        snapshots = evidently_snapshots(args.home)
        try:
            tag = httpx.get(f"{args.service}/metadata", timeout=5).json().get("model")
        except (httpx.HTTPError, ValueError):
            tag = None
        if tag and (not models or models[-1] != tag):
            models.append(tag)
        elapsed = time.monotonic() - started
        print(
            f"{elapsed:5.0f}s  daily completed {runs[('daily-ingest-validate-drift', 'COMPLETED')]:2d}  "
            f"retrain-on-drift completed {runs[('retrain-on-drift', 'COMPLETED')]:d} "
            f"(cancelled {runs[('retrain-on-drift', 'CANCELLED')]:d})  snapshots {snapshots:3d}  "
            f"models {len(models)}  recommend ok {load.ok} failed {load.failed}",
            flush=True,
        )
        time.sleep(10)
    load.stop.set()
    summary = {
        "seconds": round(time.monotonic() - started),
        "flow_runs": {f"{d} {s}": n for (d, s), n in sorted(runs.items())},
        "daily_completed": runs[("daily-ingest-validate-drift", "COMPLETED")],
        "retrain_completed": runs[("retrain-on-drift", "COMPLETED")] + runs[("weekly-retrain", "COMPLETED")],
        "retrain_on_drift_completed": runs[("retrain-on-drift", "COMPLETED")],
        "evidently_snapshots": snapshots,
        "models_served": models,
        "recommend_ok": load.ok,
        "recommend_failed_after_first_model": load.failed,
        "failures": Counter(load.failures),
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
