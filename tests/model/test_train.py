"""Real TFRS fits on tiny data: the losses go down, and a full training run writes a loadable bundle."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from models.bundle import METADATA_KEYS, ModelBundle
from models.config import ModelConfig
from models.data import build_vocabulary, ranking_arrays, retrieval_arrays
from models.ranking import RankingModel, build_ranking_tower
from models.retrieval import RetrievalModel, build_candidate_tower, build_query_tower


def _batch(arrays: dict[str, np.ndarray], n: int) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices({k: v[:n] for k, v in arrays.items()}).batch(n)


def test_retrieval_fit_lowers_the_in_batch_softmax_loss(tiny_data):
    tf.keras.utils.set_random_seed(0)
    config = ModelConfig(embedding_dim=16, sequence_length=20, learning_rate=0.01)
    vocab = build_vocabulary(tiny_data, config)
    model = RetrievalModel(build_query_tower(config, vocab), build_candidate_tower(config, vocab), config)
    model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate))
    batch = _batch(retrieval_arrays(tiny_data.retrieval, config.sequence_length), 256)
    before = model.evaluate(batch, return_dict=True, verbose=0)["loss"]
    model.fit(batch.repeat(15), verbose=0)
    after = model.evaluate(batch, return_dict=True, verbose=0)["loss"]
    assert after < 0.8 * before


def test_ranking_fit_lowers_the_cross_entropy(tiny_data):
    tf.keras.utils.set_random_seed(0)
    config = ModelConfig(embedding_dim=16, ranking_numeric=tiny_data.ranking_numeric)
    vocab = build_vocabulary(tiny_data, config)
    model = RankingModel(build_ranking_tower(config, vocab))
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01))
    arrays = ranking_arrays(tiny_data.ranking, config.ranking_numeric)
    assert 0 < arrays["label"].mean() < 0.5  # both classes present
    batch = _batch(arrays, 256)
    before = model.evaluate(batch, return_dict=True, verbose=0)["loss"]
    model.fit(batch.repeat(15), verbose=0)
    after = model.evaluate(batch, return_dict=True, verbose=0)["loss"]
    assert after < 0.8 * before


@pytest.fixture(scope="module")
def trained(model_world):
    from models.train import train_models

    settings, store = model_world
    return settings, train_models(settings, store, verbose=0)


def test_train_models_writes_a_complete_bundle(trained):
    settings, result = trained
    assert result.bundle_path.parent == settings.models_dir
    assert result.device.startswith(("CPU", "GPU")) and result.seconds > 0
    for side in ("model", "popularity"):
        assert set(result.metrics[side]) == {"recall@10", "ndcg@10"}
        assert 0.0 <= result.metrics[side]["recall@10"] <= 1.0

    bundle = ModelBundle.load(result.bundle_path)
    assert set(METADATA_KEYS) <= set(bundle.metadata)
    assert bundle.metadata["metrics"] == result.metrics
    assert bundle.metadata["feature_services"] == {"retrieval": "retrieval_v1", "ranking": "ranking_v1"}
    assert bundle.metadata["hyperparameters"]["embedding_dim"] == settings.train.embedding_dim
    assert bundle.item_embeddings.shape == (len(bundle.item_ids), settings.train.embedding_dim)
    assert len(bundle.popular["global"]) >= 10 and bundle.popular["by_region"]
    query = bundle.query_embedding(
        [{"user_id": "u000001", "recent_items": [], "region": None, "age_band": None}]
    )
    assert query.shape == (1, settings.train.embedding_dim)
