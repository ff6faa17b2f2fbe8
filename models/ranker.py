"""The ranker of the platform, in TFRS: a DCN-v2 that re-orders the merged candidates of a user.

It sees, per (user, candidate): what each candidate source said (the two-tower's score, its gap to
the best candidate and the candidate's rank there; the co-occurrence score, its share of the best
and the rank there), the item's popularity, the length of the user's history and the attributes the
candidate shares with the user's newest item, plus the online features of the user (activity counts,
tenure, recency) and of the item (price, age, popularity and conversion windows) as the feature store
serves them. Cross layers learn their interactions. It is trained with a softmax over each user's
candidate list, the positives being the user's next interactions (weighted by event type).

The ranker earns its place: `models.pipeline.fit_pipeline` compares its order with the merged
candidate order on validation targets and ships a package without it when it does not win.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from models.callbacks import ValidationStopping
from models.hardware import in_float32

SOURCE_FEATURES: tuple[str, ...] = (
    "retrieval_score",
    "retrieval_gap",
    "retrieval_log_rank",
    "cooc_share",
    "cooc_log_score",
    "cooc_log_rank",
    "log_popularity",
    "log_history_length",
    "attribute_overlap",
)
"""What the candidate sources say about a candidate (computed by `models.scorer`)."""


@dataclass(frozen=True)
class RankerConfig:
    """Hyperparameters of the ranker, saved with its weights."""

    candidates: int = 100
    cross_layers: int = 2
    hidden: tuple[int, ...] = (64, 32)
    learning_rate: float = 3e-3
    batch_size: int = 256
    max_epochs: int = 30
    patience: int = 3
    seed: int = 42

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, values: dict) -> RankerConfig:
        """Rebuild from `asdict` output (lists back to tuples); unknown keys are ignored."""
        known = cls.__dataclass_fields__
        kept: dict[str, Any] = {
            k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items() if k in known
        }
        return cls(**kept)


def scale_numeric(values: np.ndarray) -> np.ndarray:
    """Counts, prices and days are heavy-tailed: sign(x) * log1p(|x|), missing values as 0, float32."""
    values = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    return (np.sign(values) * np.log1p(np.abs(values))).astype(np.float32)


MIN_STD = 0.05
"""Standardisation never divides by less than this (features are log-compressed first)."""
CONSTANT_STD = 1e-4
"""A feature whose training values vary less than this carries nothing to learn: the ranker ignores it.

Without this, a feature that is constant in training (every user's tenure on an Amazon set whose
users all signed up before its first day) is divided by ~0 and any other value at serving time (the
tenure a few days later) becomes an enormous input that scrambles the order.
"""


def standardisation(mean: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(shift, scale) of the ranker's input: x -> (x - shift) * scale, constant features scaled by 0."""
    std = np.sqrt(np.maximum(np.asarray(var, np.float64), 0.0))
    scale = np.where(std < CONSTANT_STD, 0.0, 1.0 / np.maximum(std, MIN_STD))
    return np.asarray(mean, np.float32), scale.astype(np.float32)


