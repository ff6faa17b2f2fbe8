"""Recommendation quality from feedback, and prediction drift on the scores the service returned.

Quality needs what was served (user, item, rank) and what users did afterwards (events):

* hit rate: share of served users who interacted with at least one of their recommended items;
* catalogue coverage: share of the catalogue that appeared in some recommendation list;
* popularity bias: mean popularity percentile of recommended items (1.0 = only the most popular);
* novelty: mean self-information, -log2 p(item), of recommended items, p from the training events.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from monitoring.drift import drifted_columns
from recflow.settings import Settings


@dataclass(frozen=True)
class QualityResult:
    """Quality of one day of served recommendations.

    Attributes:
        k: list length the figures are measured at.
        users: served users that had feedback (events) in the window.
        hit_rate: share of those users who interacted with one of their top-k items.
        coverage: distinct recommended items over catalogue size.
        popularity_bias: mean popularity percentile of recommended items (0..1).
        novelty: mean -log2 p(item) of recommended items, in bits.
    """

    k: int
    users: int
    hit_rate: float
    coverage: float
    popularity_bias: float
    novelty: float

    def to_dict(self) -> dict:
        """JSON-ready view with metric names suffixed by k (e.g. `hit_rate@10`)."""
        d = asdict(self)
        return {
            "k": self.k,
            "users": self.users,
            **{f"{m}@{self.k}": d[m] for m in ("hit_rate", "coverage", "popularity_bias", "novelty")},
        }


def recommendation_quality(
    served: pd.DataFrame, feedback: pd.DataFrame, training_events: pd.DataFrame, catalogue: pd.Series, k: int
) -> QualityResult:
    """Quality of `served` recommendations judged by the `feedback` events that followed.

    Args:
        served: one row per recommended item: `user_id`, `item_id`, `rank` (1 = first).
        feedback: events after serving (data contract columns); any event type counts as a hit.
        training_events: events the serving model learned from (item popularity for bias and novelty).
        catalogue: item ids on sale.
        k: cut-off; ranks above it are ignored.

    Raises:
        ValueError: if `served` lacks a column or `catalogue` is empty.
    """
    missing = {"user_id", "item_id", "rank"} - set(served.columns)
    if missing:
        raise ValueError(f"served recommendations lack column(s) {sorted(missing)}")
    if len(catalogue) == 0:
        raise ValueError("Cannot measure coverage against an empty catalogue")
    top = served[served["rank"] <= k]
    active = set(feedback["user_id"].astype(str))
    judged = top[top["user_id"].astype(str).isin(active)]
    pairs = set(zip(feedback["user_id"].astype(str), feedback["item_id"].astype(str), strict=True))
    hit_users = {
        u
        for u, i in zip(judged["user_id"].astype(str), judged["item_id"].astype(str), strict=True)
        if (u, i) in pairs
    }
    n_users = judged["user_id"].nunique()

    counts = training_events["item_id"].astype(str).value_counts()
    all_items = pd.Index(catalogue.astype(str).unique())
    counts = counts.reindex(all_items.union(counts.index), fill_value=0)
    percentile = counts.rank(pct=True, method="average")
    prob = (counts + 1) / (counts.sum() + len(counts))  # add-one: unseen items are novel, not infinite
    items = top["item_id"].astype(str)
    return QualityResult(
        k=k,
        users=int(n_users),
        hit_rate=len(hit_users) / n_users if n_users else 0.0,
        coverage=items.nunique() / len(all_items),
        popularity_bias=float(percentile.reindex(items).fillna(0.0).mean()) if len(items) else 0.0,
        novelty=float((-np.log2(prob.reindex(items).fillna(prob.min()))).mean()) if len(items) else 0.0,
    )


@dataclass(frozen=True)
class PredictionDrift:
    """Drift of the served scores: Evidently's distance, its threshold and the decision."""

    score: float
    threshold: float
    method: str
    detected: bool
    html_path: Path | None = None


def prediction_drift(
    reference_scores: pd.Series | np.ndarray,
    current_scores: pd.Series | np.ndarray,
    settings: Settings,
    out_dir: Path | None = None,
) -> PredictionDrift:
    """Has the distribution of served scores moved? Evidently `ValueDrift` on the score column.

    Uses the numerical method and threshold of `settings.monitoring` (normed Wasserstein distance),
    so a busier day does not alarm on sample size alone.

    Args:
        reference_scores: scores served in the reference window (or the holdout, at training time).
        current_scores: scores served in the new batch.
        settings: platform settings.
        out_dir: if given, `prediction_drift.html` and `.json` are written there.

    Raises:
        ValueError: if either side is empty.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    ref, cur = np.asarray(reference_scores, float), np.asarray(current_scores, float)
    if len(ref) == 0 or len(cur) == 0:
        raise ValueError(
            f"Cannot check prediction drift with {len(ref)} reference and {len(cur)} current scores"
        )
    cfg = settings.monitoring
    definition = DataDefinition(numerical_columns=["score"])
    report = Report(
        [ValueDrift(column="score", method=cfg.num_stattest, threshold=cfg.num_threshold)], include_tests=True
    )
    run = report.run(
        Dataset.from_pandas(pd.DataFrame({"score": cur}), data_definition=definition),
        Dataset.from_pandas(pd.DataFrame({"score": ref}), data_definition=definition),
    )
    score = float(run.dict()["metrics"][0]["value"])
    html_path = None
    result = PredictionDrift(score, cfg.num_threshold, cfg.num_stattest, bool(drifted_columns(run)))
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        html_path = out_dir / "prediction_drift.html"
        run.save_html(str(html_path))
        result = PredictionDrift(**{**asdict(result), "html_path": html_path})
        (out_dir / "prediction_drift.json").write_text(
            json.dumps({**asdict(result), "html_path": str(html_path)}, indent=2)
        )
    return result
