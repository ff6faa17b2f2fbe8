"""Hyperparameters of the TFRS models, as a dataclass saved with the weights (nanoGPT-style)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from recflow.settings import Settings


@dataclass
class ModelConfig:
    """Everything needed to rebuild the towers, apart from the vocabularies (saved beside them).

    Built from `settings.train` (and `settings.features.sequence_length`) by `from_settings`, stored in
    the bundle's metadata as `hyperparameters`, and read back by `from_dict` when a bundle is loaded.
    """

    embedding_dim: int = 64
    epochs: int = 3
    batch_size: int = 512
    learning_rate: float = 0.01
    ranking_epochs: int = 2
    ranking_learning_rate: float = 0.01
    sequence_length: int = 20
    temperature: float = 1.0
    logq_correction: bool = True
    price_buckets: int = 10
    cross_layers: int = 1
    deep_units: int = 64
    ranking_numeric: list[str] = field(default_factory=list)
    mixed_precision: bool = False
    xla: bool = False
    seed: int = 42
    k: int = 10

    def to_dict(self) -> dict:
        """A JSON-ready dict of every hyperparameter."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        """Rebuild from `to_dict` output; unknown keys (from a newer version) are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelConfig:
        """The hyperparameters that `settings.train` asks for."""
        t = settings.train
        return cls(
            embedding_dim=t.embedding_dim,
            epochs=t.epochs,
            batch_size=t.batch_size,
            learning_rate=t.learning_rate,
            ranking_epochs=t.ranking_epochs,
            ranking_learning_rate=t.ranking_learning_rate,
            sequence_length=settings.features.sequence_length,
            temperature=t.temperature,
            logq_correction=t.logq_correction,
            mixed_precision=t.mixed_precision,
            xla=t.xla,
            seed=settings.seed,
            k=t.k,
        )


@dataclass
class Vocabulary:
    """The data-derived constants of the towers: id vocabularies, price buckets, numeric scaling.

    Saved as `vocab.json` in the bundle; together with `ModelConfig` it rebuilds every tower exactly.
    """

    user_id: list[str]
    item_id: list[str]
    category: list[str]
    brand: list[str]
    region: list[str]
    age_band: list[str]
    price_boundaries: list[float]
    numeric_mean: list[float] = field(default_factory=list)
    numeric_std: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Vocabulary:
        """Rebuild from `to_dict` output."""
        return cls(**values)
