"""Toy catalogues, fit data and configs for real fits of the model family in a few seconds."""

from __future__ import annotations


def toy_catalogue(n_items: int = 40):
    """Items `i00`..: category c<i % 5>, brand b<i // 10> (the raw items contract, no tags)."""
    import pandas as pd

    from models.catalogue import Catalogue

    return Catalogue.from_items(
        pd.DataFrame(
            {
                "item_id": [f"i{i:02d}" for i in range(n_items)],
                "category": [f"c{i % 5}" for i in range(n_items)],
                "brand": [f"b{i // 10}" for i in range(n_items)],
                "tags": None,
            }
        )
    )


def toy_fit_data(
    histories,
    targets,
    n_items: int = 40,
    item_features=None,
    item_feature_names=(),
):
    """In-memory `FitData`: fit on `histories`, validate on one target each, refit on history + target."""
    import numpy as np

    from models.pipeline import FitData

    catalogue = toy_catalogue(n_items)
    histories = [np.asarray(h, np.int64) for h in histories]
    full = [np.append(h, t) for h, t in zip(histories, targets, strict=True)]
    counts = np.bincount(np.concatenate(histories), minlength=n_items)
    popular = {"global": catalogue.ids(np.argsort(-counts, kind="stable")), "by_region": {}}
    return FitData(
        catalogue=catalogue,
        fit=histories,
        refit=full,
        valid_users=[f"u{u:04d}" for u in range(len(histories))],
        valid_history=histories,
        valid_exclude=[np.unique(h) for h in histories],
        valid_relevant=[np.array([t], np.int64) for t in targets],
        item_features=item_features,
        features={"user": [], "item": list(item_feature_names)},
        popular_fit=popular,
        popular_refit=popular,
    )


def toy_config(**overrides):
    """A small, fast `PipelineConfig` for real fits on toy data."""
    from models.config import PipelineConfig
    from models.ranker import RankerConfig
    from models.sequential import SequentialConfig

    two_tower = SequentialConfig(
        max_len=6,
        dim=16,
        heads=2,
        blocks=1,
        dropout=0.0,
        learning_rate=1e-2,
        batch_size=32,
        max_epochs=8,
        eval_every=2,
        patience=2,
        refit_epochs=1,
        seed=0,
    )
    ranker = RankerConfig(candidates=20, learning_rate=1e-2, batch_size=32, max_epochs=12, patience=3, seed=0)
    values = {"two_tower": two_tower, "ranker": ranker, "report_share": 0.3, "tuning_users": 400, "seed": 0}
    return PipelineConfig(**{**values, **overrides})


TOY_METADATA = {
    "name": "recflow-recommender",
    "version": "20260101T000000000000Z",
    "created_at": "2026-01-01T00:00:00+00:00",
    "data_window": {"start": "2026-01-01", "end": "2026-01-05"},
    "validation_window": {"start": "2026-01-05", "end": "2026-01-05", "fit_end": "2026-01-04"},
    "feature_services": {"retrieval": "retrieval_v1", "ranking": "ranking_v1"},
    "code_version": "test",
    "device": "CPU",
}


def toy_walks(n_users: int, seed: int, n_items: int = 40):
    """Users walk through the catalogue (next item = last + 1 mod n): histories and their next items."""
    import numpy as np

    rng = np.random.default_rng(seed)
    histories, targets = [], []
    for _ in range(n_users):
        walk = (rng.integers(0, n_items) + np.arange(rng.integers(4, 8))) % n_items
        histories.append(walk[:-1])
        targets.append(int(walk[-1]))
    return histories, targets
