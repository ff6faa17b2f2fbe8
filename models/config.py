"""Hyperparameters of the model family, as one dataclass saved with the weights (nanoGPT-style).

A package holds a two-tower (`SequentialConfig`), a co-occurrence model (`CooccurrenceParams`,
chosen on validation), popularity counts, a buy-again source where it was fitted with purchase
records (`BuyAgainConfig`) with the household-neighbour source beside it (`NeighbourConfig`) and, when it earned its place, a ranker (`RankerConfig`).
`PipelineConfig.from_settings` reads what `settings.train` asks for; `to_dict` / `from_dict` are
what a bundle's `metadata.json` stores as `hyperparameters`, so any package can be rebuilt.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from models.buy_again import BuyAgainConfig
from models.cooccurrence import CooccurrenceParams
from models.neighbours import NeighbourConfig
from models.ranker import RankerConfig
from models.sequential import SequentialConfig
from recflow.settings import Settings


@dataclass(frozen=True)
class PipelineConfig:
    """Everything that rebuilds a package's models, apart from the data-derived arrays.

    `neighbour_source` asks a fit with purchase records for the household-neighbour source too;
    `neighbours.enabled` says whether the package has it.
    """

    two_tower: SequentialConfig = field(default_factory=SequentialConfig)
    ranker: RankerConfig = field(default_factory=RankerConfig)
    cooccurrence: CooccurrenceParams = field(default_factory=CooccurrenceParams)
    buy_again: BuyAgainConfig = field(default_factory=BuyAgainConfig)
    neighbours: NeighbourConfig = field(default_factory=NeighbourConfig)
    neighbour_source: bool = True
    event_weights: dict[str, float] = field(
        default_factory=lambda: {"view": 1.0, "add_to_cart": 2.0, "purchase": 3.0}
    )
    tuning_users: int = 8000
    report_share: float = 0.5
    ranker_alpha: float = 0.05
    k: int = 10
    seed: int = 42

    def to_dict(self) -> dict:
        """A JSON-ready dict of every hyperparameter."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> PipelineConfig:
        """Rebuild from `to_dict` output; unknown keys (from another version) are ignored."""
        known = set(cls.__dataclass_fields__)
        kept = {k: v for k, v in values.items() if k in known}
        if isinstance(kept.get("two_tower"), dict):
            kept["two_tower"] = SequentialConfig.from_dict(kept["two_tower"])
        if isinstance(kept.get("ranker"), dict):
            kept["ranker"] = RankerConfig.from_dict(kept["ranker"])
        if isinstance(kept.get("cooccurrence"), dict):
            params = kept["cooccurrence"]
            kept["cooccurrence"] = CooccurrenceParams(
                **{k: v for k, v in params.items() if k in CooccurrenceParams.__dataclass_fields__}
            )
        if isinstance(kept.get("buy_again"), dict):
            kept["buy_again"] = BuyAgainConfig.from_dict(kept["buy_again"])
        if isinstance(kept.get("neighbours"), dict):
            kept["neighbours"] = NeighbourConfig.from_dict(kept["neighbours"])
        return cls(**kept)

    @classmethod
    def from_settings(cls, settings: Settings) -> PipelineConfig:
        """The hyperparameters that `settings.train` (and the sequence feature's length) ask for."""
        t = settings.train
        two_tower = SequentialConfig(
            max_len=settings.features.sequence_length,
            dim=t.dim,
            heads=t.heads,
            blocks=t.blocks,
            dropout=t.dropout,
            learning_rate=t.learning_rate,
            batch_size=t.batch_size,
            max_epochs=t.max_epochs,
            eval_every=t.eval_every,
            patience=t.patience,
            refit_epochs=t.refit_epochs,
            max_windows=t.max_windows,
            negatives=t.negatives,
            seed=settings.seed,
        )
        ranker = RankerConfig(
            candidates=t.candidates,
            learning_rate=t.ranker_learning_rate,
            max_epochs=t.ranker_max_epochs,
            seed=settings.seed,
        )
        return cls(
            two_tower=two_tower,
            ranker=ranker,
            event_weights=dict(t.event_weights),
            buy_again=BuyAgainConfig(min_discoveries=t.min_discoveries),
            neighbour_source=t.household_neighbours,
            tuning_users=t.tuning_users,
            report_share=t.report_share,
            ranker_alpha=t.ranker_alpha,
            k=t.k,
            seed=settings.seed,
        )

    def with_cooccurrence(self, params: CooccurrenceParams) -> PipelineConfig:
        """The same config with the co-occurrence parameters chosen on validation."""
        return replace(self, cooccurrence=params)

    def with_buy_again(self, params: BuyAgainConfig) -> PipelineConfig:
        """The same config with the buy-again source as fitted (on, and its half-life chosen on validation)."""
        return replace(self, buy_again=params)

    def with_neighbours(self, params: NeighbourConfig) -> PipelineConfig:
        """The same config with the household-neighbour source as fitted (its k and alpha chosen on validation)."""
        return replace(self, neighbours=params)
