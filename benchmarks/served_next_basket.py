"""Served next-basket quality on the grocery year, measured from outside: what `POST /recommend` answers.

`recflow bench served-quality --dataset completejourney --json OUT` does what a grocer would do with
the platform, on the temporal protocol of `benchmarks.next_basket` (every basket before `--cut`,
default 2017-12-01, is known; each household's first basket on or after it is the target):

1. writes the source's files with the transactions before the cut (the shop's local days) to a
   temporary `completejourney:DIR` folder: the platform never sees December;
2. runs the platform on it with the real command line (`recflow run --data completejourney:DIR`, in a
   home of its own): validation, Feast, training, the gate, the package;
3. starts the real service over HTTP (`recflow serve`'s BentoML server) and asks `/recommend` (k=10)
   for every household of the protocol, `--concurrency` requests in flight: the answer as of the
   end of November (the service's data clock, `serving.clock`), whenever the household comes back;
4. scores the answers against the target baskets (Recall@10, NDCG@10, PHR@10, repeat and explore
   recall, `models.evaluate.basket_metrics`), beside the same package in process (the batch scorer,
   the same online store) and the next-basket bench's baselines (G/P/GP-TopFreq, TIFU-KNN) fitted
   on the same households' baskets before the cut, in the same run.

Unlike the next-basket bench's `platform` row, which scores each household as of its target basket's
day, the service answers once for everyone as of the cut, with the package `recflow run` trained,
gated and promoted: the figure a shop would see.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import date
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.console import Console

from benchmarks.docs import replace_block
from benchmarks.next_basket import (
    BASELINES,
    METRICS,
    TEMPORAL_CUT,
    Baskets,
    Model,
    Split,
    evaluate_protocol,
    read_baskets,
    temporal_splits,
)
from benchmarks.served_quality import (
    ask_service,
    in_process_lists,
    measured_line,
    request_figures,
    run_platform,
    service_line,
)
from recflow.data.completejourney import TIMEZONE, data_folder
from recflow.settings import Settings, load_settings

K = 10
DOC = Path(__file__).resolve().parents[1] / "docs" / "grocery.md"


def write_history_folder(source: str, cut: date, folder: Path) -> int:
    """Copy the parquet files of a Complete Journey `source` into `folder`, `transactions.parquet` cut to
    the lines before `cut` (midnight in the shop's time zone); the other files whole. Returns the lines kept."""
    src = data_folder(source)
    folder.mkdir(parents=True, exist_ok=True)
    for path in src.glob("*.parquet"):
        if path.name != "transactions.parquet":
            shutil.copy(path, folder / path.name)
    table = pq.read_table(src / "transactions.parquet")
    stamp = table["transaction_timestamp"]
    limit = pd.Timestamp(cut).tz_localize(TIMEZONE).tz_convert("UTC")
    if stamp.type.tz is None:  # naive UTC, as the package stores it
        limit = limit.tz_localize(None)
    kept = table.filter(pc.less(stamp, pa.scalar(limit.to_pydatetime(), type=stamp.type)))
    pq.write_table(kept, folder / "transactions.parquet")
    return kept.num_rows


def as_indices(lists: dict[str, list[str]], users: list[str], items: list[str], k: int = K) -> np.ndarray:
    """Each user's list of item ids as the bench's item indices, [n_users, k] (-1: padding, or an item
    the baskets never hold, which cannot be a hit)."""
    index = {item: i for i, item in enumerate(items)}
    out = np.full((len(users), k), -1, np.int64)
    for row, user in enumerate(users):
        for col, item in enumerate(lists.get(user, [])[:k]):
            out[row, col] = index.get(item, -1)
    return out


def fixed_lists(lists: np.ndarray) -> Model:
    """A `Model` that answers with lists made elsewhere (the service's, the in-process scorer's)."""

    def model(valid: Split, test: Split, k: int) -> tuple[np.ndarray, dict]:
        return lists[:, :k], {}

    return model


def run_served_next_basket_bench(
    settings: Settings,
    source: str,
    json_out: Path,
    cut: date = TEMPORAL_CUT,
    concurrency: int = 8,
    home: Path | None = None,
    doc: Path | None = DOC,
    baselines: dict[str, Model] | None = None,
) -> dict:
    """Cut, run, serve, ask, score (see the module docstring); write and return the JSON (a PNG beside it).

    Args:
        settings: the caller's settings (profile; the run gets a home of its own).
        source: `completejourney` or `completejourney:DIR`.
        json_out: where the JSON goes.
        cut: the first day the platform does not see; each household's first basket from it is the target.
        concurrency: requests in flight against the service.
        home: keep the trained platform here; default a temporary folder, removed at the end.
        doc: the Markdown file whose `served-next-basket` block gets the figures (None: none).
        baselines: the baselines to fit beside it (default `benchmarks.next_basket.BASELINES`).

    Returns:
        `{"dataset", "protocol", "cut", "users", "models": {"served", "in-process", <baselines>: {"kind",
        "recall@10", "ndcg@10", "phr@10", "repeat_recall@10", "explore_recall@10"}}, "failed",
        "fallback", "requests_per_second", "p50_ms", "p99_ms", "train_seconds", "details"}`.
    """
    console = Console()
    scratch = Path(tempfile.mkdtemp(prefix="recflow-served-nb-"))
    home = Path(home) if home is not None else scratch / "home"
    try:
        data: Baskets = read_baskets(source)
        valid, test = temporal_splits(data, cut)
        if not test.users:
            raise ValueError(f"no household of {source} has two baskets before {cut} and one on or after it")
        lines = write_history_folder(source, cut, scratch / "data")
        console.print(
            f"{len(test.users)} households with two baskets before {cut} and one after; the platform runs on "
            f"the {lines:,} transaction lines before {cut}"
        )
        echo = partial(console.print, markup=False, highlight=False)
        summary, train_seconds = run_platform(
            f"completejourney:{scratch / 'data'}", home, settings.profile, echo
        )
        console.print(
            f"recflow run: {summary['status']} in {train_seconds:.0f}s; model {summary['model']['tag']}"
        )
        served = load_settings(
            settings.profile,
            home=home,
            data={"source": f"completejourney:{scratch / 'data'}"},
            serving={**settings.serving.model_dump(), "access_log": False},
        )
        users = list(test.users)
        asked = ask_service(served, users, concurrency, console.print)
        answers = asked["answers"]
        lists = {u: [i["item_id"] for i in a["items"]] for u, a in answers.items()}
        in_process = in_process_lists(served, users)
        served_rows = as_indices(lists, users, data.items)
        local_rows = as_indices(in_process, users, data.items)
        models: dict[str, tuple[str, Model]] = {
            "served": ("platform", fixed_lists(served_rows)),
            "in-process": ("platform", fixed_lists(local_rows)),
            **{name: ("baseline", fn) for name, fn in (baselines or BASELINES).items()},
        }
        rows, _ = evaluate_protocol(valid, test, models, K, console)
        repeats = [
            sum(bool(i.get("repeat")) for i in a["items"]) / max(len(a["items"]), 1) for a in answers.values()
        ]
        best = max((n for n in rows if rows[n]["kind"] == "baseline"), key=lambda n: rows[n][f"ndcg@{K}"])
        result = {
            "dataset": source,
            "protocol": "next-basket/temporal",
            "cut": cut.isoformat(),
            "users": len(users),
            "models": rows,
            **request_figures(asked),
            "train_seconds": round(train_seconds, 1),
            "details": {
                "identical_lists": sum(lists.get(u) == in_process[u] for u in users),
                "best_baseline": best,
                "served_beats_best_baseline": {
                    m: rows["served"][m] > rows[best][m]
                    for m in ("recall@10", "ndcg@10", "explore_recall@10")
                },
                "repeat_share_of_served_items": round(float(np.mean(repeats)), 4) if repeats else None,
                "transaction_lines_seen": lines,
                "concurrency": concurrency,
                "model": summary["model"],
                "stages": summary.get("stages_served"),
                "run_seconds_by_stage": {s["stage"]: s["seconds"] for s in summary["stages"]},
                "failures_sample": asked["failed"][:5],
                "clock": served.serving.clock,
                "home": str(home) if home.parent != scratch else None,
                "load_average": round(os.getloadavg()[0], 2),
                "cpu_count": os.cpu_count(),
                "command": f"recflow bench served-quality --dataset {source} --json {json_out} --cut {cut}",
            },
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    json_out = Path(json_out)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(result, indent=2, default=str))
    write_chart(result, json_out.with_suffix(".png"))
    served_row = result["models"]["served"]
    console.print(
        f"served Recall@{K} {served_row[f'recall@{K}']:.4f} NDCG@{K} {served_row[f'ndcg@{K}']:.4f} explore "
        f"{served_row[f'explore_recall@{K}']:.4f} (best baseline {best}: {rows[best][f'recall@{K}']:.4f} / "
        f"{rows[best][f'ndcg@{K}']:.4f} / {rows[best][f'explore_recall@{K}']:.4f}); "
        f"{result['details']['identical_lists']} of {len(users)} lists identical in process; "
        f"{service_line(result)}; recflow run {train_seconds:.0f}s"
    )
    console.print(f"wrote {json_out} and {json_out.with_suffix('.png')}")
    if doc is not None:
        write_doc_figures(result, doc)
    return result


def write_doc_figures(result: dict, doc: Path) -> None:
    """This run's table into the `served-next-basket` block of `doc` (docs/grocery.md)."""
    d = result["details"]
    replace_block(
        doc,
        "served-next-basket",
        [
            measured_line(result, "households"),
            "",
            "| model | " + " | ".join(METRICS) + " |",
            "|---|" + "---:|" * len(METRICS),
            *(
                f"| {name} | " + " | ".join(f"{row[m]:.4f}" for m in METRICS) + " |"
                for name, row in result["models"].items()
            ),
            "",
            f"{d['identical_lists']} of {result['users']} served lists identical to the in-process ones; failed "
            f"{result['failed']}, fallback {result['fallback']}; {result['requests_per_second']} req/s at "
            f"concurrency {d['concurrency']}, p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms; "
            f"{d['repeat_share_of_served_items']:.0%} of the served items are repeats; `recflow run` "
            f"{result['train_seconds']:.0f} s ({', '.join(f'{k} {v:.0f}' for k, v in d['run_seconds_by_stage'].items())}).",
        ],
    )


def write_chart(result: dict, path: Path) -> Path:
    """Recall@10, NDCG@10 and explore recall of every row, served first."""
    from recflow.charts import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.8))
    metrics = [f"recall@{K}", f"ndcg@{K}", f"explore_recall@{K}"]
    names = list(result["models"])
    width = 0.8 / len(names)
    x = np.arange(len(metrics))
    for j, name in enumerate(names):
        values = [result["models"][name][m] for m in metrics]
        bars = ax.bar(x + (j - (len(names) - 1) / 2) * width, values, width, label=name)
        ax.bar_label(bars, [f"{v:.3f}" for v in values], fontsize=6)
    ax.set_xticks(x, [m.upper() for m in metrics])
    ax.set_title(
        f"{result['dataset']}: served over HTTP as of {result['cut']}, first basket after it "
        f"({result['users']} households)",
        fontsize=9,
    )
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    save_figure(fig, path)
    return path
