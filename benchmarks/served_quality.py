"""Served quality, measured from outside: what `POST /recommend` answers, scored against held-back items.

`recflow bench served-quality --dataset PATH --json OUT` does what a new user would do with a data set
in the Amazon format, and nothing else:

1. holds back each user's last item (writes the rest, in the same format, to a temporary folder);
2. runs the platform on the rest with the real command line (`recflow run --data amazon:...`, in a
   home of its own): validation, the feature store, training, the gate, the package;
3. starts the real service over HTTP (`recflow serve`'s BentoML server) and asks `/recommend` (k=10)
   for every user, `--concurrency` requests in flight;
4. scores the answers against the held-back items (HR@10, NDCG@10), and scores the same package
   in process through the batch scorer (`models.scorer.BatchScorer`, the inputs read from the same
   online store): served and in-process must agree.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
from rich.console import Console

from benchmarks.docs import replace_block
from recflow.data.amazon import find_sequence_file, read_amazon_sequences
from recflow.settings import Settings, load_settings

K = 10
DOC = Path(__file__).resolve().parents[1] / "docs" / "models.md"


def hold_back_last_items(dataset: Path, folder: Path) -> dict[str, str]:
    """Write `dataset` without each user's last item into `folder` (same format); return user -> held-back item."""
    data = read_amazon_sequences(dataset)
    txt = find_sequence_file(dataset)
    folder.mkdir(parents=True, exist_ok=True)
    lines, held = [], {}
    for user, items in zip(data.users, data.sequences, strict=True):
        if len(items) < 2:
            continue  # nothing would be left to learn the user from
        held[user] = items[-1]
        lines.append(" ".join([user, *items[:-1]]))
    (folder / txt.name).write_text("\n".join(lines) + "\n")
    attributes = txt.with_name(f"{txt.stem}_item2attributes.json")
    if attributes.exists():
        shutil.copy(attributes, folder / attributes.name)
    return held


def run_platform(data: str, home: Path, profile: str | None = None, echo=print) -> tuple[dict, float]:
    """`recflow run --data DATA --home HOME` as a subprocess, its lines echoed as they come.

    Returns its summary and its wall seconds.

    Raises:
        RuntimeError: when the run fails (its last lines are quoted).
    """
    from collections import deque

    summary = home / "summary.json"
    command = [sys.executable, "-m", "recflow.cli", "run", "--data", data, "--home", str(home)]
    command += ["--summary", str(summary)] + (["--profile", profile] if profile else [])
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # its own temporary server
    tail: deque[str] = deque(maxlen=60)
    start = time.perf_counter()
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line.rstrip())
            echo(f"  | {line.rstrip()}")
    seconds = time.perf_counter() - start
    if proc.returncode != 0 or not summary.exists():
        raise RuntimeError(f"`{' '.join(command)}` failed with {proc.returncode}:\n" + "\n".join(tail))
    return json.loads(summary.read_text()), seconds


async def ask_everyone(url: str, users: list[str], concurrency: int, headers: dict) -> dict:
    """POST /recommend (k=10) for every user, `concurrency` in flight; answers, latencies, failures."""
    import aiohttp

    answers: dict[str, dict] = {}
    latencies: list[float] = []
    failed: list[str] = []
    queue: asyncio.Queue[str] = asyncio.Queue()
    for user in users:
        queue.put_nowait(user)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:

        async def worker() -> None:
            while not queue.empty():
                user = queue.get_nowait()
                start = time.perf_counter()
                try:
                    async with session.post(f"{url}/recommend", json={"user_id": user, "k": K}) as response:
                        body = await response.json(content_type=None)
                        if response.status != 200:
                            failed.append(f"{user}: HTTP {response.status} {str(body)[:200]}")
                            continue
                except (TimeoutError, aiohttp.ClientError) as e:
                    failed.append(f"{user}: {type(e).__name__} {e}")
                    continue
                latencies.append(time.perf_counter() - start)
                answers[user] = body

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return {"answers": answers, "latencies": np.array(latencies), "failed": failed, "seconds": elapsed}


def ask_service(served: Settings, users: list[str], concurrency: int, echo=print) -> dict:
    """Start the real service (`serving.server.running_server`) on `served`'s home and ask `/recommend`
    for every user (after a warm-up of 50): `ask_everyone`'s result."""
    from serving.server import running_server

    headers = {}
    if served.serving.api_key is not None:
        headers["Authorization"] = f"Bearer {served.serving.api_key.get_secret_value()}"
    with running_server(served) as url:
        echo(f"asking {url}/recommend for {len(users)} users, {concurrency} in flight")
        asyncio.run(ask_everyone(url, users[:50], concurrency, headers))  # warm-up
        return asyncio.run(ask_everyone(url, users, concurrency, headers))


