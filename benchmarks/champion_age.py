"""How a champion ages: one package, trained once, scored prequentially on later days of a dated log.

`recflow bench champion-age --data completejourney --trained-on 2017-06-30 --days
2017-07-05,2017-09-06,2017-11-08,2017-12-06 --json OUT` trains a package on the `train_days` days
ending `--trained-on` exactly as `recflow replay` trains its champions (`flows.policies.replay_settings`,
`flows.loop.train_on_window`), then serves every listed day's returning households with it, as of the
day's start, through the one scoring path (`monitoring.quality.day_evaluation`, next-basket Recall@10
and NDCG@10 as the replay reports them) in three variants:

- `package`: the package as trained (its ranker clips each input to its training range);
- `unclipped`: the same package, its ranker reading its inputs unclipped (how rankers served before
  they kept their range: a feature that grows with the calendar is extrapolated);
- `without_ranker`: the same package serving the merged candidate order.

A package whose ranker did not ship serves the same lists in all three. Writes the JSON, a Markdown
table and a PNG chart beside it.
"""

from __future__ import annotations

import json
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from flows.loop import (
    land_history,
    load_bundle,
    train_on_window,
    training_window,
    validated_days,
)
from flows.policies import REPLAY_HOLDOUT_DAYS, check_holdout, mean_or_none, replay_settings, serving_store
from recflow.settings import Settings

VARIANTS: tuple[str, ...] = ("package", "unclipped", "without_ranker")
AGE_DIR = "champion-age"


def run_champion_age(
    settings: Settings,
    trained_on: date,
    days: list[date],
    json_out: Path,
    train_days: int = 28,
    feature_days: int = 31,
    history_days: int = 91,
    holdout_days: int = REPLAY_HOLDOUT_DAYS,
    command: str | None = None,
) -> dict:
    """Train on the window ending `trained_on`, score the package's variants on `days`; write the outputs.

    Raises:
        ValueError: a day that is not after `trained_on` (the package learned it), a day or training
            window outside the source, or `holdout_days` that leaves nothing of the window to learn.
    """
    from features.validation import Validator, validate_batches
    from models.data import weighted_interactions
    from monitoring.quality import day_evaluation, day_users
    from recflow.data.batches import read_events

    learned = [d for d in days if d <= trained_on]
    if learned:
        raise ValueError(
            f"--days {', '.join(map(str, learned))} are not after --trained-on {trained_on}: the package "
            "learned them"
        )
    check_holdout(holdout_days, train_days)
    sim = replay_settings(settings, holdout_days)
    sim = sim.with_home(settings.home / AGE_DIR)
    k = sim.train.k
    t0 = time.perf_counter()
    batches = land_history.fn(sim)
    known = {b.day for b in batches}
    missing = [d for d in days if d not in known]
    if missing:
        raise ValueError(
            f"--days {', '.join(map(str, missing))} are not days of the source ({min(known)}..{max(known)})"
        )
    done = set(validated_days(sim))
    validate_batches(Validator(sim), [b for b in batches if b.day <= max(days) and b.day not in done], sim)
    window = training_window(validated_days(sim), trained_on, train_days)
    if not window:
        raise ValueError(
            f"No validated day in the {train_days} days ending {trained_on}: nothing to train on"
        )
    print(f"training on {window[0]}..{window[-1]}", flush=True)
    trained = train_on_window.fn(sim, window, trained_on.isoformat(), home=sim.home)
    packages = {name: load_bundle(trained.bundle_path) for name in VARIANTS}
    ranker = packages["package"].ranker
    if ranker is not None:
        packages["unclipped"].ranker = ranker.unclipped()
    packages["without_ranker"].ranker = None
    rows = []
    all_days = validated_days(sim)
    for day in sorted(days):
        serve, store = serving_store(sim, day, feature_days)
        events = read_events(
            sim.validated_dir, [d for d in all_days if day - timedelta(history_days) <= d <= day]
        )
        inter = weighted_interactions(events, sim)
        held = day_users(serve, store, day, inter)
        row: dict = {"day": day.isoformat(), "age_days": (day - trained_on).days, "users": len(held)}
        for name, bundle in packages.items():
            quality = day_evaluation(serve, store, bundle, day, k, events=events, inter=inter, held=held)[0]
            scored = quality.users > 0
            row.setdefault(f"recall@{k}", {})[name] = round(quality.basket_recall, 6) if scored else None
            row.setdefault(f"ndcg@{k}", {})[name] = round(quality.basket_ndcg, 6) if scored else None
        rows.append(row)
        print(day_line(row, k), flush=True)
    result = {
        "source": sim.data.source,
        "trained_on": trained_on.isoformat(),
        "window": [window[0].isoformat(), window[-1].isoformat()],
        "ranker_serving": ranker is not None,
        "k": k,
        "days": rows,
        "mean": {
            f"ndcg@{k}": {name: mean_or_none([r[f"ndcg@{k}"][name] for r in rows]) for name in VARIANTS},
            f"recall@{k}": {name: mean_or_none([r[f"recall@{k}"][name] for r in rows]) for name in VARIANTS},
        },
        "seconds": round(time.perf_counter() - t0, 1),
        "command": command,
    }
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(result, indent=2))
    json_out.with_suffix(".md").write_text(markdown(result))
    write_chart(result, json_out.with_suffix(".png"))
    print(f"mean NDCG@{k}: " + ", ".join(f"{n} {v}" for n, v in result["mean"][f"ndcg@{k}"].items()))
    print(f"wrote {json_out}, {json_out.with_suffix('.md')}, {json_out.with_suffix('.png')}")
    return result


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def day_line(row: dict, k: int) -> str:
    """The progress line of one day: NDCG@K of each variant."""
    figures = "  ".join(f"{name} {_figure(row[f'ndcg@{k}'][name])}" for name in VARIANTS)
    return f"{row['day']} (age {row['age_days']:3d} days, {row['users']:4d} households)  NDCG@{k}  {figures}"


