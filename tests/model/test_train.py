"""The train stage on the tiny world: both packages written, complete, and better than popularity."""

from __future__ import annotations

import pytest

from models.bundle import METADATA_KEYS, ModelBundle
from models.scorer import BatchScorer, Query


@pytest.fixture(scope="module")
def trained(model_world):
    from models.train import train_models

    settings, store = model_world
    return settings, train_models(settings, store, verbose=0)


def test_train_models_writes_the_serving_and_the_validation_package(trained):
    settings, result = trained
    assert result.bundle_path.parent == settings.models_dir
    assert result.validation_path == result.bundle_path / "validation"
    assert result.device.startswith(("CPU", "GPU")) and result.seconds > 0
    serving, validation = ModelBundle.load(result.bundle_path), ModelBundle.load(result.validation_path)
    for bundle in (serving, validation):
        assert set(METADATA_KEYS) <= set(bundle.metadata)
        assert bundle.metadata["metrics"] == result.metrics
        assert bundle.metadata["stages"] == result.stages
    window = serving.metadata["validation_window"]
    assert window["fit_end"] < window["start"] <= window["end"] == serving.metadata["data_window"]["end"]
    # the serving package learned the held-out days, the validation package did not
    assert serving.popularity.sum() > validation.popularity.sum()
    assert serving.metadata["hyperparameters"]["two_tower"]["dim"] == settings.train.dim
    assert serving.item_embeddings.shape == (len(serving.catalogue), settings.train.dim)
    assert len(serving.popular["global"]) >= 10 and serving.popular["by_region"]
    ranked = BatchScorer(serving).recommend([Query(history=list(serving.item_ids[:3]))], 10)[0]
    assert len(ranked.rows) == 10


def test_the_reported_pipeline_beats_popularity(trained):
    _, result = trained
    model, popularity = result.metrics["model"], result.metrics["popularity"]
    assert model["users"] == popularity["users"] > 10
    assert model["ndcg@10"] > popularity["ndcg@10"] and model["recall@10"] > popularity["recall@10"], (
        result.metrics
    )
    assert {"two-tower", "co-occurrence", "buy-again", "neighbours", "popularity", "ranker"} == set(
        result.stages
    )
    # the synthetic shop's seen filter removes what a user bought: nothing to buy again, no purchase
    # records to find neighbours by
    assert result.stages["buy-again"] == result.stages["neighbours"] == {"serving": False}
    assert isinstance(result.stages["ranker"]["serving"], bool)