def request_figures(asked: dict) -> dict:
    """The service's side of an `ask_everyone` result: failures, fallbacks, throughput, latency."""
    latencies = asked["latencies"] * 1000
    return {
        "failed": len(asked["failed"]),
        "fallback": sum(bool(a.get("fallback")) for a in asked["answers"].values()),
        "requests_per_second": round(len(asked["answers"]) / asked["seconds"], 1),
        "p50_ms": round(float(np.percentile(latencies, 50)), 2) if len(latencies) else None,
        "p99_ms": round(float(np.percentile(latencies, 99)), 2) if len(latencies) else None,
    }


def service_line(result: dict) -> str:
    """`request_figures` in words: failures, fallbacks, throughput and latency."""
    return (
        f"failed {result['failed']}, fallback {result['fallback']}; {result['requests_per_second']} req/s, "
        f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms"
    )


def in_process_lists(settings: Settings, users: list[str]) -> dict[str, list[str]]:
    """The champion package's top-10 of `users` through the batch scorer, inputs from the same online store."""
    from features.online import OnlineFeatures
    from features.store import open_store
    from serving.package import champion_tag
    from serving.purchases import Purchases
    from serving.recommender import Recommender

    features = OnlineFeatures(open_store(settings), settings)
    recommender = Recommender.from_model_store(
        settings, champion_tag(settings), features, Purchases.from_validated(settings)
    )
    online = features.users(users)
    known = [(u, f) for u, f in zip(users, online, strict=True) if f is not None]
    ranked = recommender.scorer.recommend([recommender.query(u, f) for u, f in known], K)
    out = {u: recommender.bundle.catalogue.ids(r.rows) for (u, _), r in zip(known, ranked, strict=True)}
    cold = recommender.bundle.catalogue.ids(recommender.scorer.popular_rows(None)[:K])
    return {u: out.get(u, cold) for u in users}


def hit_metrics(lists: dict[str, list[str]], held: dict[str, str]) -> dict[str, float]:
    """HR@10 and NDCG@10 of `lists` against one held-back item per user (users without a list score 0)."""
    from models.evaluate import ranking_metrics

    users = sorted(held)
    m = ranking_metrics([lists.get(u, []) for u in users], [{held[u]} for u in users], K)
    return {f"hr@{K}": round(m[f"hr@{K}"], 6), f"ndcg@{K}": round(m[f"ndcg@{K}"], 6)}


