"""The train stage: point-in-time data from Feast, the model family fitted, both packages saved.

`train_models` reads the validated store and the feature store (`models.data`), fits the family with
`models.pipeline.fit_pipeline` (choose on validation targets, report on users no choice saw, refit on
everything) and saves two bundles under `settings.models_dir/<version>/`: the serving package at the
top (what the model store gets and the service loads) and the validation package in `validation/`
(never saw a held-out interaction; the promotion gate scores it against the champion).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import tensorflow as tf
from feast import FeatureStore

from models.config import PipelineConfig
from models.data import RETRIEVAL_SERVICE, build_training_data
from models.hardware import choose_strategy, device_description, training_precision
from models.pipeline import fit_pipeline
from recflow.provenance import code_version
from recflow.settings import Settings

log = logging.getLogger(__name__)
MODEL_NAME = "recflow-recommender"
VALIDATION_DIR = "validation"


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced.

    Attributes:
        bundle_path: the serving package (refit through the newest day).
        metrics: `{"model": {...}, "popularity": {...}}` on the report users (HR, Recall, NDCG @K),
            from the validation package, which never saw them.
        device: where TensorFlow trained.
        seconds: wall time.
        version: the packages' version.
        stages: per stage, whether it serves and its validation figures.
        validation_path: the validation package (for the promotion gate).
        stage_seconds: wall time by step: `data` (the training sets from the feature store), the fit's
            steps (`models.pipeline.FitResult.seconds`) and `save`.
    """

    bundle_path: Path
    metrics: dict[str, dict[str, float]]
    device: str
    seconds: float
    version: str
    stages: dict = field(default_factory=dict)
    validation_path: Path | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)


def train_models(
    settings: Settings,
    store: FeatureStore,
    verbose: int = 0,
    progress: Callable[[str], None] | None = None,
    tuned: PipelineConfig | None = None,
) -> TrainResult:
    """Fit the model family on the validated store and save the serving and validation packages.

    Args:
        settings: platform settings (`train`: hyperparameters and hardware; `data.holdout_days`).
        store: a prepared Feast store (point-in-time features of the ranker).
        verbose: 0 quiet; 1 or more: log each step (as `progress` does).
        progress: called with one line per step (the pipeline prints them).
        tuned: keep this config's searched hyperparameters instead of searching them again (see
            `models.pipeline.fit_pipeline`); None: search them.

    Returns:
        Paths, metrics, device, time, version and stages (see `TrainResult`).
    """
    start = time.perf_counter()
    device = device_description()
    log.info("training on %s (GPUs visible: %s)", device, tf.config.list_physical_devices("GPU"))
    tf.keras.utils.set_random_seed(settings.seed)
    say = progress or (log.info if verbose else log.debug)
    data, split = build_training_data(settings, store)
    data_seconds = time.perf_counter() - start
    say(
        f"data: {len(data.fit)} histories before {split.cut.date()}, {len(data.valid_users)} validation "
        f"users, {len(data.catalogue)} items ({time.perf_counter() - start:.0f}s)"
    )
    config = PipelineConfig.from_settings(settings)
    now = datetime.now(UTC)
    version = now.strftime("%Y%m%dT%H%M%S%fZ")
    metadata = {
        "name": MODEL_NAME,
        "version": version,
        "created_at": now.isoformat(),
        **split.windows(),
        "feature_services": {"retrieval": RETRIEVAL_SERVICE, "ranking": "ranking_v1"},
        "code_version": code_version(),
        "device": device,
    }
    strategy = choose_strategy(settings.train)
    with training_precision(settings.train) as precision:
        result = fit_pipeline(
            data,
            config,
            metadata | {"precision": precision, "replicas": strategy.num_replicas_in_sync},
            strategy=strategy,
            log_dir=settings.reports_dir / "tensorboard" / version,
            progress=say,
            tuned=tuned,
        )
    saving = time.perf_counter()
    path = result.serving.save(settings.models_dir / version)
    validation_path = result.validation.save(path / VALIDATION_DIR)
    seconds = time.perf_counter() - start
    log.info("trained in %.1fs on %s: %s", seconds, device, result.metrics)
    return TrainResult(
        bundle_path=path,
        metrics=result.metrics,
        device=device,
        seconds=seconds,
        version=version,
        stages=result.stages,
        validation_path=validation_path,
        stage_seconds={
            "data": round(data_seconds, 1),
            **result.seconds,
            "save": round(time.perf_counter() - saving, 1),
        },
    )