class CandidateRanker(tfrs.Model):
    """DCN-v2 over candidate features [B, C, F] -> logits [B, C] (see the module docstring)."""

    def __init__(
        self,
        config: RankerConfig,
        feature_mean: np.ndarray,
        feature_var: np.ndarray,
        feature_range: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.n_features = len(feature_mean)
        self.feature_mean = np.asarray(feature_mean, np.float32)
        self.feature_var = np.asarray(feature_var, np.float32)
        shift, scale = standardisation(self.feature_mean, self.feature_var)
        self.shift, self.scale = tf.constant(shift), tf.constant(scale)
        # None (a bundle saved before the ranker kept its range): inputs are not clipped
        low, high = feature_range or (np.full(self.n_features, -np.inf), np.full(self.n_features, np.inf))
        self.feature_min = np.asarray(low, np.float32)
        self.feature_max = np.asarray(high, np.float32)
        self.low, self.high = tf.constant(self.feature_min), tf.constant(self.feature_max)
        self.cross = [tfrs.layers.dcn.Cross() for _ in range(config.cross_layers)]
        self.deep = tf.keras.Sequential([tf.keras.layers.Dense(h, activation="relu") for h in config.hidden])
        self.out = tf.keras.layers.Dense(1)
        self.task = tfrs.tasks.Ranking(loss=tf.keras.losses.CategoricalCrossentropy(from_logits=True))

    def call(self, features: tf.Tensor) -> tf.Tensor:
        """Features [B, C, F] -> logits [B, C] (each feature clipped to its training range first)."""
        shape = tf.shape(features)
        x = tf.clip_by_value(tf.reshape(features, [-1, self.n_features]), self.low, self.high)
        x0 = (x - self.shift) * self.scale
        x = x0
        for layer in self.cross:
            x = layer(x0, x)
        return tf.reshape(self.out(self.deep(x)), shape[:2])

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        return self.task(labels=features["labels"], predictions=self(features["features"]))

    def build_for(self) -> CandidateRanker:
        """Create the variables (before `load_weights`)."""
        self(tf.zeros((1, 1, self.n_features), tf.float32))
        return self

    def unclipped(self) -> CandidateRanker:
        """A twin with the same weights and standardisation that reads its inputs unclipped (how rankers
        served before they kept their training range; `recflow bench champion-age` measures the
        difference)."""
        twin = CandidateRanker(self.config, self.feature_mean, self.feature_var).build_for()
        twin.set_weights(self.build_for().get_weights())
        return twin


def fit_ranker(
    feats: np.ndarray,
    labels: np.ndarray,
    config: RankerConfig,
    epochs: int | None = None,
    validate: Callable[[CandidateRanker], float] | None = None,
    verbose: int = 0,
) -> tuple[CandidateRanker, dict]:
    """Train the ranker on users whose next interactions are among their candidates.

    Args:
        feats: `[B, C, F]` candidate features (`models.scorer`).
        labels: `[B, C]` weights of the positives (rows without a positive are dropped; each row is
            normalised to sum 1).
        config: hyperparameters.
        epochs: exact epoch count (the refit); default early stopping with `validate`.
        validate: scores the ranker (higher is better) after each epoch.
        verbose: Keras verbosity.

    Raises:
        ValueError: when no user has a positive among its candidates.
    """
    tf.keras.utils.set_random_seed(config.seed)
    keep = labels.sum(axis=1) > 0
    if not keep.any():
        raise ValueError("no user's next interaction is among its candidates: nothing to train the ranker on")
    flat = feats[keep].reshape(-1, feats.shape[-1])
    # a small network over a few dozen features: float32 whatever the two-tower trained in
    model = in_float32(
        lambda: CandidateRanker(
            config, flat.mean(axis=0), flat.var(axis=0), (flat.min(axis=0), flat.max(axis=0))
        )
    )
    model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate))
    targets = labels[keep] / labels[keep].sum(axis=1, keepdims=True)
    data = (
        tf.data.Dataset.from_tensor_slices(
            {"features": feats[keep].astype(np.float32), "labels": targets.astype(np.float32)}
        )
        .shuffle(int(keep.sum()), seed=config.seed)
        .batch(config.batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    total = epochs or config.max_epochs
    stopping = ValidationStopping(lambda m, _: validate(m), 1, config.patience) if validate else None
    model.fit(data, epochs=total, verbose=verbose, callbacks=[stopping] if stopping else [])
    if stopping is None:
        return model, {"best_epoch": total, "best_score": float("nan"), "evaluations": []}
    return model, stopping.history


def ranker_logits(model: CandidateRanker, feats: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """The ranker's logits [B, C] for candidate features [B, C, F], in batches."""
    if len(feats) == 0:
        return np.zeros(feats.shape[:2], np.float32)
    return np.concatenate(
        [model(tf.constant(feats[lo : lo + batch_size])).numpy() for lo in range(0, len(feats), batch_size)]
    )
