"""The model bundle: one folder with everything serving needs (towers, item embeddings, popular items, metadata).

Layout of a bundle folder::

    metadata.json            name, version, created_at, hyperparameters, data_window, feature_services,
                             metrics, code_version, device
    vocab.json               vocabularies, price buckets and numeric scaling (rebuild the towers with
                             the hyperparameters)
    query_tower.weights.h5   Keras weights of the query tower
    ranking_tower.weights.h5 Keras weights of the ranker
    item_ids.npy             str [n_items]
    item_embeddings.npy      float32 [n_items, d], candidate-tower output, same order as item_ids
    popular.json             {"global": [item_id, ...], "by_region": {region: [item_id, ...]}}

Serving code only needs `ModelBundle.load(path)`, `query_embedding`, `rank`, `item_ids`,
`item_embeddings` and `popular`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from models.config import ModelConfig, Vocabulary
from models.ranking import RANKING_CATEGORICAL, build_ranking_tower, scale_numeric
from models.retrieval import build_query_tower

METADATA_KEYS: tuple[str, ...] = (
    "name",
    "version",
    "created_at",
    "hyperparameters",
    "data_window",
    "feature_services",
    "metrics",
    "code_version",
    "device",
)


@dataclass
class ModelBundle:
    """Trained towers plus what serving needs around them. Build with `train_models` or `load`."""

    metadata: dict[str, Any]
    vocab: Vocabulary
    query_tower: tf.keras.Model
    ranking_tower: tf.keras.Model
    item_ids: np.ndarray
    item_embeddings: np.ndarray
    popular: dict[str, Any]
    _known_items: frozenset[str] = field(init=False, repr=False)
    _config: ModelConfig = field(init=False, repr=False)
    _query_fn: Any = field(init=False, repr=False)
    _rank_fn: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        missing = [k for k in METADATA_KEYS if k not in self.metadata]
        if missing:
            raise ValueError(f"Bundle metadata lacks {missing}; it must hold {list(METADATA_KEYS)}")
        if len(self.item_ids) != len(self.item_embeddings):
            raise ValueError(
                f"{len(self.item_ids)} item ids but {len(self.item_embeddings)} item embeddings: they must align"
            )
        self.item_ids = np.asarray(self.item_ids, dtype=str)
        self.item_embeddings = np.asarray(self.item_embeddings, dtype=np.float32)
        self._known_items = frozenset(self.vocab.item_id)
        self._config = ModelConfig.from_dict(self.metadata["hyperparameters"])
        n = self.config.sequence_length
        self._query_fn = tf.function(
            lambda x: self.query_tower(x, training=False),
            input_signature=[
                {
                    "user_id": tf.TensorSpec([None], tf.string),
                    "recent_items": tf.TensorSpec([None, n], tf.string),
                    "region": tf.TensorSpec([None], tf.string),
                    "age_band": tf.TensorSpec([None], tf.string),
                }
            ],
        )
        rank_spec = {name: tf.TensorSpec([None], tf.string) for name in RANKING_CATEGORICAL}
        rank_spec["numeric"] = tf.TensorSpec([None, len(self.config.ranking_numeric)], tf.float32)
        self._rank_fn = tf.function(
            lambda x: self.ranking_tower(x, training=False), input_signature=[rank_spec]
        )

    @property
    def config(self) -> ModelConfig:
        """The hyperparameters the towers were built with."""
        return self._config

    @property
    def version(self) -> str:
        return str(self.metadata["version"])

    # ---- inference -------------------------------------------------------------------------------
    def query_inputs(self, users: list[dict]) -> dict[str, np.ndarray]:
        """The query tower's input arrays for `users` (see `query_embedding`)."""
        n = self.config.sequence_length
        sequences = np.full((len(users), n), "", dtype=object)
        for row, user in enumerate(users):
            recent = [str(i) for i in (user.get("recent_items") or []) if str(i) in self._known_items][-n:]
            if recent:
                sequences[row, n - len(recent) :] = recent
        return {
            "user_id": np.array([str(u.get("user_id") or "") for u in users], dtype=object),
            "recent_items": sequences,
            "region": np.array([str(u.get("region") or "") for u in users], dtype=object),
            "age_band": np.array([str(u.get("age_band") or "") for u in users], dtype=object),
        }

    def query_embedding(self, users: list[dict]) -> np.ndarray:
        """Query-tower embeddings, float32 [len(users), d], comparable with `item_embeddings` by dot product.

        Args:
            users: dicts with `user_id` (str), `recent_items` (list of item ids, newest last, may be
                empty; ids unknown to the model are ignored), `region` and `age_band` (may be None).
                Unknown user ids get the shared out-of-vocabulary vector.
        """
        if not users:
            return np.zeros((0, self.item_embeddings.shape[1]), dtype=np.float32)
        return self._query_fn(self.query_inputs(users)).numpy()

    def ranking_inputs(self, user: dict, items: pd.DataFrame) -> dict[str, np.ndarray]:
        """The ranker's input arrays for one user and candidate items (see `rank`)."""
        n = len(items)
        inputs: dict[str, np.ndarray] = {}
        for name in RANKING_CATEGORICAL:
            if name in items.columns:
                inputs[name] = items[name].fillna("").astype(str).to_numpy(dtype=object)
            else:
                inputs[name] = np.full(n, str(user.get(name) or ""), dtype=object)
        numeric = np.zeros((n, len(self.config.ranking_numeric)), dtype=np.float32)
        for j, name in enumerate(self.config.ranking_numeric):
            if name in items.columns:
                numeric[:, j] = pd.to_numeric(items[name], errors="coerce").fillna(0.0).to_numpy()
            elif user.get(name) is not None:
                value = pd.to_numeric(pd.Series([user[name]]), errors="coerce").fillna(0.0).iloc[0]
                numeric[:, j] = value
        inputs["numeric"] = scale_numeric(numeric)
        return inputs

    def rank(self, user: dict, items: pd.DataFrame) -> np.ndarray:
        """Purchase-intent scores in [0, 1], float32 [len(items)], one per row of `items`.

        Args:
            user: the `query_embedding` keys plus the Feast `ranking_v1` user features (missing or
                None features count as 0).
            items: one row per candidate: `item_id` plus the `ranking_v1` item features (category,
                brand, price, popularity...); missing columns count as 0 / unknown.
        """
        if "item_id" not in items.columns:
            raise ValueError(f"rank() needs an 'item_id' column in items; got {list(items.columns)}")
        if len(items) == 0:
            return np.zeros(0, dtype=np.float32)
        logits = self._rank_fn(self.ranking_inputs(user, items)).numpy()[:, 0]
        return 1.0 / (1.0 + np.exp(-logits))

    # ---- persistence -----------------------------------------------------------------------------
    def save(self, path: Path) -> Path:
        """Write the bundle folder at `path` (created; existing files are overwritten)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "metadata.json").write_text(json.dumps(self.metadata, indent=2, default=str))
        (path / "vocab.json").write_text(json.dumps(self.vocab.to_dict()))
        (path / "popular.json").write_text(json.dumps(self.popular, indent=2))
        np.save(path / "item_ids.npy", self.item_ids.astype(str))
        np.save(path / "item_embeddings.npy", self.item_embeddings)
        self.query_tower.save_weights(str(path / "query_tower.weights.h5"))
        self.ranking_tower.save_weights(str(path / "ranking_tower.weights.h5"))
        return path

    @classmethod
    def load(cls, path: Path) -> ModelBundle:
        """Read a bundle folder written by `save`: rebuild the towers from hyperparameters and load weights."""
        path = Path(path)
        if not (path / "metadata.json").exists():
            raise FileNotFoundError(f"No model bundle at {path}: metadata.json is missing (train first)")
        metadata = json.loads((path / "metadata.json").read_text())
        vocab = Vocabulary.from_dict(json.loads((path / "vocab.json").read_text()))
        config = ModelConfig.from_dict(metadata["hyperparameters"])
        query_tower = build_query_tower(config, vocab)
        query_tower.load_weights(str(path / "query_tower.weights.h5"))
        ranking_tower = build_ranking_tower(config, vocab)
        ranking_tower.load_weights(str(path / "ranking_tower.weights.h5"))
        return cls(
            metadata=metadata,
            vocab=vocab,
            query_tower=query_tower,
            ranking_tower=ranking_tower,
            item_ids=np.load(path / "item_ids.npy"),
            item_embeddings=np.load(path / "item_embeddings.npy"),
            popular=json.loads((path / "popular.json").read_text()),
        )


def latest_bundle(models_dir: Path) -> Path:
    """The newest bundle folder under `models_dir` (versions sort by time)."""
    bundles = sorted(p for p in Path(models_dir).glob("*") if (p / "metadata.json").exists())
    if not bundles:
        raise FileNotFoundError(f"No model bundle under {models_dir}: run training first (recflow run)")
    return bundles[-1]
