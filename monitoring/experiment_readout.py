"""The readout of an online experiment: per variant rates with confidence intervals, tests and guardrails.

From the experiment store (`recflow/experiments.py`), per variant:

- `users` (assigned), `responses`, `impressions` (items shown), `clicks` / `carts` / `purchases`
  (attributed outcomes);
- `ctr` = clicks / impressions and `conversion` = users with an attributed purchase / users, each with a
  Wilson confidence interval (statsmodels `proportion_confint`);
- `revenue_per_user` = the catalogue price of the purchased items / users, where the validated
  catalogue has prices;
- `latency_p95_ms` of the variant's answers.

Tests (challenger against champion): a two-sided two-proportion z-test (statsmodels `proportions_ztest`)
on conversion (the decision metric) and on CTR; the sample-ratio-mismatch check is a chi-square test
(scipy `chisquare`) of the assigned users against the configured share (mismatch when p < 0.001: the
assignment or the logging is broken and no conclusion holds); the latency guardrail fails when the
challenger's p95 exceeds the champion's by more than `latency_margin` (20%).

`winner` is `challenger` when its conversion is higher with p < alpha and both guardrails hold,
`champion` when the challenger's is lower with p < alpha, else `none` (no detectable difference yet).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from recflow.experiments import (
    VARIANTS,
    Experiment,
    ExperimentStore,
    assignments_table,
    impressions_table,
    outcomes_table,
)

SRM_ALPHA = 0.001


def read_logs(store: ExperimentStore, experiment_id: str) -> dict[str, pd.DataFrame]:
    """The experiment's assignments, impressions and outcomes as frames."""
    frames = {}
    with store.engine.connect() as db:
        for table in (assignments_table, impressions_table, outcomes_table):
            query = table.select().where(table.c.experiment_id == experiment_id)
            frames[table.name] = pd.DataFrame(
                db.execute(query).mappings().all(), columns=list(table.c.keys())
            )
    return frames


def readout(
    experiment: Experiment,
    logs: dict[str, pd.DataFrame],
    prices: dict[str, float] | None = None,
    alpha: float = 0.05,
    latency_margin: float = 0.2,
) -> dict[str, Any]:
    """Per-variant figures, the tests and the decision (see the module docstring)."""
    from scipy.stats import chisquare
    from statsmodels.stats.proportion import proportion_confint, proportions_ztest

    assignments, impressions, outcomes = logs["assignments"], logs["impressions"], logs["outcomes"]
    variants: dict[str, dict[str, Any]] = {}
    for variant in VARIANTS:
        users = assignments.loc[assignments["variant"] == variant, "user_id"].nunique()
        shown = impressions[impressions["variant"] == variant]
        done = outcomes[outcomes["variant"] == variant]
        clicks = int((done["event_type"] == "view").sum())
        buyers = done.loc[done["event_type"] == "purchase", "user_id"].nunique()
        figures: dict[str, Any] = {
            "users": int(users),
            "responses": int(shown["request_id"].nunique()),
            "impressions": len(shown),
            "clicks": clicks,
            "carts": int((done["event_type"] == "add_to_cart").sum()),
            "purchases": int((done["event_type"] == "purchase").sum()),
            "buyers": int(buyers),
        }
        figures["ctr"] = clicks / len(shown) if len(shown) else None
        figures["ctr_ci"] = (
            list(proportion_confint(clicks, len(shown), alpha, "wilson")) if len(shown) else None
        )
        figures["conversion"] = buyers / users if users else None
        figures["conversion_ci"] = list(proportion_confint(buyers, users, alpha, "wilson")) if users else None
        if prices:
            bought = done.loc[done["event_type"] == "purchase", "item_id"].map(prices)
            figures["revenue_per_user"] = float(bought.fillna(0).sum()) / users if users else None
        latency = shown.drop_duplicates("request_id")["latency_ms"].dropna()
        figures["latency_p95_ms"] = float(np.percentile(latency, 95)) if len(latency) else None
        variants[variant] = figures

    a, b = variants["champion"], variants["challenger"]
    tests: dict[str, Any] = {}
    for metric, hits, trials in (("conversion", "buyers", "users"), ("ctr", "clicks", "impressions")):
        if a[trials] and b[trials] and (a[hits] + b[hits]) and (a[hits] < a[trials] or b[hits] < b[trials]):
            _, p = proportions_ztest([b[hits], a[hits]], [b[trials], a[trials]])
            tests[metric] = {"difference": b[metric] - a[metric], "p_value": float(p)}
        else:
            tests[metric] = {"difference": None, "p_value": None}
    total = a["users"] + b["users"]
    srm_p = None
    if total and not experiment.shadow:
        expected = [total * (1 - experiment.share), total * experiment.share]
        srm_p = float(chisquare([a["users"], b["users"]], expected).pvalue)
    srm = {"p_value": srm_p, "mismatch": srm_p is not None and srm_p < SRM_ALPHA}
    lat_a, lat_b = a["latency_p95_ms"], b["latency_p95_ms"]
    latency_ok = lat_a is None or lat_b is None or lat_b <= lat_a * (1 + latency_margin)
    guardrails = {"sample_ratio": srm, "latency": {"ok": latency_ok, "margin": latency_margin}}

    p = tests["conversion"]["p_value"]
    winner = "none"
    if p is not None and p < alpha and not srm["mismatch"]:
        if tests["conversion"]["difference"] > 0:
            winner = "challenger" if latency_ok else "none"
        else:
            winner = "champion"
    return {
        "experiment": {k: v for k, v in experiment.__dict__.items() if k != "salt"},
        "alpha": alpha,
        "variants": variants,
        "tests": tests,
        "guardrails": guardrails,
        "winner": winner,
    }


