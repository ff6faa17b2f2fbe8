"""Recommendation quality from feedback, and prediction drift on the scores the service returned.

Quality needs what was served (user, item, rank) and what users did afterwards (events):

* hit rate: share of served users who interacted with at least one of their recommended items;
* catalogue coverage: share of the catalogue that appeared in some recommendation list;
* popularity bias: mean popularity percentile of recommended items (1.0 = only the most popular);
* novelty: mean self-information, -log2 p(item), of recommended items, p from the training events;
* NDCG@K: of the served lists against everything the served users turned to (`models.evaluate`);
* next-basket Recall@K and NDCG@K (`basket_figures`): the day's items of each served user as one basket,
  recall = hits / basket size and NDCG's ideal over the whole basket (`models.evaluate.basket_metrics`,
  as the next-basket benchmark measures them).

What was served comes from the one scoring path (`models.scorer.BatchScorer`) over the users who came
back on the day (`models.data.held_out`): the package, the seen filter, the online features as of the
day's start, exactly as the service answers them. `evaluate_package` is also what the promotion gate
compares champion and challenger with.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from monitoring.drift import drifted_columns
from recflow.settings import ServingSettings, Settings


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
        ndcg: NDCG@k of the served lists (`models.evaluate.ranking_metrics`).
        basket_recall: next-basket Recall@k (hits / the user's items of the day), averaged over users.
        basket_ndcg: next-basket NDCG@k (the ideal over all the user's items of the day).
    """

    k: int
    users: int
    hit_rate: float
    coverage: float
    popularity_bias: float
    novelty: float
    ndcg: float | None = None
    basket_recall: float | None = None
    basket_ndcg: float | None = None

    def to_dict(self) -> dict:
        """JSON-ready view with metric names suffixed by k (e.g. `hit_rate@10`)."""
        d = asdict(self)
        names = ("hit_rate", "coverage", "popularity_bias", "novelty") + tuple(
            m for m in ("ndcg", "basket_recall", "basket_ndcg") if d[m] is not None
        )
        return {"k": self.k, "users": self.users, **{f"{m}@{self.k}": d[m] for m in names}}


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
class PackageEvaluation:
    """A package scored on held-out users: the metrics and every list it served.

    Attributes:
        metrics: `{"hr@K", "recall@K", "ndcg@K", "users"}` (`models.evaluate.ranking_metrics`).
        served: one row per recommended item: `user_id`, `item_id`, `rank` (1 = first), `score`,
            `source`, `retrieval_score` (the two-tower's score; prediction drift watches it).
    """

    metrics: dict
    served: pd.DataFrame


def evaluate_package(bundle, held, serving: ServingSettings, k: int) -> PackageEvaluation:
    """Serve the held-out users with `bundle` through the one scorer and score the lists.

    Args:
        bundle: a `models.bundle.ModelBundle`.
        held: a `models.data.HeldOut` (history, seen filter, targets and features as of its cut).
        serving: the serving settings (index, business rules), as the service uses them.
        k: list length.
    """
    from models.data import item_feature_matrix
    from models.evaluate import ranking_metrics
    from models.scorer import BatchScorer, Query

    columns = ["user_id", "item_id", "rank", "score", "source", "retrieval_score"]
    if not len(held):
        return PackageEvaluation(
            {f"hr@{k}": 0.0, f"recall@{k}": 0.0, f"ndcg@{k}": 0.0, "users": 0}, pd.DataFrame(columns=columns)
        )
    items = item_feature_matrix(held.item_features, bundle.catalogue, bundle.item_features)
    scorer = BatchScorer.shared(bundle, serving, items)
    user_rows = held.user_features.to_dict("index")
    bought = held.bought or [[] for _ in held.users]
    queries = [
        Query(history=h, exclude=e, user_features=user_rows.get(u), region=r, bought=b)
        for u, h, e, r, b in zip(held.users, held.history, held.exclude, held.regions, bought, strict=True)
    ]
    ranked = scorer.recommend(queries, k)
    tops = [bundle.catalogue.ids(r.rows) for r in ranked]
    served = pd.DataFrame(
        [
            (u, item, rank + 1, float(score), source, float(retrieval))
            for u, top, r in zip(held.users, tops, ranked, strict=True)
            for rank, (item, score, source, retrieval) in enumerate(
                zip(top, r.scores, r.sources, r.retrieval, strict=True)
            )
        ],
        columns=columns,
    )
    return PackageEvaluation(ranking_metrics(tops, held.relevant, k), served)


