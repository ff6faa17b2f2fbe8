"""The model bundle: one folder with everything a package serves, and the loaded object around it.

Layout of a bundle folder::

    metadata.json        name, version, created_at, hyperparameters, data_window, validation_window,
                         feature_services, features, stages, metrics, code_version, device
    catalogue.npz        item ids, attribute tokens, categories (models.catalogue); tokens.json
    two_tower/           TF checkpoint of the sequential two-tower
    item_embeddings.npy  float32 [n_items, dim]: the candidate tower over the catalogue
    cooccurrence.npz     the co-occurrence matrix (scipy sparse); popularity.npy item counts
    ranker/              TF checkpoint, config and feature normalisation (absent: no ranker serves)
    popular.json         {"global": [item_id, ...], "by_region": {region: [item_id, ...]}} (cold start)
    repurchase_days.npy  each item's median days between two purchases by one user (NaN: never re-bought;
                         only in packages with the buy-again source, `models.buy_again`)
    neighbours.npz       the fitted households' TIFU vectors (scipy sparse; only in packages with the
                         household-neighbour source, `models.neighbours`)

`ModelBundle.load(path)` rebuilds every model from the hyperparameters and loads the weights; the
one scoring path over it is `models.scorer.BatchScorer`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from scipy import sparse

from models.catalogue import Catalogue
from models.config import PipelineConfig
from models.cooccurrence import CooccurrenceModel
from models.neighbours import Neighbours
from models.ranker import CandidateRanker
from models.sequential import SequentialRetrieval

METADATA_KEYS: tuple[str, ...] = (
    "name",
    "version",
    "created_at",
    "hyperparameters",
    "data_window",
    "feature_services",
    "features",
    "stages",
    "metrics",
    "code_version",
    "device",
)


@dataclass
class ModelBundle:
    """Fitted candidate sources, the optional ranker and what serving needs around them.

    Attributes:
        metadata: what made the package (see `METADATA_KEYS`).
        catalogue: the items the package knows (index order of every array here).
        two_tower: the sequential two-tower (`models.sequential.SequentialRetrieval`).
        item_embeddings: the candidate tower over the catalogue, float32 [n_items, dim].
        cooccurrence: the fitted item-to-item co-occurrence model.
        popularity: interaction count of each item over the fitting histories.
        popular: cold-start lists, `{"global": [...], "by_region": {region: [...]}}`.
        ranker: the DCN-v2 ranker, or None when it did not beat the merged candidate order.
        repurchase_days: each item's typical repurchase interval in days (NaN = unknown), for the
            buy-again source's ranker features; None in packages without it.
        neighbours: the fitted households' vectors (`models.neighbours.Neighbours`) of the
            household-neighbour source; None in packages without it.
    """

    metadata: dict[str, Any]
    catalogue: Catalogue
    two_tower: SequentialRetrieval
    item_embeddings: np.ndarray
    cooccurrence: CooccurrenceModel
    popularity: np.ndarray
    popular: dict[str, Any]
    ranker: CandidateRanker | None = None
    repurchase_days: np.ndarray | None = None
    neighbours: Neighbours | None = None

    def __post_init__(self) -> None:
        missing = [k for k in METADATA_KEYS if k not in self.metadata]
        if missing:
            raise ValueError(f"Bundle metadata lacks {missing}; it must hold {list(METADATA_KEYS)}")
        n = len(self.catalogue)
        if len(self.item_embeddings) != n or len(self.popularity) != n:
            raise ValueError(
                f"{n} catalogue items but {len(self.item_embeddings)} embeddings and "
                f"{len(self.popularity)} popularity counts: they must align"
            )
        if self.neighbours is not None and self.neighbours.vectors.shape[1] != n:
            raise ValueError(
                f"{n} catalogue items but household vectors over {self.neighbours.vectors.shape[1]}: "
                "they must align"
            )
        self.item_embeddings = np.ascontiguousarray(self.item_embeddings, dtype=np.float32)
        self.metadata = json.loads(json.dumps(self.metadata, default=str))  # as saved: lists, not tuples
        self._config = PipelineConfig.from_dict(self.metadata["hyperparameters"])

    @property
    def config(self) -> PipelineConfig:
        """The hyperparameters the models were built with."""
        return self._config

    def set_config(self, config: PipelineConfig) -> None:
        """Replace the hyperparameters (metadata included) with choices made after the models were built
        (the fusion weight, chosen once the ranker is)."""
        self.metadata["hyperparameters"] = json.loads(json.dumps(config.to_dict(), default=str))
        self._config = PipelineConfig.from_dict(self.metadata["hyperparameters"])

    @property
    def version(self) -> str:
        return str(self.metadata["version"])

    @property
    def item_ids(self) -> np.ndarray:
        return self.catalogue.item_ids

    @property
    def user_features(self) -> list[str]:
        """The online user features the ranker reads, in its input order."""
        return list(self.metadata["features"].get("user", []))

    @property
    def item_features(self) -> list[str]:
        """The online item features the ranker reads, in its input order."""
        return list(self.metadata["features"].get("item", []))

    # ---- persistence -----------------------------------------------------------------------------
    def save(self, path: Path) -> Path:
        """Write the bundle folder at `path` (created; existing files are overwritten)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "metadata.json").write_text(json.dumps(self.metadata, indent=2, default=str))
        self.catalogue.save(path)
        self.two_tower.save_weights(str(path / "two_tower" / "weights"))
        np.save(path / "item_embeddings.npy", self.item_embeddings)
        sparse.save_npz(path / "cooccurrence.npz", self.cooccurrence.matrix)
        np.save(path / "popularity.npy", self.popularity)
        (path / "popular.json").write_text(json.dumps(self.popular, indent=2))
        if self.repurchase_days is not None:
            np.save(path / "repurchase_days.npy", self.repurchase_days)
        if self.neighbours is not None:
            sparse.save_npz(path / "neighbours.npz", self.neighbours.vectors)
        if self.ranker is not None:
            (path / "ranker").mkdir(exist_ok=True)
            self.ranker.save_weights(str(path / "ranker" / "weights"))
            (path / "ranker" / "normalisation.json").write_text(
                json.dumps(
                    {
                        "mean": self.ranker.feature_mean.tolist(),
                        "var": self.ranker.feature_var.tolist(),
                        "min": self.ranker.feature_min.tolist(),
                        "max": self.ranker.feature_max.tolist(),
                    }
                )
            )
        return path

    @classmethod
    def load(cls, path: Path) -> ModelBundle:
        """Read a bundle folder written by `save`: rebuild the models from hyperparameters, load weights."""
        path = Path(path)
        if not (path / "metadata.json").exists():
            raise FileNotFoundError(f"No model bundle at {path}: metadata.json is missing (train first)")
        metadata = json.loads((path / "metadata.json").read_text())
        config = PipelineConfig.from_dict(metadata["hyperparameters"])
        catalogue = Catalogue.load(path)
        two_tower = build_two_tower(catalogue, config)
        two_tower.load_weights(str(path / "two_tower" / "weights")).expect_partial()
        popularity = np.load(path / "popularity.npy")
        cooccurrence = CooccurrenceModel(config.cooccurrence, len(catalogue))
        cooccurrence.matrix = sparse.load_npz(path / "cooccurrence.npz").tocsr()
        cooccurrence.popularity = popularity.astype(np.float64)
        ranker = None
        if (path / "ranker" / "normalisation.json").exists():
            norm = json.loads((path / "ranker" / "normalisation.json").read_text())
            span = (np.array(norm["min"]), np.array(norm["max"])) if "min" in norm else None
            ranker = CandidateRanker(
                config.ranker, np.array(norm["mean"]), np.array(norm["var"]), span
            ).build_for()
            ranker.load_weights(str(path / "ranker" / "weights")).expect_partial()
        return cls(
            metadata=metadata,
            catalogue=catalogue,
            two_tower=two_tower,
            item_embeddings=np.load(path / "item_embeddings.npy"),
            cooccurrence=cooccurrence,
            popularity=popularity,
            popular=json.loads((path / "popular.json").read_text()),
            ranker=ranker,
            repurchase_days=(
                np.load(path / "repurchase_days.npy") if (path / "repurchase_days.npy").exists() else None
            ),
            neighbours=(
                Neighbours(sparse.load_npz(path / "neighbours.npz"))
                if (path / "neighbours.npz").exists()
                else None
            ),
        )


def build_two_tower(catalogue: Catalogue, config: PipelineConfig) -> SequentialRetrieval:
    """An untrained two-tower over `catalogue` with its variables created (to load weights into)."""
    model = SequentialRetrieval(catalogue.attributes, config.two_tower)
    model.sequence_tower(tf.zeros((1, config.two_tower.max_len), tf.int32))
    return model


def item_vectors(model: SequentialRetrieval) -> np.ndarray:
    """The candidate tower over the whole catalogue, float32 [n_items, dim] (what the ANN index holds)."""
    return model.item_tower.all_items().numpy().astype(np.float32)


def latest_bundle(models_dir: Path) -> Path:
    """The newest bundle folder under `models_dir` (versions sort by time)."""
    bundles = sorted(p for p in Path(models_dir).glob("*") if (p / "metadata.json").exists())
    if not bundles:
        raise FileNotFoundError(f"No model bundle under {models_dir}: run training first (recflow run)")
    return bundles[-1]