def write_chart(result: dict[str, Any], path) -> None:
    """Conversion and CTR per variant with their confidence intervals, as a PNG."""
    from recflow.charts import pyplot, save_figure

    plt = pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for ax, metric in zip(axes, ("conversion", "ctr"), strict=True):
        values = [result["variants"][v][metric] or 0.0 for v in VARIANTS]
        cis = [result["variants"][v][f"{metric}_ci"] or [0.0, 0.0] for v in VARIANTS]
        errors = np.array(
            [[max(v - lo, 0), max(hi - v, 0)] for v, (lo, hi) in zip(values, cis, strict=True)]
        ).T
        ax.bar(VARIANTS, values, yerr=errors, capsize=6, color=["#4c72b0", "#dd8452"])
        p = result["tests"][metric]["p_value"]
        ax.set_title(f"{metric} (p = {p:.3g})" if p is not None else metric)
    fig.suptitle(f"experiment {result['experiment']['id']}: winner {result['winner']}")
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def catalogue_prices(validated_dir) -> dict[str, float]:
    """The newest price of each item in the validated catalogue (empty when it has no prices)."""
    from recflow.data.batches import list_batches, read_snapshot

    if not list_batches(validated_dir):
        return {}
    items = read_snapshot(validated_dir, "items")
    if "price" not in items:
        return {}
    known = items.dropna(subset=["price"])
    return dict(zip(known["item_id"].astype(str), known["price"].astype(float), strict=True))


def experiment_snapshot(result: dict[str, Any], timestamp=None):
    """An Evidently snapshot of the readout's figures (one-row dataset, one `MeanValue` each), tagged
    with the experiment id, for the workspace's `recflow` project."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import MeanValue

    values = {
        f"{metric}_{variant}": float(figures[metric])
        for variant, figures in result["variants"].items()
        for metric in ("ctr", "conversion", "revenue_per_user", "latency_p95_ms")
        if figures.get(metric) is not None
    }
    values |= {f"p_value_{m}": t["p_value"] for m, t in result["tests"].items() if t["p_value"] is not None}
    frame = pd.DataFrame([values])
    report = Report([MeanValue(column=c) for c in values])
    return report.run(
        Dataset.from_pandas(frame, data_definition=DataDefinition(numerical_columns=list(values))),
        None,
        timestamp=timestamp,
        tags=["experiment", result["experiment"]["id"], f"winner:{result['winner']}"],
    )


def log_experiment(settings, result: dict[str, Any], timestamp=None) -> str | None:
    """Add the readout's snapshot to the Evidently workspace project; its id (None without figures)."""
    from monitoring.workspace import open_project

    if not any(f.get("conversion") is not None for f in result["variants"].values()):
        return None
    workspace, project = open_project(settings)
    snapshot = experiment_snapshot(result, timestamp)
    return str(workspace.add_run(project.id, snapshot, name=f"experiment {result['experiment']['id']}").id)
