"""Training entry point: datasets from Feast, retrieval then ranking, holdout evaluation, a saved bundle."""

from __future__ import annotations

import logging
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import tensorflow as tf
from feast import FeatureStore

from models.baselines import most_popular, popular_lists
from models.bundle import ModelBundle
from models.config import ModelConfig, Vocabulary
from models.data import (
    RANKING_SERVICE,
    RETRIEVAL_SERVICE,
    TrainingData,
    build_training_data,
    build_vocabulary,
    candidate_arrays,
    ranking_arrays,
    retrieval_arrays,
)
from models.evaluate import compare, top_k_by_score
from models.hardware import choose_strategy, device_description, training_precision
from models.ranking import RankingModel, build_ranking_tower
from models.retrieval import RetrievalModel, build_candidate_tower, build_query_tower
from recflow.settings import Settings

log = logging.getLogger(__name__)
MODEL_NAME = "recflow-two-tower"


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced: where the bundle is, its holdout metrics, the device, the time."""

    bundle_path: Path
    metrics: dict[str, dict[str, float]]
    device: str
    seconds: float
    version: str


def train_models(settings: Settings, store: FeatureStore, verbose: int = 2) -> TrainResult:
    """Train the two-tower retrieval model, then the ranker; evaluate on the holdout; save the bundle.

    Args:
        settings: platform settings (`train` section: hyperparameters and hardware options).
        store: a prepared Feast store; training data comes from its `retrieval_v1` and `ranking_v1`
            services (point-in-time).
        verbose: Keras progress (0 silent, 1 progress bar, 2 one line per epoch).

    Returns:
        The bundle's path under `settings.models_dir/<version>/`, the metrics
        `{"model": {"recall@K", "ndcg@K"}, "popularity": {...}}`, the device and the wall time.
    """
    start = time.perf_counter()
    device = device_description()
    log.info("training on %s (GPUs visible: %s)", device, tf.config.list_physical_devices("GPU"))
    tf.keras.utils.set_random_seed(settings.seed)
    strategy = choose_strategy(settings.train)

    data = build_training_data(settings, store)
    config = ModelConfig.from_settings(settings)
    config.ranking_numeric = data.ranking_numeric
    vocab = build_vocabulary(data, config)
    log.info("%d retrieval and %d ranking examples", len(data.retrieval), len(data.ranking))

    with training_precision(settings.train):
        query_tower, candidate_tower = fit_retrieval(data, config, vocab, strategy, verbose)
        ranking_tower = fit_ranking(data, config, vocab, strategy, verbose)

    bundle = make_bundle(data, config, vocab, query_tower, candidate_tower, ranking_tower, device)
    metrics = evaluate_bundle(bundle, data, config.k)
    bundle.metadata["metrics"] = metrics
    path = bundle.save(settings.models_dir / bundle.version)
    seconds = time.perf_counter() - start
    log.info("trained in %.1fs on %s: %s", seconds, device, metrics)
    return TrainResult(
        bundle_path=path, metrics=metrics, device=device, seconds=seconds, version=bundle.version
    )


def fit_retrieval(
    data: TrainingData,
    config: ModelConfig,
    vocab: Vocabulary,
    strategy: tf.distribute.Strategy,
    verbose: int = 2,
) -> tuple[tf.keras.Model, tf.keras.Model]:
    """Fit the two-tower model with in-batch softmax; return (query tower, candidate tower)."""
    arrays = retrieval_arrays(data.retrieval, config.sequence_length)
    dataset = _dataset(arrays, config.batch_size, config.seed)
    with strategy.scope():
        query_tower = build_query_tower(config, vocab)
        candidate_tower = build_candidate_tower(config, vocab)
        model = RetrievalModel(query_tower, candidate_tower, config)
        model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate))
    model.fit(dataset, epochs=config.epochs, verbose=verbose)
    return query_tower, candidate_tower


def fit_ranking(
    data: TrainingData,
    config: ModelConfig,
    vocab: Vocabulary,
    strategy: tf.distribute.Strategy,
    verbose: int = 2,
) -> tf.keras.Model:
    """Fit the ranker on (user, item) views labelled by cart/purchase; return the ranking tower."""
    arrays = ranking_arrays(data.ranking, config.ranking_numeric)
    dataset = _dataset(arrays, config.batch_size, config.seed)
    with strategy.scope():
        ranking_tower = build_ranking_tower(config, vocab)
        model = RankingModel(ranking_tower)
        model.compile(optimizer=tf.keras.optimizers.Adam(config.ranking_learning_rate))
    model.fit(dataset, epochs=config.ranking_epochs, verbose=verbose)
    return ranking_tower


def make_bundle(
    data: TrainingData,
    config: ModelConfig,
    vocab: Vocabulary,
    query_tower: tf.keras.Model,
    candidate_tower: tf.keras.Model,
    ranking_tower: tf.keras.Model,
    device: str,
) -> ModelBundle:
    """Wrap trained towers into a bundle: catalogue embeddings, cold-start lists, metadata (no metrics yet)."""
    item_ids = data.catalogue["item_id"].astype(str).to_numpy()
    now = datetime.now(UTC)
    return ModelBundle(
        metadata={
            "name": MODEL_NAME,
            "version": now.strftime("%Y%m%dT%H%M%S%fZ"),
            "created_at": now.isoformat(),
            "hyperparameters": config.to_dict(),
            "data_window": {"start": data.window[0].isoformat(), "end": data.window[1].isoformat()},
            "feature_services": {"retrieval": RETRIEVAL_SERVICE, "ranking": RANKING_SERVICE},
            "metrics": {},
            "code_version": code_version(),
            "device": device,
        },
        vocab=vocab,
        query_tower=query_tower,
        ranking_tower=ranking_tower,
        item_ids=item_ids,
        item_embeddings=embed_items(candidate_tower, data),
        popular=popular_lists(data.train_events, data.users, max(100, config.k), set(item_ids)),
    )


def embed_items(candidate_tower: tf.keras.Model, data: TrainingData, batch_size: int = 4096) -> np.ndarray:
    """Candidate-tower embeddings of the catalogue, float32 [n_items, d], in catalogue order."""
    dataset = tf.data.Dataset.from_tensor_slices(candidate_arrays(data.catalogue)).batch(batch_size)
    return np.concatenate([candidate_tower(batch, training=False).numpy() for batch in dataset]).astype(
        np.float32
    )


def evaluate_bundle(bundle: ModelBundle, data: TrainingData, k: int) -> dict[str, dict[str, float]]:
    """Holdout Recall@K / NDCG@K of the bundle's retrieval and of the popularity baseline."""
    queries = data.eval_queries
    users = [
        {
            "user_id": r.user_id,
            "recent_items": _as_list(r.recent_items),
            "region": r.region,
            "age_band": r.age_band,
        }
        for r in queries.itertuples(index=False)
    ]
    scores = bundle.query_embedding(users) @ bundle.item_embeddings.T
    tops = dict(zip(queries["user_id"].astype(str), top_k_by_score(scores, bundle.item_ids, k), strict=True))
    popular = most_popular(data.train_events, k, set(bundle.item_ids))
    metrics = compare(tops, {u: popular for u in data.relevant}, data.relevant, k)
    log.info("evaluated %d holdout users", len(data.relevant))
    return {name: {m: v for m, v in values.items() if m != "users"} for name, values in metrics.items()}


def code_version() -> str:
    """The git commit of the working tree (with '+dirty' when modified), or 'unknown' outside git."""
    try:
        root = Path(__file__).resolve().parent
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True
        ).stdout
        return commit + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _dataset(arrays: dict[str, np.ndarray], batch_size: int, seed: int) -> tf.data.Dataset:
    """Cached examples, reshuffled every epoch, batched and prefetched."""
    n = len(next(iter(arrays.values())))
    return (
        tf.data.Dataset.from_tensor_slices(arrays)
        .cache()
        .shuffle(min(n, 200_000), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size, drop_remainder=n >= batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


def _as_list(value) -> list:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    return list(value)
