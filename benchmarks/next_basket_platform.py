"""The platform's row of the next-basket bench: the served model family, fitted and scored on the baskets.

`PlatformRow` is a `benchmarks.next_basket.Model`: on each protocol it turns the validation split
into the fit input of `models.pipeline.fit_pipeline` (the one fitting procedure: co-occurrence
search, two-tower, buy-again source, ranker; the validation targets choose everything) and scores
the test households with the serving package through `models.scorer.BatchScorer` (the service's
path), from their histories only. It uses the settings a `completejourney` run serves with
(`PipelineConfig.from_settings`, the seen filter of the source, the serving index), except that no
validation household is kept out for a report (the test split is the report), as in
`benchmarks.quality`.

A basket becomes a run of interactions in the sequence the two-tower and co-occurrence read (its
items in catalogue order); the buy-again source reads every purchase with its age in days at the
target basket's day (the moment the household is served).
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
from rich.console import Console

from benchmarks.next_basket import Split
from models.buy_again import Bought
from models.catalogue import Catalogue
from models.config import PipelineConfig
from models.hardware import device_description, training_precision
from models.pipeline import FitData, fit_pipeline
from models.scorer import BatchScorer
from recflow.provenance import code_version
from recflow.settings import Settings


def basket_catalogue(source: str, items: list[str]) -> Catalogue:
    """The platform's catalogue of a Complete Journey source (the loader's items contract: category,
    brand, tags), in the bench's item index order."""
    from recflow.data.completejourney import catalogue, data_folder, read_transactions

    products = pd.read_parquet(data_folder(source) / "products.parquet")
    frame = catalogue(products, read_transactions(source), pd.Timestamp("2017-01-01", tz="UTC"))
    frame = frame.drop_duplicates("item_id").set_index("item_id").reindex(items).reset_index()
    out = Catalogue.from_items(frame)
    if list(out.item_ids) != list(items):
        raise ValueError(f"{source}: the catalogue and the baskets disagree on item order")
    return out


def flatten(history: list[np.ndarray]) -> np.ndarray:
    """A household's baskets as one sequence of catalogue rows, oldest basket first."""
    return np.concatenate([np.sort(b) for b in history]) if history else np.zeros(0, np.int64)


def purchases(history: list[np.ndarray], days: list[date], now: date) -> Bought:
    """Every purchase of a history with its age in days at `now`."""
    if not history:
        return Bought.empty()
    ages = np.array([(now - d).days for d in days], np.float64)
    return Bought(flatten(history), np.repeat(ages, [len(b) for b in history]))


class PlatformRow:
    """The served pipeline as a next-basket `Model` (see the module docstring).

    Args:
        source: `completejourney` or `completejourney:DIR` (its products give the catalogue).
        items: the bench's item ids in index order (`Baskets.items`).
        settings: the platform settings (`data.source` is set to `source`).
        console: progress lines go here.
    """

    def __init__(self, source: str, items: list[str], settings: Settings, console: Console | None = None):
        self.settings = settings.model_copy(
            update={"data": settings.data.model_copy(update={"source": source})}
        )
        self.catalogue = basket_catalogue(source, items)
        self.console = console or Console()

    def __call__(self, valid: Split, test: Split, k: int) -> tuple[np.ndarray, dict]:
        if valid.users != test.users or valid.targets is None:
            raise ValueError("the platform row needs the validation and test splits of the same households")
        settings = self.settings
        exclude = settings.exclude_purchased
        fit = [flatten(h) for h in valid.histories]
        refit = [flatten(h) for h in test.histories]
        fit_bought = [
            purchases(h, d, t)
            for h, d, t in zip(valid.histories, valid.history_days, valid.target_days, strict=True)
        ]
        refit_bought = [
            purchases(h, d, t)
            for h, d, t in zip(test.histories, test.history_days, test.target_days, strict=True)
        ]
        counts = np.bincount(np.concatenate(fit), minlength=len(self.catalogue))
        popular = {"global": self.catalogue.ids(np.argsort(-counts, kind="stable")[:100]), "by_region": {}}
        recount = np.bincount(np.concatenate(refit), minlength=len(self.catalogue))
        data = FitData(
            catalogue=self.catalogue,
            fit=fit,
            refit=refit,
            valid_users=list(valid.users),
            valid_history=fit,
            valid_exclude=[np.unique(h) if exclude else np.zeros(0, np.int64) for h in fit],
            valid_relevant=[np.asarray(t, np.int64) for t in valid.targets],
            popular_fit=popular,
            popular_refit={
                "global": self.catalogue.ids(np.argsort(-recount, kind="stable")[:100]),
                "by_region": {},
            },
            fit_bought=None if exclude else fit_bought,
            refit_bought=None if exclude else refit_bought,
            valid_bought=None if exclude else fit_bought,
        )
        config = PipelineConfig.from_settings(settings)
        config = replace(config, report_share=0.0)
        metadata = {
            "name": "recflow-recommender",
            "version": f"bench-next-basket-{valid.name.split('/')[0]}",
            "created_at": datetime.now(UTC).isoformat(),
            "data_window": {"end": str(max(max(d) for d in valid.history_days if d))},
            "validation_window": {"protocol": valid.name},
            "feature_services": {},
            "code_version": code_version(),
            "device": device_description(),
        }
        t = time.perf_counter()
        with training_precision(settings.train):
            fitted = fit_pipeline(
                data, config, metadata, progress=lambda line: self.console.print(f"  platform: {line}")
            )
        fit_seconds = time.perf_counter() - t
        t = time.perf_counter()
        scorer = BatchScorer(fitted.serving, serving=settings.serving)
        ranked = scorer.rank(
            refit,
            [np.unique(h) if exclude else np.zeros(0, np.int64) for h in refit],
            None,
            k,
            bought=None if exclude else refit_bought,
        )
        lists = np.full((len(test.users), k), -1, np.int64)
        for row, r in enumerate(ranked):
            lists[row, : len(r.rows)] = r.rows[:k]
        sources = [s for r in ranked for s in r.sources]
        return lists, {
            "stages": fitted.stages,
            "seconds_by_stage": fitted.seconds,
            "fit_seconds": round(fit_seconds, 1),
            "score_seconds": round(time.perf_counter() - t, 1),
            "exclude_purchased": exclude,
            "two_tower_negatives": fitted.serving.config.two_tower.negatives,
            "sources": {s: sources.count(s) for s in sorted(set(sources))},
            "config": fitted.serving.config.to_dict(),
        }
