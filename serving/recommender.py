"""The recommendation path of one request: online features -> the one scorer -> reasons.

`Recommender` wraps a loaded package (`models.bundle.ModelBundle`) and its `models.scorer.BatchScorer`
with what only a live request has: the user's online features and recent items from Feast (so an
event pushed a moment ago changes the next answer), the purchase filter, the cold-start answer for
users the shop has never seen, and a short, true reason per item. Ranking itself is the scorer's,
the same code that training's evaluation, the gate, monitoring and the benchmarks run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from models.bundle import ModelBundle
from models.scorer import BatchScorer, Query, Ranked
from recflow.settings import Settings
from serving.purchases import Purchases
from serving.schemas import RecommendResponse, ScoredItem, SimilarItemsResponse

if TYPE_CHECKING:
    from features.online import OnlineFeatures

log = logging.getLogger(__name__)

STAGES: tuple[str, ...] = ("user_features", "score", "total")
Observer = Callable[[str, float], None]


class UnknownItemError(LookupError):
    """An item id that is not in the served model's catalogue."""


@dataclass
class Recommender:
    """One loaded package with everything a request needs; immutable once built, safe to share.

    Attributes:
        bundle: the package (two-tower, co-occurrence, popularity, optional ranker).
        scorer: the one scoring path over it (ANN index built as `settings.serving` asks).
        features: the online feature reader (`features.online.OnlineFeatures`); None serves from the
            bundle alone (every user is cold).
        settings: the platform settings.
        tag: the BentoML model tag being served.
        metadata: what made the model (stages, metrics, data window, hyperparameters, ...).
        purchases: who bought what (shared across model versions), for the seen filter.
        observe: called with (stage, seconds) after each stage of `recommend` (latency metrics).
    """

    bundle: ModelBundle
    scorer: BatchScorer
    features: OnlineFeatures | None
    settings: Settings
    tag: str
    metadata: dict
    purchases: Purchases = field(default_factory=Purchases)
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    observe: Observer | None = None

    def __post_init__(self) -> None:
        embeddings = self.bundle.item_embeddings
        self.unit_embeddings = embeddings / np.maximum(
            np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12
        )

    # ---- loading ---------------------------------------------------------------------------------
    @classmethod
    def from_bundle(
        cls,
        settings: Settings,
        bundle_path: Path,
        features: OnlineFeatures | None,
        tag: str = "local",
        metadata: dict | None = None,
        purchases: Purchases | None = None,
    ) -> Recommender:
        """Load a bundle folder, build its ANN index (recall against exact search checked)."""
        import faiss

        faiss.omp_set_num_threads(1)  # one query at a time: threads only add latency
        bundle = ModelBundle.load(bundle_path)
        scorer = BatchScorer(bundle, serving=settings.serving, item_features=item_matrix(bundle, features))
        metadata = {**bundle.metadata, **(metadata or {})}
        return cls(bundle, scorer, features, settings, tag, metadata, purchases or Purchases())

    @classmethod
    def from_model_store(
        cls, settings: Settings, tag: str, features: OnlineFeatures | None, purchases: Purchases | None = None
    ) -> Recommender:
        """Load a packaged model by its BentoML tag."""
        from serving.package import model_info

        bundle_path, metadata = model_info(settings, tag)
        return cls.from_bundle(settings, bundle_path, features, tag, metadata, purchases)

    # ---- requests --------------------------------------------------------------------------------
    def recommend(self, user_id: str, k: int, region: str | None = None) -> RecommendResponse:
        """The top-k items for one user: the scorer's list with a reason for each item.

        Known users (in the online store) get the package's list: two-tower and co-occurrence
        candidates over their recent items, purchased items filtered out and backfilled, the ranker's
        order. Unknown users get popular items of their region when one is given, else overall, with
        `fallback=True`.
        """
        start = time.perf_counter()
        user = self.user(user_id)
        self._mark("user_features", start)
        t = time.perf_counter()
        if user is None:
            rows = self.scorer.popular_rows(region)[:k]
            ranked = Ranked(
                np.array(rows), np.array([1.0 / (i + 1) for i in range(len(rows))]), ["popular"] * len(rows)
            )
            self._mark("score", t)
            self._mark("total", start)
            return self.response(user_id, ranked, [], fallback=True, region=region)
        query = self.query(user_id, user, region)
        ranked = self.scorer.recommend([query], k)[0]
        self._mark("score", t)
        response = self.response(user_id, ranked, list(query.history), fallback=False, region=query.region)
        self._mark("total", start)
        return response

    def user(self, user_id: str) -> dict | None:
        """The user's online features (recent items included), or None for a user the store never saw."""
        return None if self.features is None else self.features.user(user_id)

    def query(self, user_id: str, user: dict, region: str | None = None) -> Query:
        """The scorer's input for a known user: recent items, the seen filter, online features."""
        exclude: frozenset[str] = frozenset()
        if self.settings.exclude_purchased:
            exclude = self.purchases.of(user_id)
        now = self.purchases.now(self.settings.serving.clock)
        bought = self.purchases.bought(user_id, now) if self.scorer.reads_purchases else []
        return Query(
            history=[str(i) for i in (user.get("recent_items") or [])],
            exclude=exclude,
            user_features=user,
            region=user.get("region") or region,
            bought=bought,
        )

    def response(
        self, user_id: str, ranked: Ranked, history: list[str], fallback: bool, region: str | None = None
    ) -> RecommendResponse:
        """The scorer's list as the API answers it (ids, scores, true reasons)."""
        ids = self.bundle.catalogue.ids(ranked.rows)
        reasons = self._reasons(ranked, history, region)
        bought = self.purchases.of(user_id)
        if bought:  # a repeat says so: how often and when the user bought it
            record: dict[str, list[float]] = {}
            for item, days in self.purchases.bought(user_id, self.purchases.now(self.settings.serving.clock)):
                record.setdefault(item, []).append(days)
            reasons = [
                _bought_reason(record.get(item, [])) if item in bought else reason
                for item, reason in zip(ids, reasons, strict=True)
            ]
        items = [
            ScoredItem(item_id=item, score=round(float(score), 6), reason=reason, repeat=item in bought)
            for item, score, reason in zip(ids, ranked.scores, reasons, strict=True)
        ]
        return RecommendResponse(user_id=user_id, items=items, model=self.tag, fallback=fallback)

    def similar_items(self, item_id: str, k: int) -> SimilarItemsResponse:
        """The k items nearest to `item_id` in the candidate tower's space (cosine), itself excluded.

        Raises:
            UnknownItemError: if `item_id` is not in the served catalogue.
        """
        row = self.bundle.catalogue.index.get(item_id)
        if row is None:
            raise UnknownItemError(f"Unknown item_id {item_id!r}: not in the catalogue of model {self.tag}.")
        sims = self.unit_embeddings @ self.unit_embeddings[row]
        sims[row] = -np.inf
        top = np.argsort(-sims, kind="stable")[:k]
        items = [
            ScoredItem(
                item_id=str(self.bundle.item_ids[r]), score=float(sims[r]), reason=f"similar to {item_id}"
            )
            for r in top
        ]
        return SimilarItemsResponse(item_id=item_id, items=items, model=self.tag)

    def describe(self) -> dict:
        """What is served: tag, stages and their validation figures, index, catalogue size, metadata."""
        return {
            "model": self.tag,
            "loaded_at": self.loaded_at,
            "n_items": len(self.bundle.catalogue),
            "index": self.scorer.index.describe(),
            "stages": self.metadata.get("stages", {}),
            "metadata": self.metadata,
        }

    def refresh_items(self) -> None:
        """Reload the online item features (after a materialization) into the ranker's item inputs."""
        if self.features is None:
            return
        self.features.refresh()
        self.scorer.set_item_features(item_matrix(self.bundle, self.features))

    # ---- reasons ---------------------------------------------------------------------------------
    def _reasons(self, ranked: Ranked, history: list[str], region: str | None) -> list[str]:
        """A short, true reason per item: what the user's history has to do with it, or why it is there.

        An item from the user's own recent items says so; a model item names the recent item closest
        to it in the two-tower's item space; an item only the household-neighbour source proposed says
        that households like the user buy it; a backfilled or cold-start item says it is popular.
        """
        index = self.bundle.catalogue.index
        recent = [i for i in history if i in index][-20:]
        recent_rows = [index[i] for i in recent]
        out = []
        regional = set(self.bundle.popular.get("by_region", {}).get(region, [])) if region else set()
        for row, source in zip(ranked.rows, ranked.sources, strict=True):
            if source == "popular":
                item = str(self.bundle.item_ids[row])
                out.append(f"popular in region {region}" if item in regional else "popular overall")
            elif source == "neighbours":
                out.append("households that shop like you buy it")
            elif not recent_rows:
                out.append("matches your profile")
            elif row in recent_rows:
                out.append("you viewed it recently")
            else:
                sims = self.unit_embeddings[recent_rows] @ self.unit_embeddings[row]
                sims[np.asarray(recent_rows) == row] = -np.inf
                out.append(f"similar to {recent[int(np.argmax(sims))]}, which you viewed")
        return out

    def _mark(self, stage: str, since: float) -> None:
        if self.observe is not None:
            self.observe(stage, time.perf_counter() - since)


def _bought_reason(days_ago: list[float]) -> str:
    """`buy again: you bought it 3 times, last 6 days ago` (the record of one item; empty: no dates)."""
    if not days_ago:
        return "buy again: you bought it before"
    times = "once" if len(days_ago) == 1 else f"{len(days_ago)} times"
    last = int(min(days_ago))
    when = "today" if last == 0 else ("yesterday" if last == 1 else f"{last} days ago")
    return f"buy again: you bought it {times}, last {when}"


def item_matrix(bundle: ModelBundle, features: OnlineFeatures | None) -> np.ndarray | None:
    """The bundle's online item features [n_items, n] in catalogue order, from the feature reader."""
    if features is None or not bundle.item_features:
        return None
    frame = features.items(list(bundle.item_ids))
    out = np.full((len(bundle.catalogue), len(bundle.item_features)), np.nan, np.float32)
    for j, name in enumerate(bundle.item_features):
        if name in frame.columns:
            out[:, j] = pd.to_numeric(frame[name], errors="coerce").to_numpy(np.float32)
    return out
