"""Load benchmark of POST /recommend on loopback with Locust, then the highest rate that meets the p99 target.

The load comes from a standard tool: Locust (`benchmarks/locustfile.py`), headless, one request per
simulated user per second, so its user count is the request rate; its latency percentiles and failure
counts are read from its CSV statistics. `--home` points the benchmark at any trained platform (the
Beauty home that `recflow bench served-quality --home` keeps, for example).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

from benchmarks.docs import replace_block
from recflow.settings import Settings

log = logging.getLogger(__name__)

P99_TARGET_MS = 50.0
WARMUP_S = 3.0
STEP_S = 10.0
STEP_RATES = (150.0, 200.0, 250.0, 300.0, 400.0, 500.0, 600.0, 800.0)
DOC = Path(__file__).resolve().parents[1] / "docs" / "serving.md"
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
RAMP_SECONDS = 5.0  # Locust users start over this long before the measured window (see `locust_run`)
UNKNOWN_SHARE = 0.05  # share of requests for users the shop has never seen (cold start)


def run_serving_bench(
    settings: Settings, json_out: Path, rate: float = 100.0, duration: float = 60.0
) -> dict:
    """Drive `/recommend` with Locust at `rate` req/s for `duration` s, then step the rate up.

    Trains and packages the default models first when the home has none.

    Returns:
        `{"rate_rps", "duration_s", "requests", "errors", "p50_ms", "p95_ms", "p99_ms", "max_rps",
        "in_process_p50_ms", ...}`, also written to `json_out`.
    """
    from serving.server import running_server

    settings = settings.model_copy(deep=True)
    settings.serving.access_log = False  # a log line per request measures the logger, not the service
    tag = ensure_champion(settings)
    users = request_users(settings)
    in_process = in_process_latency(settings, tag, users[:300])
    headers = (
        {"Authorization": f"Bearer {settings.serving.api_key.get_secret_value()}"}
        if settings.serving.api_key
        else {}
    )
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="recflow-locust-") as tmp, running_server(settings) as url:
        users_file = Path(tmp) / "users.json"
        users_file.write_text(json.dumps(users))
        run = partial(locust_run, url, users_file, headers, Path(tmp))
        run(rate, WARMUP_S)
        steady = run(rate, duration)
        steps, max_rps = [], rate if _meets(steady) else 0.0
        for step_rate in (r for r in STEP_RATES if r > rate):
            if not steps or _meets(steps[-1]):
                step = run(step_rate, STEP_S)
                steps.append(step)
                if _meets(step):
                    max_rps = step_rate
    result = {
        **steady,
        "max_rps": max_rps,
        "in_process_p50_ms": in_process,
        "p99_target_ms": P99_TARGET_MS,
        "model": tag,
        "n_items": _catalogue_size(settings, tag),
        "steps": steps,
        "load_tool": f"locust {_locust_version()} (benchmarks/locustfile.py)",
        "workers": settings.serving.workers,
        "cpu_count": os.cpu_count(),
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "command": f"recflow bench serving --json {json_out} --rate {rate:g} --duration {duration:g}"
        f" --home {settings.home}",
    }
    json_out = Path(json_out)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(result, indent=2))
    print_table(result)
    write_doc_figures(result, DOC)
    return result


def locust_run(url: str, users_file: Path, headers: dict, tmp: Path, rate: float, duration: float) -> dict:
    """One headless Locust run at `rate` req/s for `duration` s; its aggregated statistics.

    Raises:
        RuntimeError: when Locust fails or writes no statistics.
    """
    import csv

    prefix = tmp / f"rate{rate:g}"
    users = max(1, int(round(rate)))
    ramp = RAMP_SECONDS
    command = [
        str(Path(sys.executable).parent / "locust"),
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        url,
        "--users",
        str(users),
        # users start spread over `ramp` seconds and the statistics restart once all run: started in
        # the same instant, every user would ask in the same instant of each second, a burst of
        # `rate` requests per second (queueing that no open-loop load has) instead of a steady rate
        "--spawn-rate",
        f"{users / ramp:g}",
        "--reset-stats",
        "--run-time",
        f"{max(1, int(round(duration + ramp)))}s",
        "--csv",
        str(prefix),
        "--only-summary",
        "--loglevel",
        "ERROR",
        "--exit-code-on-error",
        "0",
    ]
    env = {**os.environ, "RECFLOW_BENCH_USERS": str(users_file), "RECFLOW_BENCH_HEADERS": json.dumps(headers)}
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=duration + 120)
    stats = Path(f"{prefix}_stats.csv")
    if proc.returncode != 0 or not stats.exists():
        raise RuntimeError(
            f"locust failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    with stats.open() as f:
        row = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
    requests = int(row["Request Count"])
    return {
        "rate_rps": rate,
        "duration_s": duration,
        "requests": requests,
        "errors": int(row["Failure Count"]),
        "achieved_rps": round(float(row["Requests/s"]), 1),
        "p50_ms": float(row["50%"]),
        "p95_ms": float(row["95%"]),
        "p99_ms": float(row["99%"]),
    }


def in_process_latency(settings: Settings, tag: str, users: list[str]) -> float:
    """p50 in ms of the same pipeline called in process (no HTTP): the floor the server adds to."""
    from features.online import OnlineFeatures
    from features.store import open_store
    from serving.purchases import Purchases
    from serving.recommender import Recommender

    features = OnlineFeatures(open_store(settings), settings)
    recommender = Recommender.from_model_store(settings, tag, features, Purchases.from_validated(settings))
    for user in users[:20]:
        recommender.recommend(user, 10)  # warm-up (tf.function tracing)
    times = []
    for user in users:
        t = time.perf_counter()
        recommender.recommend(user, 10)
        times.append(time.perf_counter() - t)
    return round(float(np.median(times)) * 1000, 2)


def request_users(settings: Settings, n: int = 5000, seed: int = 0) -> list[str]:
    """User ids to request: known users from the validated events, with a share of never-seen ones."""
    from recflow.data.batches import read_events

    known = read_events(settings.validated_dir)["user_id"].astype(str).unique()
    rng = np.random.default_rng(seed)
    picks = rng.choice(known, size=n)
    unknown = rng.random(n) < UNKNOWN_SHARE
    return [f"new-{i}" if cold else str(u) for i, (u, cold) in enumerate(zip(picks, unknown, strict=True))]


def ensure_champion(settings: Settings) -> str:
    """The champion tag; promotes the newest packaged model, or trains and packages the default models."""
    from serving.package import champion_tag, latest_tag, promote, save_to_model_store

    tag = champion_tag(settings) or latest_tag(settings)
    if tag is None:
        print("No packaged model: landing, validating, building features and training the default models.")
        bundle_path, metrics = _train_default(settings)
        tag = save_to_model_store(
            settings, bundle_path, {"metrics": metrics, "trained_by": "recflow bench serving"}
        )
    if champion_tag(settings) != tag:
        promote(settings, tag)
    return tag


def _train_default(settings: Settings) -> tuple[Path, dict]:
    from features.store import materialize, prepare_feature_store
    from features.validation import Validator, validate_batch
    from models.train import train_models
    from recflow.data.sources import land_batches

    validator = Validator(settings)
    for batch in land_batches(settings):
        validate_batch(validator, batch, settings)
    store = prepare_feature_store(settings)
    materialize(settings, store)
    result = train_models(settings, store)
    return result.bundle_path, result.metrics


def _catalogue_size(settings: Settings, tag: str) -> int:
    from models.catalogue import Catalogue
    from serving.package import model_info

    path, _ = model_info(settings, tag)
    return len(Catalogue.load(path))


def _locust_version() -> str:
    from importlib.metadata import version

    return version("locust")


def _meets(step: dict) -> bool:
    """Zero errors, p99 within the target, and the rate actually reached (a closed loop can fall behind)."""
    return (
        step["errors"] == 0
        and step["p99_ms"] <= P99_TARGET_MS
        and step["achieved_rps"] >= 0.95 * step["rate_rps"]
    )


def print_table(result: dict) -> None:
    """The steady run, the rate steps and the verdict, as a table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"POST /recommend, Locust, loopback ({result['model']}, {result['n_items']} items)")
    for column in ("rate req/s", "seconds", "requests", "errors", "achieved", "p50 ms", "p95 ms", "p99 ms"):
        table.add_column(column, justify="right")
    for row in [result, *result["steps"]]:
        table.add_row(
            f"{row['rate_rps']:g}",
            f"{row['duration_s']:g}",
            str(row["requests"]),
            str(row["errors"]),
            f"{row['achieved_rps']:g}",
            f"{row['p50_ms']:.1f}",
            f"{row['p95_ms']:.1f}",
            f"{row['p99_ms']:.1f}",
        )
    console = Console()
    console.print(table)
    console.print(
        f"max_rps meeting p99 <= {result['p99_target_ms']:g} ms with zero errors: {result['max_rps']:g}; "
        f"in-process p50 {result['in_process_p50_ms']:.2f} ms vs HTTP p50 {result['p50_ms']:.2f} ms; "
        f"{result['workers']} worker(s), {result['cpu_count']} CPUs, load average before/after "
        f"{result['load_avg_1m'][0]:g}/{result['load_avg_1m'][1]:g}"
    )


def write_doc_figures(result: dict, doc: Path) -> None:
    """Replace the figures between the bench markers of `doc` with this run's (the doc is never hand-typed)."""
    rows = [
        "| rate req/s | seconds | requests | errors | achieved req/s | p50 ms | p95 ms | p99 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in [result, *result["steps"]]:
        rows.append(
            f"| {r['rate_rps']:g} | {r['duration_s']:g} | {r['requests']} | {r['errors']} | {r['achieved_rps']:g} "
            f"| {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} |"
        )
    replace_block(
        doc,
        "serving",
        [
            f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with `{result['command']}`",
            f"(model `{result['model']}`, {result['n_items']} items, {result['workers']} worker(s), "
            f"{result['cpu_count']} CPUs, load average before/after {result['load_avg_1m']}, load from "
            f"{result['load_tool']}):",
            "",
            *rows,
            "",
            f"`max_rps` (p99 <= {result['p99_target_ms']:g} ms, zero errors): **{result['max_rps']:g}**; "
            f"`in_process_p50_ms`: **{result['in_process_p50_ms']}** (same pipeline, no HTTP).",
        ],
    )