def markdown(result: dict) -> str:
    """The days as a Markdown table (written beside the JSON)."""
    k = result["k"]
    lines = [
        f"# A champion's age: {result['source']}, trained on {result['window'][0]}..{result['window'][1]}",
        "",
        f"Written by `recflow bench champion-age`; do not edit by hand. Ranker serving: {result['ranker_serving']}.",
        "",
        f"| day | age (days) | households | NDCG@{k} package | NDCG@{k} unclipped ranker | NDCG@{k} without ranker |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["days"]:
        n = r[f"ndcg@{k}"]
        lines.append(
            f"| {r['day']} | {r['age_days']} | {r['users']} | {_figure(n['package'])} | "
            f"{_figure(n['unclipped'])} | {_figure(n['without_ranker'])} |"
        )
    m = result["mean"][f"ndcg@{k}"]
    lines.append(
        f"| mean | | | {_figure(m['package'])} | {_figure(m['unclipped'])} | {_figure(m['without_ranker'])} |"
    )
    if result.get("command"):
        lines += ["", "Command:", "", f"    {result['command']}"]
    return "\n".join(lines) + "\n"


def write_chart(result: dict, path: Path) -> Path:
    """PNG: NDCG@K of each variant against the package's age."""
    from recflow.charts import pyplot, save_figure

    plt = pyplot()

    k = result["k"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ages = [r["age_days"] for r in result["days"]]
    for name, style in zip(VARIANTS, ("-o", "--s", ":^"), strict=True):
        values = [np.nan if r[f"ndcg@{k}"][name] is None else r[f"ndcg@{k}"][name] for r in result["days"]]
        ax.plot(ages, values, style, label=name.replace("_", " "))
    ax.set_xlabel(f"days since the package's last training day ({result['trained_on']})")
    ax.set_ylabel(f"prequential NDCG@{k}")
    ax.set_ylim(bottom=0)
    ax.set_title(f"{result['source']}: one package served as it ages")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)
    return path