def run_served_quality_bench(
    settings: Settings,
    dataset: Path,
    json_out: Path,
    concurrency: int = 8,
    home: Path | None = None,
    doc: Path | None = DOC,
) -> dict:
    """Hold back, run, serve, ask, score (see the module docstring); write and return the JSON.

    Args:
        settings: the caller's settings (profile; the run gets a home of its own).
        dataset: a folder with `<Name>.txt` (and `<Name>_item2attributes.json`).
        json_out: where the JSON goes (a PNG beside it).
        concurrency: requests in flight against the service.
        home: keep the trained platform here (e.g. for `recflow bench serving --home`); default a
            temporary folder, removed at the end.
        doc: the Markdown file whose `served-quality` block gets the figures (None: none).

    Returns:
        `{"dataset", "users", "hr@10", "ndcg@10", "failed", "fallback", "train_seconds",
        "requests_per_second", "p50_ms", "p99_ms", "in_process": {"hr@10", "ndcg@10"}, ...}`.
    """
    console = Console()
    dataset = Path(dataset)
    scratch = Path(tempfile.mkdtemp(prefix="recflow-served-"))
    home = Path(home) if home is not None else scratch / "home"
    try:
        held = hold_back_last_items(dataset, scratch / "data")
        console.print(f"held back the last item of {len(held)} users; running the platform on the rest")
        echo = partial(console.print, markup=False, highlight=False)
        summary, train_seconds = run_platform(f"amazon:{scratch / 'data'}", home, settings.profile, echo)
        console.print(
            f"recflow run: {summary['status']} in {train_seconds:.0f}s; model {summary['model']['tag']}"
        )
        served = load_settings(
            settings.profile,
            home=home,
            serving={**settings.serving.model_dump(), "access_log": False},
        )
        users = sorted(held)
        asked = ask_service(served, users, concurrency, console.print)
        lists = {u: [i["item_id"] for i in a["items"]] for u, a in asked["answers"].items()}
        served_metrics = hit_metrics(lists, held)
        in_process = in_process_lists(served, users)
        in_process_metrics = hit_metrics(in_process, held)
        same = sum(lists.get(u) == in_process[u] for u in users)
        result = {
            "dataset": str(dataset),
            "users": len(users),
            **served_metrics,
            **request_figures(asked),
            "train_seconds": round(train_seconds, 1),
            "in_process": in_process_metrics,
            "details": {
                "identical_lists": same,
                "served_over_in_process_ndcg": (
                    round(served_metrics[f"ndcg@{K}"] / in_process_metrics[f"ndcg@{K}"], 4)
                    if in_process_metrics[f"ndcg@{K}"]
                    else None
                ),
                "concurrency": concurrency,
                "model": summary["model"],
                "stages": summary.get("stages_served"),
                "run_seconds_by_stage": {s["stage"]: s["seconds"] for s in summary["stages"]},
                "train_metrics": summary.get("metrics"),
                "failures_sample": asked["failed"][:5],
                "home": str(home) if home.parent != scratch else None,
                "load_average": round(os.getloadavg()[0], 2),
                "cpu_count": os.cpu_count(),
                "command": f"recflow bench served-quality --dataset {dataset} --json {json_out} --concurrency {concurrency}",
            },
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    json_out = Path(json_out)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(result, indent=2))
    write_chart(result, json_out.with_suffix(".png"))
    console.print(
        f"served HR@{K} {result[f'hr@{K}']:.4f} NDCG@{K} {result[f'ndcg@{K}']:.4f} "
        f"(in process {in_process_metrics[f'hr@{K}']:.4f} / {in_process_metrics[f'ndcg@{K}']:.4f}; "
        f"{same} of {len(users)} lists identical); {service_line(result)}; recflow run "
        f"{result['train_seconds']:.0f}s"
    )
    console.print(f"wrote {json_out} and {json_out.with_suffix('.png')}")
    if doc is not None:
        write_doc_figures(result, doc)
    return result


def write_doc_figures(result: dict, doc: Path) -> None:
    """This run's figures into the `served-quality` block of `doc` (docs/models.md)."""
    d = result["details"]
    replace_block(
        doc,
        "served-quality",
        [
            measured_line(result, "users"),
            "",
            "| | HR@10 | NDCG@10 |",
            "|---|---:|---:|",
            f"| served over HTTP | {result['hr@10']:.4f} | {result['ndcg@10']:.4f} |",
            f"| in process (batch scorer) | {result['in_process']['hr@10']:.4f} | {result['in_process']['ndcg@10']:.4f} |",
            "",
            f"{d['identical_lists']} of {result['users']} lists identical; failed {result['failed']}, fallback "
            f"{result['fallback']}; {result['requests_per_second']} req/s at concurrency {d['concurrency']}, "
            f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms; `recflow run` {result['train_seconds']:.0f} s "
            f"({', '.join(f'{k} {v:.0f}' for k, v in d['run_seconds_by_stage'].items())}); ranker serving: "
            f"{(d.get('stages') or {}).get('ranker', {}).get('serving')}.",
        ],
    )


def measured_line(result: dict, who: str) -> str:
    """A doc block's first line: when, with which command, on how many `who`, on what machine."""
    d = result["details"]
    return (
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with `{d['command']}` "
        f"({result['users']} {who}, {d['cpu_count']} CPUs, load average {d['load_average']}):"
    )


def write_chart(result: dict, path: Path) -> Path:
    """Served against in-process HR@10 and NDCG@10, side by side."""
    from recflow.charts import pyplot, save_figure

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 3.5))
    metrics = [f"hr@{K}", f"ndcg@{K}"]
    x = np.arange(len(metrics))
    served = [result[m] for m in metrics]
    local = [result["in_process"][m] for m in metrics]
    ax.bar(x - 0.2, served, 0.4, label="served over HTTP")
    ax.bar(x + 0.2, local, 0.4, label="in process (batch scorer)")
    for i, (a, b) in enumerate(zip(served, local, strict=True)):
        ax.text(i - 0.2, a, f"{a:.4f}", ha="center", va="bottom", fontsize=8)
        ax.text(i + 0.2, b, f"{b:.4f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, [m.upper() for m in metrics])
    ax.set_title(f"{Path(result['dataset']).name}: {result['users']} users, last item held back")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    return path