def basket_figures(served: pd.DataFrame, held, k: int) -> dict[str, float]:
    """Next-basket figures of served lists: each held-out user's items after the cut are one basket.

    Args:
        served: `evaluate_package`'s lists (`user_id`, `item_id`, `rank`).
        held: the `models.data.HeldOut` they were served to (targets and histories).
        k: list length.

    Returns:
        `models.evaluate.basket_metrics` (Recall@k, NDCG@k with the ideal over the whole basket, PHR@k,
        repeat and explore recall@k); zeros when nobody was served.
    """
    from models.evaluate import basket_metrics

    lists = served.sort_values(["user_id", "rank"]).groupby("user_id")["item_id"].agg(list)
    keep = [n for n, r in enumerate(held.relevant) if len(r)]
    return basket_metrics(
        [lists.get(held.users[n], []) for n in keep],
        [held.relevant[n] for n in keep],
        [[held.history[n]] for n in keep],
        k,
    )


def day_quality(
    settings: Settings,
    store,
    bundle,
    day,
    k: int | None = None,
    events: pd.DataFrame | None = None,
    inter: pd.DataFrame | None = None,
    max_users: int | None = None,
) -> QualityResult:
    """Quality of what `bundle` serves on `day` to the users who come back that day (see `day_evaluation`)."""
    return day_evaluation(settings, store, bundle, day, k, events, inter, max_users)[0]


def day_users(settings: Settings, store, day, inter: pd.DataFrame, max_users: int | None = None):
    """The `models.data.HeldOut` users of `day` that `day_evaluation` scores (shop's calendar day)."""
    from models.data import held_out
    from recflow.data.batches import day_bounds

    start, end = day_bounds(day, settings.data.shop_timezone)
    return held_out(settings, store, start, end, inter=inter, max_users=max_users)


def day_evaluation(
    settings: Settings,
    store,
    bundle,
    day,
    k: int | None = None,
    events: pd.DataFrame | None = None,
    inter: pd.DataFrame | None = None,
    max_users: int | None = None,
    held=None,
) -> tuple[QualityResult, PackageEvaluation]:
    """What `bundle` serves on `day` to the users who come back that day, and its quality.

    The users are scored as of the day's start in the shop's time zone (`settings.data.shop_timezone`:
    history, seen filter and online features from before it); the day's events are the feedback. `events` (the validated events) and `inter` (their
    `models.data.weighted_interactions`) spare a caller that scores many days reading them each time.
    `max_users` scores a seeded sample of at most that many of the day's returning users, for callers
    that log many days (`monitoring.history`). `held` (`day_users`' result for the same day and
    arguments) spares callers that score several packages on one day building it again.
    """
    from models.data import held_out, weighted_interactions
    from recflow.data.batches import day_bounds, read_events

    k = k or settings.train.k
    start, end = day_bounds(day, settings.data.shop_timezone)
    if events is None:
        events = read_events(settings.validated_dir)
    if held is None:
        if inter is None:
            inter = weighted_interactions(events, settings)
        held = held_out(settings, store, start, end, inter=inter, max_users=max_users)
    evaluation = evaluate_package(bundle, held, settings.serving, k)
    ts = pd.to_datetime(events["timestamp"], utc=True, cache=False)
    quality = recommendation_quality(
        evaluation.served,
        events[(ts >= start) & (ts < end)],  # judged for the served users only
        events[ts < start],
        pd.Series(bundle.catalogue.item_ids),
        k,
    )
    basket = basket_figures(evaluation.served, held, k)
    figures = {
        "ndcg": evaluation.metrics[f"ndcg@{k}"],
        "basket_recall": basket[f"recall@{k}"],
        "basket_ndcg": basket[f"ndcg@{k}"],
    }
    return QualityResult(**{**asdict(quality), **figures}), evaluation


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
